//! The node's disk tier in front of an object store: verified blobs as files under
//! `storage.dir/s3-cache-v1/sha256/ab/cd/<hex>`, at most `storage.s3.local_cache` bytes, least
//! recently used evicted first.
//!
//! A file enters only verified: the fsynced temp file a download was hashed into (published to
//! the bucket, then adopted here), or a bucket read whose hash checked out. It is served
//! without the bucket, so blobs here survive a bucket outage. Recency is kept in memory (the
//! startup scan orders by modification time); losing it only changes which file goes first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::digest::Digest;
use super::layout::blob_path;
use crate::error::StoreError;

pub struct DiskTier {
    root: PathBuf,
    budget: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// digest → (size, last use tick)
    entries: HashMap<Digest, (u64, u64)>,
    total: u64,
    tick: u64,
}

impl DiskTier {
    /// Open (creating) the tier under `root`, learning what it holds.
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    pub fn open(root: PathBuf, budget: u64) -> Result<DiskTier, StoreError> {
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        let mut found: Vec<(std::time::SystemTime, Digest, u64)> = Vec::new();
        scan(&root, &root, &mut found);
        found.sort_by_key(|(t, _, _)| *t);
        let mut state = State::default();
        for (_, d, size) in found {
            state.tick += 1;
            state.entries.insert(d, (size, state.tick));
            state.total += size;
        }
        let tier = DiskTier {
            root,
            budget,
            state: Mutex::new(state),
        };
        tier.evict_over_budget();
        Ok(tier)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.root, &digest.hex())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// The blob's file, if the tier holds it (noted as used).
    pub fn get(&self, digest: &Digest) -> Option<PathBuf> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        let e = st.entries.get_mut(digest)?;
        e.1 = tick;
        let path = self.path_of(digest);
        if path.is_file() {
            Some(path)
        } else {
            let (size, _) = *e;
            st.entries.remove(digest);
            st.total = st.total.saturating_sub(size);
            None
        }
    }

    /// Whether a blob this large is worth keeping here.
    pub fn fits(&self, size: u64) -> bool {
        size <= self.budget
    }

    /// Take the verified, fsynced file `src` as the blob `digest` (rename; then evict down to
    /// the budget). A blob larger than the whole tier is not kept: `src` is removed.
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    pub fn adopt(&self, src: &Path, digest: &Digest, size: u64) -> Result<(), StoreError> {
        if !self.fits(size) {
            let _ = std::fs::remove_file(src);
            return Ok(());
        }
        let dest = self.path_of(digest);
        let parent = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let existed = super::backend::place(src, &dest, &parent)?;
        {
            let mut st = self.lock();
            st.tick += 1;
            let tick = st.tick;
            if !existed || !st.entries.contains_key(digest) {
                if let Some((old, _)) = st.entries.insert(*digest, (size, tick)) {
                    st.total = st.total.saturating_sub(old);
                }
                st.total += size;
            }
        }
        self.evict_over_budget();
        Ok(())
    }

    /// Drop a blob from the tier; returns the bytes freed.
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    pub fn remove(&self, digest: &Digest) -> u64 {
        let size = {
            let mut st = self.lock();
            let size = st.entries.remove(digest).map_or(0, |(s, _)| s);
            st.total = st.total.saturating_sub(size);
            size
        };
        let _ = std::fs::remove_file(self.path_of(digest));
        size
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().total
    }

    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    fn evict_over_budget(&self) {
        loop {
            let victim = {
                let mut st = self.lock();
                if st.total <= self.budget {
                    return;
                }
                let Some((d, (size, _))) = st
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, tick))| *tick)
                    .map(|(d, e)| (*d, *e))
                else {
                    return;
                };
                st.entries.remove(&d);
                st.total = st.total.saturating_sub(size);
                d
            };
            let _ = std::fs::remove_file(self.path_of(&victim));
        }
    }
}

fn scan(p: &Path, root: &Path, out: &mut Vec<(std::time::SystemTime, Digest, u64)>) {
    let Ok(rd) = std::fs::read_dir(p) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => scan(&path, root, out),
            Ok(t) if t.is_file() => {
                let Some(d) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(Digest::parse)
                    .filter(|d| blob_path(root, &d.hex()) == path)
                else {
                    continue;
                };
                if let Ok(m) = e.metadata() {
                    let t = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                    out.push((t, d, m.len()));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn file(dir: &Path, name: &str, len: usize) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, vec![b'x'; len]).unwrap();
        p
    }

    #[test]
    fn least_recently_used_goes_first_and_the_budget_holds() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path().join("tier"), 10).unwrap();
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        tier.adopt(&file(dir.path(), "a", 4), &a, 4).unwrap();
        tier.adopt(&file(dir.path(), "b", 4), &b, 4).unwrap();
        assert!(tier.get(&a).is_some(), "a is used again");
        tier.adopt(&file(dir.path(), "c", 4), &c, 4).unwrap();
        assert!(tier.get(&b).is_none(), "b was the least recently used");
        assert!(tier.get(&a).is_some() && tier.get(&c).is_some());
        assert_eq!(tier.bytes(), 8);
        // Too large for the whole tier: not kept, and the source is gone.
        let big = file(dir.path(), "big", 11);
        tier.adopt(&big, &Digest::of(b"big"), 11).unwrap();
        assert!(!big.exists());
        // A reopened tier knows its files.
        drop(tier);
        let again = DiskTier::open(dir.path().join("tier"), 10).unwrap();
        assert_eq!(again.bytes(), 8);
    }
}
