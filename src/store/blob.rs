//! The blob store and its durability protocol.
//!
//! A blob becomes visible only through [`BlobWriter::commit`], which consumes the writer:
//! 1. every byte was hashed as it was written (sha256 address, plus sha1/sha512 when npm
//!    metadata gave a `shasum`/`integrity` to check);
//! 2. the hashes and the size are verified against what the metadata promised;
//! 3. the temp file is fsynced;
//! 4. the [`Backend`] makes it the blob of its digest: on a filesystem it is renamed into
//!    `blobs-v1/sha256/ab/cd/<hex>` (atomic) and
//! 5. the directory is fsynced, so the rename survives a crash.
//!
//! Dropping a writer without committing deletes its temp file: a partial, corrupt or failed
//! download is never visible. Paths are derived from digests only, never from client input.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::backend::{Backend, BlobRead, FsBackend, Listed};
use super::digest::{Digest, Expect, Hasher};
use super::spool::Spool;
use super::tmp::create_new_tmp;
use crate::error::StoreError;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Files (tarballs, zips, package files): on an object store, shared by every node.
    backend: Arc<dyn Backend>,
    /// Metadata variants, built per node for its public URL: always this node's own disk
    /// (the same backend as `backend` on fs).
    local: Arc<dyn Backend>,
    tmp: PathBuf,
    bytes_on_disk: AtomicU64,
}

/// What a committed blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub len: u64,
}

impl BlobStore {
    /// Blobs as files under `blobs` ([`FsBackend`]), written through `tmp`.
    pub fn new(blobs: PathBuf, tmp: PathBuf) -> Self {
        BlobStore::with_backend(Arc::new(FsBackend::new(blobs)), tmp)
    }

    /// Blobs in `backend`, written through this node's `tmp`.
    pub fn with_backend(backend: Arc<dyn Backend>, tmp: PathBuf) -> Self {
        BlobStore::with_backends(backend.clone(), backend, tmp)
    }

    /// Files in `backend`, metadata variants in `local`, written through this node's `tmp`.
    pub fn with_backends(backend: Arc<dyn Backend>, local: Arc<dyn Backend>, tmp: PathBuf) -> Self {
        BlobStore {
            inner: Arc::new(Inner {
                backend,
                local,
                tmp,
                bytes_on_disk: AtomicU64::new(0),
            }),
        }
    }

    /// `fs` or `s3`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Where the files are, for messages.
    pub fn describe(&self) -> String {
        self.inner.backend.describe()
    }

    /// Whether the files live in a store other nodes share (records and pins too).
    pub fn is_shared(&self) -> bool {
        self.inner.backend.is_shared()
    }

