//! The operator's view of a running packrat: what it counts as it serves ([`live`]), the
//! last maintenance runs it keeps in the index ([`runs`]), and the report both `GET
//! /-/status` and the page at `/-/ui` show ([`report`]).

pub mod live;
pub mod report;
pub mod runs;

pub use live::{Ecosystem, Live, Served};
pub use report::Report;
pub use runs::{Run, RunKind};
