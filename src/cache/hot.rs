//! Blob access times for `gc`'s least-recently-used eviction: every read of a stored file
//! (tarball, Go file, package file), from the in-memory hot tier or from disk, is noted in
//! memory and written to the index in one batch ([`Core::flush_atimes`], from `serve`'s
//! housekeeping), never an index write per request. On a shared store each batch is also
//! one small object in the bucket, so `gc` evicts by last access across nodes.

use super::Core;
use crate::error::Error;
use crate::store::{now_ms, Digest, Tree};

impl Core {
    /// Note a blob read (for LRU eviction); written to the index by [`Core::flush_atimes`].
    pub(super) fn touch(&self, digest: Digest) {
        if let Ok(mut m) = self.atimes.lock() {
            m.insert(digest, now_ms());
        }
    }

    /// Write the access times gathered since the last call, in one batch.
    pub fn flush_atimes(&self) -> Result<usize, Error> {
        let batch: Vec<(String, serde_json::Value)> = match self.atimes.lock() {
            Ok(mut m) => m
                .drain()
                .map(|(d, t)| (d.hex(), serde_json::Value::from(t)))
                .collect(),
            Err(_) => return Ok(0),
        };
        self.store.index.apply(Tree::Atime, &batch)?;
        if self.store.blobs.is_shared() && !batch.is_empty() {
            // One object per batch, so `gc` on any node sees every node's reads.
            let map: serde_json::Map<String, serde_json::Value> = batch.iter().cloned().collect();
            if let Ok(bytes) = serde_json::to_vec(&map) {
                let name = format!("{}-{:016x}", now_ms(), rand::random::<u64>());
                let blobs = self.store.blobs.clone();
                tokio::spawn(async move {
                    if let Err(e) = blobs
                        .shared_put(crate::gc::SHARED_ATIMES, &name, bytes.into(), true)
                        .await
                    {
                        tracing::warn!(error = %e, "could not share blob access times");
                    }
                });
            }
        }
        Ok(batch.len())
    }
}
