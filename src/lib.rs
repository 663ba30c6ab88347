//! packrat: a caching pull-through proxy and mirror for GitLab package registries.
//!
//! # Layout
//! - [`config`]: TOML + `PACKRAT_<SECTION>_<KEY>` configuration, validated once at start.
//! - [`server`]: hyper accept loop, TLS, routing, the one error→response mapping, ops endpoints.
//! - [`auth`]: credentials (never printed), and the one authorization gate for cached reads.
//! - [`upstream`]: the only HTTP client; classifies upstream answers into a small enum.
//! - [`cache`]: the cache core the protocol adapters call: metadata freshness, blobs, single-flight.
//! - [`store`]: the only module touching the data directory: sled index and the blob store.
//! - [`npm`]: the npm protocol adapter (three route prefixes).
//! - [`goproxy`]: the Go module proxy adapter, `/go/` and the checksum database proxy.
//! - [`packages_api`]: the Packages API adapter: lists, packages, files and pipelines from the
//!   local package index; package and file deletes forwarded upstream.
//! - [`forwarding`]: forwarding rules and origin pinning (the dependency-confusion guard).
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`sync`]: the inputs of `packrat sync` (lockfiles, go.mod/go.sum, packrat.list) parsed into items.
//! - [`error`]: typed errors per layer.
//! - [`gitlab`]: GitLab namespaces (project, group, instance): URL segments, API prefixes, keys.
//! - [`urls`]: origins and redaction of URLs, parsed as the HTTP client parses them.
//! - [`reply`]: what an adapter answers (status, headers, body source, cache outcome); the
//!   server renders it.
//! - [`verify`], [`gc`], [`bundle`]: the offline maintenance commands; [`integrity`] checks
//!   blobs against their metadata for them, [`signing`] signs and checks bundles.

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
pub mod store;
pub mod sync;
pub mod upstream;
pub mod urls;
pub mod verify;
