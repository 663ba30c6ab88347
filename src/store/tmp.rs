//! Fresh temp files under the store's `tmp/`, for blob writers and request-body spools alike.

use std::path::Path;

use crate::error::StoreError;

/// Create a temp file that must not exist yet (names come from `BlobStore::tmp_name`), for
/// writing.
pub(super) async fn create_new_tmp(path: &Path) -> Result<tokio::fs::File, StoreError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(|e| StoreError::io(path, e))
}
