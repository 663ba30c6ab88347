//! The one integration-test binary (`autotests = false`; see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    clippy::print_stdout
)]

mod support;

// Access control: route × credential refusals are GitLab's, auth_ttl, GitLab down, no token leaks.
mod access;
// Dependency confusion: pins, forwarding rules, public npm/Go fallbacks, real npm and go clients.
mod confusion;
// The fake GitLab and checksum database themselves, checked with reqwest and the real npm and go clients (no packrat).
mod fake_gitlab_selftest;
// packrat as a Go proxy: the real go command over HTTPS (project route, /go/, offline), GOSUMDB via /go/sumdb/, bad input, bad zips.
mod go_proxy;
// packrat in front of the fake GitLab: real npm, single-flight, faults, caching, bad input.
mod npm_proxy;
// HTTPS, restart after kill -9, graceful shutdown, config errors, GitLab's forwarding redirect.
mod server;
// The Packages API from packrat's index equals GitLab's, field by field, for every parameter.
mod packages_api;
// Writes through packrat: npm publish/deprecate/dist-tags, deletes; local state after success only.
mod writes;
// Offline mirror: index only, no connections, offline.tokens, 404 misses, 503 writes.
mod offline;
// export/import bundles, verify, gc, the data-directory lock.
mod mirror;
// The whole air-gap workflow: sync, export, import, offline npm ci and go mod download.
mod airgap;
// The module map of ARCHITECTURE.md against the imports: adapters never reach upstream or store.
mod layering;
