//! packrat: a caching pull-through proxy and mirror for GitLab package registries.
//!
//! # Layout
//! - [`config`]: TOML + `PACKRAT_<SECTION>_<KEY>` configuration, validated once at start.
//! - [`server`]: hyper accept loop, TLS, routing, the one error→response mapping, ops endpoints.
//! - [`auth`]: credentials (never printed, kept only as a sha256), the access decisions the
//!   cache core's gate remembers, and the offline mirror's and operators' tokens.
//! - [`upstream`]: the only HTTP client; classifies upstream answers into a small enum.
//! - [`cache`]: the cache core, the only way the adapters reach GitLab and the data directory:
//!   the gate, metadata freshness, blobs (hot tier, single-flight), adapter-filled records,
//!   pass-through reads and writes, and what writes change locally.
//! - [`store`]: the only module touching the data directory: sled index and the blob store.
//! - [`npm`]: the npm protocol adapter (three route prefixes).
//! - [`goproxy`]: the Go module proxy adapter, `/go/` and the checksum database proxy.
//! - [`packages_api`]: the Packages API adapter: lists, packages, files and pipelines from the
//!   local package index; package and file deletes forwarded upstream.
//! - [`forwarding`]: forwarding rules and origin pinning (the dependency-confusion guard).
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`status`]: what the operator's view collects: in-memory request series, upstream
//!   health, the last maintenance runs (the server reports them at `/-/status`, `/-/ui`).
//! - [`sync`]: `packrat sync`: its inputs (lockfiles, go.mod/go.sum, packrat.list) parsed into
//!   items, and the runner that fetches them through the cache core (or `--via` a running
//!   packrat).
//! - [`error`]: typed errors per layer.
//! - [`gitlab`]: GitLab namespaces (project, group, instance) and project references: URL
//!   segments, API prefixes, index keys.
//! - [`urls`]: origins and redaction of URLs, parsed as the HTTP client parses them.
//! - [`reply`]: what an adapter answers (status, headers, body source, cache outcome); the
//!   server renders it.
//! - [`verify`], [`gc`], [`bundle`]: the offline maintenance commands; [`integrity`] checks
//!   blobs against their metadata for them, [`signing`] signs and checks bundles.
//! - [`cli`]: the command line; [`progress`]: progress output for the long offline commands.

// The docs are built with private items (CI): links to them are intended.
#![allow(rustdoc::private_intra_doc_links)]

pub mod auth;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod forwarding;
pub mod gc;
pub mod gitlab;
pub mod goproxy;
pub mod integrity;
pub mod metrics;
pub mod npm;
pub mod packages_api;
pub mod progress;
pub mod reply;
pub mod server;
pub mod signing;
pub mod status;
pub mod store;
pub mod sync;
pub mod upstream;
pub mod urls;
pub mod verify;
