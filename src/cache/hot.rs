//! Blob access times for `gc`'s least-recently-used eviction: every read of a stored file
//! (tarball, Go file, package file), from the in-memory hot tier or from disk, is noted in
//! memory and written to the index in one batch ([`Core::flush_atimes`], from `serve`'s
//! housekeeping), never an index write per request. On a shared store each batch is also
//! one small object in the bucket, so `gc` evicts by last access across nodes.

use super::Core;
use crate::error::Error;
use crate::store::{now_ms, Digest, Tree};

impl Core {
    /// The largest blob (tarball, zip) served from memory: up to 256 KiB, and no more than
    /// 1/256 of `storage.memory_cache`. Larger ones stream from their file with a 64 KiB
    /// buffer: a hit that misses the hot tier reads at most this much into memory, so 128
    /// concurrent hits cost at most 32 MiB of transient reads, not 128 whole files.
    pub(super) fn hot_blob_max(&self) -> u64 {
        (self.config.storage.memory_cache / 256).min(256 << 10)
    }

    /// The largest metadata variant kept in memory: 1/8 of `storage.memory_cache` (npm asks
    /// for packuments on every install; a larger one streams from its file).
    pub(super) fn hot_meta_max(&self) -> u64 {
        (self.config.storage.memory_cache / 8).min(super::meta::HOT_MAX_ITEM)
    }

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
