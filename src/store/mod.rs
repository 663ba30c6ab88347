//! The data directory: the only module that writes files under `storage.dir` or opens sled.
//! `cache/` and the offline commands go through [`Store`].

pub mod backend;
pub mod blob;
pub mod digest;
pub mod disk_tier;
pub mod index;
pub mod layout;
pub mod s3;
pub mod spool;
mod tmp;

use std::sync::Arc;

pub use crate::error::Mismatch;
pub use backend::{Backend, BlobRead, FsBackend, Listed};
pub use blob::{BlobInfo, BlobStore, BlobWriter, StagedBlob};
pub use digest::{Digest, Expect, LockfileMismatch};
pub use index::{
    BlobEntry, Decision, Index, MetaRecord, Origin, SharedBlob, Tree, Variant, SHARED_BLOBS,
};
pub use layout::{DirLock, Layout};
pub use s3::S3Backend;
pub use spool::Spool;

use crate::config::{StorageBackend, StorageConfig};
use crate::error::StoreError;

/// The disk tier of an object-store backend, under the data directory.
const TIER_DIR: &str = "s3-cache-v1";

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
        Store::open_with(dir, |layout| {
            Ok(BlobStore::new(layout.blobs(), layout.tmp()))
        })
    }

    /// Open the data directory `storage.dir` with the configured blob backend: on `s3`, the
    /// files go to the bucket (through a disk tier under the data directory) and metadata
    /// variants stay in the data directory.
    pub fn open_config(storage: &StorageConfig) -> Result<Self, StoreError> {
        Store::open_with(&storage.dir, |layout| match storage.backend {
            StorageBackend::Fs => Ok(BlobStore::new(layout.blobs(), layout.tmp())),
            StorageBackend::S3 => {
                let s3 = S3Backend::new(&storage.s3, layout.root.join(TIER_DIR), layout.tmp())?;
                let local = Arc::new(FsBackend::new(layout.blobs()));
                Ok(BlobStore::with_backends(Arc::new(s3), local, layout.tmp()))
            }
        })
    }

    fn open_with(
        dir: &std::path::Path,
        blobs: impl FnOnce(&Layout) -> Result<BlobStore, StoreError>,
    ) -> Result<Self, StoreError> {
        let layout = Layout::new(dir);
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock = layout.lock()?;
        layout.init()?;
        let index = Index::open(&layout.index())?;
        let blobs = blobs(&layout)?;
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
