//! The data directory: the only module that writes files under `storage.dir` or opens sled.
//! `cache/` and the offline commands go through [`Store`].

pub mod backend;
pub mod blob;
pub mod digest;
pub mod index;
pub mod layout;
pub mod spool;
mod tmp;

use std::sync::Arc;

pub use crate::error::Mismatch;
pub use backend::{Backend, BlobRead, FsBackend, Listed};
pub use blob::{BlobInfo, BlobStore, BlobWriter, StagedBlob};
pub use digest::{Digest, Expect, LockfileMismatch};
pub use index::{BlobEntry, Decision, Index, MetaRecord, Origin, Tree, Variant};
pub use layout::{DirLock, Layout};
pub use spool::Spool;

use crate::error::StoreError;

/// An opened data directory: lock, index and blobs.
#[derive(Clone)]
pub struct Store {
    pub layout: Layout,
    pub index: Arc<Index>,
    pub blobs: BlobStore,
    _lock: Arc<DirLock>,
}

impl Store {
    /// Open (creating if needed) the data directory, taking its exclusive lock first.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let layout = Layout::new(dir);
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock = layout.lock()?;
        layout.init()?;
        let index = Index::open(&layout.index())?;
        let blobs = BlobStore::new(layout.blobs(), layout.tmp());
        Ok(Store {
            layout,
            index: Arc::new(index),
            blobs,
            _lock: Arc::new(lock),
        })
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
