//! Who may read what. [`credential`] extracts and hides credentials (only their sha256 is
//! kept; a token is a `Secret`, which never prints); [`decision`] remembers what the upstream
//! answered each credential hash for each scope (the memory of the cache core's gate);
//! [`offline`] checks `[[offline.tokens]]` on an offline mirror and `server.ops_tokens` for the
//! operator endpoints.

pub mod credential;
pub mod decision;
pub mod offline;
pub mod secret;

pub use credential::{CredKind, Credential, CredentialHash};
pub use decision::{Age, Decisions};
pub use secret::Secret;
