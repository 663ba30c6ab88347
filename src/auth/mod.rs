//! Who may read what. [`credential`] extracts and hides credentials; [`decision`] remembers
//! what the upstream answered each credential hash for each scope.

pub mod credential;
pub mod decision;
pub mod offline;

pub use credential::{CredKind, Credential, CredentialHash};
pub use decision::{Age, Decisions};
