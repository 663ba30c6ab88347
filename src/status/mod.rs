//! The operator's view of a running packrat, as it is collected: what `serve` counts as it
//! serves ([`live`]) and the last maintenance runs kept in the index ([`runs`]). The server
//! assembles them with the rest into the report `GET /-/status` and `/-/ui` show
//! (`server::report`).

pub mod live;
pub mod runs;

use serde::Serialize;

pub use live::{Ecosystem, Live, Served};
pub use runs::{Run, RunKind};

/// What the index holds for one ecosystem.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Holding {
    pub ecosystem: Option<Ecosystem>,
    /// Metadata documents (npm packuments, Go version lists, Packages API listings).
    pub documents: u64,
    /// Files (tarballs, module zips and mods, package files).
    pub files: u64,
}