    /// A record shared by every node on this backend (`None` on fs).
    pub async fn shared_get(
        &self,
        ns: &'static str,
        key: &str,
    ) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.backend.shared_get(ns, key).await
    }

    /// Write a shared record (a no-op on fs); `create_only`: the first writer wins.
    pub async fn shared_put(
        &self,
        ns: &'static str,
        key: &str,
        value: bytes::Bytes,
        create_only: bool,
    ) -> Result<(), StoreError> {
        self.inner
            .backend
            .shared_put(ns, key, value, create_only)
            .await
    }

    /// Metadata variants kept beside a shared store (on fs they are in [`BlobStore::walk`]).
    pub fn walk_local(&self) -> Vec<Listed> {
        if self.is_shared() {
            self.inner.local.list()
        } else {
            Vec::new()
        }
    }

    /// Move a bad metadata variant (as [`BlobStore::walk_local`] listed it) into `quarantine`.
    pub fn quarantine_local(
        &self,
        location: &Path,
        quarantine: &Path,
    ) -> Result<PathBuf, StoreError> {
        Ok(self.inner.local.quarantine(location, quarantine)?.0)
    }

    /// Every shared record of a namespace (blocking; maintenance). Empty on fs.
    pub fn shared_scan(&self, ns: &'static str) -> Result<Vec<(String, bytes::Bytes)>, StoreError> {
        self.inner.backend.shared_scan(ns)
    }

    /// Delete shared records by the names [`BlobStore::shared_scan`] gave (blocking).
    pub fn shared_remove(&self, names: &[String]) -> Result<(), StoreError> {
        self.inner.backend.shared_remove(names)
    }

    /// Write a shared record from a blocking caller (maintenance); a no-op on fs.
    pub fn shared_put_blocking(
        &self,
        ns: &'static str,
        key: &str,
        value: bytes::Bytes,
    ) -> Result<(), StoreError> {
        self.inner.backend.shared_put_blocking(ns, key, value)
    }

    /// sha256 and length of a listed file blob, streamed (blocking; `verify`).
    pub fn hash_listed(&self, listed: &Listed) -> Result<(Digest, u64), StoreError> {
        self.inner.backend.hash(listed)
    }

    /// A file on this machine holding the blob's bytes (maintenance: hashing, zip checks,
    /// export), if it is stored.
    pub fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        if self.is_shared() {
            if let Some(p) = self.inner.local.local_path(digest) {
                return Some(p);
            }
        }
        self.inner.backend.local_path(digest)
    }

    /// Whether a blob is stored: a file blob, or (beside a shared store) a metadata variant.
    pub fn contains(&self, digest: &Digest) -> bool {
        (self.is_shared() && self.inner.local.contains(digest))
            || self.inner.backend.contains(digest)
    }

    /// Bytes of committed blobs, as counted since start plus the startup scan.
    pub fn bytes_on_disk(&self) -> u64 {
        self.inner.bytes_on_disk.load(Ordering::Relaxed)
    }

    /// List the store once (at startup, off the request path) to learn its size.
    pub fn scan_size(&self) -> u64 {
        let total = self.walk().iter().map(|l| l.size).sum();
        self.inner.bytes_on_disk.fetch_add(total, Ordering::Relaxed);
        total
    }

    /// Every committed blob (blocking; maintenance only).
    pub fn walk(&self) -> Vec<Listed> {
        self.inner.backend.list()
    }

    /// Move a bad blob (as [`BlobStore::walk`] listed it) into `quarantine`; returns where
    /// it went.
    pub fn quarantine(&self, location: &Path, quarantine: &Path) -> Result<PathBuf, StoreError> {
        let (dest, size) = self.inner.backend.quarantine(location, quarantine)?;
        self.uncount(size);
        Ok(dest)
    }

    /// Delete a committed blob (gc).
    pub fn remove(&self, digest: &Digest) -> Result<u64, StoreError> {
        let size = self.inner.backend.remove(digest)?;
        self.uncount(size);
        Ok(size)
    }

    fn uncount(&self, size: u64) {
        let _ = self
            .inner
            .bytes_on_disk
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(size))
            });
    }

    /// sha256 of a file, streamed (blocking; call off the async threads).
    pub fn hash_file(path: &Path) -> Result<(Digest, u64), StoreError> {
        super::backend::hash_file(path)
    }

    /// A fresh, unused temp file name in the tmp area.
    fn tmp_name(&self) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}-{}-{:016x}.part",
            std::process::id(),
            n,
            rand::random::<u64>()
        );
        self.inner.tmp.join(name)
    }

    /// Start spooling a request body into a fresh temp file.
    pub async fn spool(&self) -> Result<Spool, StoreError> {
        Spool::create(self.tmp_name()).await
    }

    /// Start writing a new blob into a fresh temp file.
    pub async fn create(&self, expect: Expect) -> Result<BlobWriter, StoreError> {
        self.create_with(expect, false).await
    }

    /// [`BlobStore::create`] for a metadata variant: committed to this node's own disk.
    async fn create_local(&self) -> Result<BlobWriter, StoreError> {
        let mut w = self.create_with(Expect::default(), false).await?;
        w.local = true;
        Ok(w)
    }

    /// Start writing an npm tarball whose checksums are only known later
    /// ([`BlobWriter::expect`] before verifying): sha256 and sha1 are computed as it is
    /// written (see [`Hasher::deferred`]).
    pub async fn create_deferred(&self, limits: Expect) -> Result<BlobWriter, StoreError> {
        self.create_with(limits, true).await
    }

    async fn create_with(
        &self,
        expect: Expect,
        all_hashes: bool,
    ) -> Result<BlobWriter, StoreError> {
        let path = self.tmp_name();
        let file = create_new_tmp(&path).await?;
        let hasher = if all_hashes {
            Hasher::deferred()
        } else {
            Hasher::new(&expect)
        };
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(file),
            hasher: Some(hasher),
            expect,
            path,
            len: 0,
            committed: false,
            verified: None,
            local: false,
        })
    }

    /// Store a small in-memory body (a metadata variant) through the same protocol, on this
    /// node's own disk.
    pub async fn put_bytes(&self, bytes: &[u8]) -> Result<BlobInfo, StoreError> {
        let digest = Digest::of(bytes);
        if self.inner.local.contains(&digest) {
            return Ok(BlobInfo {
                digest,
                len: bytes.len() as u64,
            });
        }
        let mut w = self.create_local().await?;
        w.write(bytes).await?;
        w.commit().await
    }

    /// Open a committed file blob for reading: a local file, or a verified stream from the
    /// object store.
    pub async fn open(&self, digest: &Digest) -> Result<Option<BlobRead>, StoreError> {
        self.inner.backend.open(digest).await
    }

    /// Read a whole committed file blob into memory (small files).
    pub async fn read(&self, digest: &Digest) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.backend.read(digest).await
    }

    /// Open a metadata variant stored by [`BlobStore::put_bytes`].
    pub async fn open_local(
        &self,
        digest: &Digest,
    ) -> Result<Option<(tokio::fs::File, u64)>, StoreError> {
        match self.inner.local.open(digest).await? {
            Some(BlobRead::File(f, len)) => Ok(Some((f, len))),
            Some(BlobRead::Stream(..)) | None => Ok(None),
        }
    }

    /// Read a metadata variant stored by [`BlobStore::put_bytes`].
    pub async fn read_local(&self, digest: &Digest) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.local.read(digest).await
    }
}

/// A blob being written. Commit it or drop it; dropping deletes the temp file.
pub struct BlobWriter {
    store: BlobStore,
    file: Option<tokio::fs::File>,
    hasher: Option<Hasher>,
    expect: Expect,
    path: PathBuf,
    len: u64,
    committed: bool,
    /// Set once the hashes and size checked out ([`BlobWriter::verify`]).
    verified: Option<Digest>,
    /// A metadata variant: committed to the node's own disk, not the shared backend.
    local: bool,
}

impl BlobWriter {
    /// The temp file, which single-flight joiners tail while the download runs.
    pub fn tmp_path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append a chunk; it is flushed to the OS before this returns, so readers of the temp
    /// file see it.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let new_len = self.len + chunk.len() as u64;
        if let Some(max) = self.expect.max_size {
            if new_len > max {
                return Err(StoreError::TooLarge { limit: max });
            }
        }
        let file = self.file.as_mut().ok_or(StoreError::Finished("file"))?;
        file.write_all(chunk)
            .await
            .map_err(|e| StoreError::io(&self.path, e))?;
        file.flush()
            .await
            .map_err(|e| StoreError::io(&self.path, e))?;
        if let Some(h) = &mut self.hasher {
            h.update(chunk);
        }
        self.len = new_len;
        Ok(())
    }

    /// What the content must hash to, now that it is known (a writer from
    /// [`BlobStore::create_deferred`]); its size limit stays.
    pub fn expect(&mut self, expect: Expect) {
        let mut expect = match &self.hasher {
            Some(h) => h.checkable(expect),
            None => expect,
        };
        expect.max_size = expect.max_size.or(self.expect.max_size);
        self.expect = expect;
    }

    /// Steps 1–2: check the hashes and the size. The bytes written are then complete and
    /// correct (a requester may have them all), though neither durable nor visible yet:
    /// [`BlobWriter::commit`] does that, off the requester's path.
    pub fn verify(&mut self) -> Result<Digest, StoreError> {
        if let Some(d) = self.verified {
            return Ok(d);
        }
        let hasher = self.hasher.take().ok_or(StoreError::Finished("hasher"))?;
        let digest = hasher.verify(&self.expect, self.len)?;
        self.verified = Some(digest);
        Ok(digest)
    }

    async fn verify_and_sync(&mut self) -> Result<Digest, StoreError> {
        let digest = self.verify()?;
        let file = self.file.take().ok_or(StoreError::Finished("file"))?;
        file.sync_all()
            .await
            .map_err(|e| StoreError::io(&self.path, e))?;
        Ok(digest)
    }

    /// Verify and fsync, but do not publish yet (bundle import publishes everything only
    /// after the whole bundle checked out). Dropping the staged blob deletes it.
    pub async fn stage(mut self) -> Result<StagedBlob, StoreError> {
        let digest = self.verify_and_sync().await?;
        self.committed = true; // ownership of the temp file moves to the StagedBlob
        Ok(StagedBlob {
            store: self.store.clone(),
            path: self.path.clone(),
            info: BlobInfo {
                digest,
                len: self.len,
            },
            published: false,
        })
    }

    /// Verify, fsync, rename into place, fsync the directory. Only then is the blob visible.
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    pub async fn commit(mut self) -> Result<BlobInfo, StoreError> {
        let digest = self.verify_and_sync().await?;
        let backend = if self.local {
            self.store.inner.local.clone()
        } else {
            self.store.inner.backend.clone()
        };
        let src = self.path.clone();
        let len = self.len;
        let existed = tokio::task::spawn_blocking(move || backend.publish(&src, &digest)).await??;
        self.committed = true;
        // Variants kept beside a shared bucket are not part of its size.
        let counted = !(self.local && self.store.is_shared());
        if !existed && counted {
            self.store
                .inner
                .bytes_on_disk
                .fetch_add(len, Ordering::Relaxed);
        }
        Ok(BlobInfo { digest, len })
    }
}

/// A verified, fsynced blob waiting to be published.
pub struct StagedBlob {
    store: BlobStore,
    path: PathBuf,
    pub info: BlobInfo,
    published: bool,
}

impl StagedBlob {
    /// Where the staged (verified, fsynced, not yet visible) bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make it the stored blob (a no-op if the content is already there). Blocking.
    pub fn publish(self) -> Result<BlobInfo, StoreError> {
        self.publish_to(false)
    }

    /// [`StagedBlob::publish`] for a metadata variant: on the node's own disk.
    pub fn publish_local(self) -> Result<BlobInfo, StoreError> {
        self.publish_to(true)
    }

    fn publish_to(mut self, local: bool) -> Result<BlobInfo, StoreError> {
        let backend = if local {
            &self.store.inner.local
        } else {
            &self.store.inner.backend
        };
        let counted = !(local && self.store.is_shared());
        if !backend.publish(&self.path, &self.info.digest)? && counted {
            self.store
                .inner
                .bytes_on_disk
                .fetch_add(self.info.len, Ordering::Relaxed);
        }
        self.published = true;
        Ok(self.info)
    }
}

impl Drop for StagedBlob {
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for BlobWriter {
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let l = super::super::layout::Layout::new(dir.path());
        l.init().unwrap();
        let s = BlobStore::new(l.blobs(), l.tmp());
        (dir, s)
    }

    #[tokio::test]
    async fn commit_makes_visible_and_drop_cleans_up() {
        let (dir, s) = store();
        let mut w = s.create(Expect::default()).await.unwrap();
        w.write(b"abc").await.unwrap();
        let tmp = w.tmp_path().to_path_buf();
        let info = w.commit().await.unwrap();
        assert!(!tmp.exists());
        assert!(s.contains(&info.digest));
        assert_eq!(s.read(&info.digest).await.unwrap().unwrap(), &b"abc"[..]);

        let mut w = s.create(Expect::default()).await.unwrap();
        w.write(b"partial").await.unwrap();
        let tmp = w.tmp_path().to_path_buf();
        drop(w);
        assert!(!tmp.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn verification_failure_is_never_visible() {
        let (dir, s) = store();
        let e = Expect::npm(Some(&"00".repeat(20)), None);
        let mut w = s.create(e).await.unwrap();
        w.write(b"abc").await.unwrap();
        assert!(matches!(w.commit().await, Err(StoreError::Verify(_))));
        assert!(!s.contains(&Digest::of(b"abc")));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn size_limit_is_enforced_while_writing() {
        let (_dir, s) = store();
        let e = Expect {
            max_size: Some(4),
            ..Expect::default()
        };
        let mut w = s.create(e).await.unwrap();
        w.write(b"abcd").await.unwrap();
        assert!(matches!(
            w.write(b"e").await,
            Err(StoreError::TooLarge { .. })
        ));
    }
}
