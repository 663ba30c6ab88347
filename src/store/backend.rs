//! The storage seam: where verified blobs live once they are durable.
//!
//! Every blob is written, hashed, verified and fsynced in the node's own temp area first
//! ([`super::blob::BlobWriter`]); a [`Backend`] then makes that file the blob of its digest
//! ([`Backend::publish`]) and serves it back. [`FsBackend`] keeps blobs under
//! `blobs-v1/sha256/ab/cd/<hex>` on the same filesystem (rename, then directory fsync). An
//! object-store backend plugs in here: publish uploads and completes only after the local
//! file was verified, reads stream from the bucket.
//!
//! The request path uses the async methods; maintenance (`gc`, `verify`, `export`) the
//! blocking ones, from its own threads.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;

use super::digest::Digest;
use super::layout::blob_path;
use crate::error::StoreError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A committed blob opened for reading.
pub enum BlobRead {
    /// A file on this machine (the fs backend, or an object store's disk tier).
    File(tokio::fs::File, u64),
    /// Bytes streamed from an object store, verified as they pass: the stream ends with an
    /// error, never cleanly, if the object does not hash to its name.
    Stream(
        futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
        u64,
    ),
}

impl BlobRead {
    pub fn len(&self) -> u64 {
        match self {
            BlobRead::File(_, n) | BlobRead::Stream(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A committed blob as a listing names it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// From its name; `None` for a name that is not a digest (stray files).
    pub digest: Option<Digest>,
    /// Where it is, for messages and for `quarantine`.
    pub location: PathBuf,
    pub size: u64,
}

/// Where verified blobs live.
pub trait Backend: Send + Sync + 'static {
    /// `fs` or `s3`, for messages.
    fn name(&self) -> &'static str;

    /// Make the verified, fsynced file `src` the blob `digest`, durably. `Ok(true)`: that
    /// content was already stored (content-addressed: the same bytes), and `src` is removed.
    /// Blocking: call it from a blocking thread.
    fn publish(&self, src: &Path, digest: &Digest) -> Result<bool, StoreError>;

    /// Open a committed blob.
    fn open<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<BlobRead>, StoreError>>;

    /// A whole committed blob in memory (metadata variants, small files).
    fn read<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;

    /// Whether a blob is stored (blocking but cheap on fs).
    fn contains(&self, digest: &Digest) -> bool;

    /// Delete a blob; returns the bytes freed (blocking).
    fn remove(&self, digest: &Digest) -> Result<u64, StoreError>;

    /// Every stored blob (blocking; maintenance only).
    fn list(&self) -> Vec<Listed>;

    /// A file on this machine holding the blob's bytes, for checks that need random access
    /// (a zip's directory) or a plain reader (blocking).
    fn local_path(&self, digest: &Digest) -> Option<PathBuf>;

    /// Move a bad blob out of the store into `dir` (an object store: under its own
    /// `quarantine/` prefix); returns where it went (blocking).
    fn quarantine(&self, location: &Path, dir: &Path) -> Result<(PathBuf, u64), StoreError>;

    /// Where the blobs are, for messages (never credentials).
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// sha256 and length of a listed blob, streamed (blocking; `verify`).
    fn hash(&self, listed: &Listed) -> Result<(Digest, u64), StoreError> {
        hash_file(&listed.location)
    }

    /// Whether nodes share this backend (and its records): an object store.
    fn is_shared(&self) -> bool {
        false
    }

    /// A record every node sharing the backend sees (`ns`: its kind, e.g. `blobs`, `pins`).
    /// `None` on a backend that is not shared.
    fn shared_get<'a>(
        &'a self,
        ns: &'static str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        let _ = (ns, key);
        Box::pin(async { Ok(None) })
    }

    /// Write a shared record; with `create_only`, an existing one is kept (first writer wins).
    fn shared_put<'a>(
        &'a self,
        ns: &'static str,
        key: &'a str,
        value: Bytes,
        create_only: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (ns, key, value, create_only);
        Box::pin(async { Ok(()) })
    }

    /// Every shared record of a namespace, with the name of its object (blocking;
    /// maintenance only). Empty on fs.
    fn shared_scan(&self, ns: &'static str) -> Result<Vec<(String, Bytes)>, StoreError> {
        let _ = ns;
        Ok(Vec::new())
    }

    /// [`Backend::shared_put`] (overwriting) from a blocking caller (maintenance).
    fn shared_put_blocking(
        &self,
        ns: &'static str,
        key: &str,
        value: Bytes,
    ) -> Result<(), StoreError> {
        let _ = (ns, key, value);
        Ok(())
    }

    /// Delete shared records by the object names [`Backend::shared_scan`] gave (blocking).
    fn shared_remove(&self, names: &[String]) -> Result<(), StoreError> {
        let _ = names;
        Ok(())
    }

    /// Bytes this node holds on its own disk for the backend (the disk tier); 0 on fs.
    fn local_bytes(&self) -> u64 {
        0
    }
}

/// Blobs as files under one directory of the data directory.
pub struct FsBackend {
    root: PathBuf,
}

impl FsBackend {
    pub fn new(root: PathBuf) -> FsBackend {
        FsBackend { root }
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.root, &digest.hex())
    }
}

impl Backend for FsBackend {
    fn name(&self) -> &'static str {
        "fs"
    }

    fn publish(&self, src: &Path, digest: &Digest) -> Result<bool, StoreError> {
        let dest = self.path_of(digest);
        let parent = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        place(src, &dest, &parent)
    }

    fn open<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<BlobRead>, StoreError>> {
        Box::pin(async move {
            let path = self.path_of(digest);
            match tokio::fs::File::open(&path).await {
                Ok(f) => {
                    let len = f
                        .metadata()
                        .await
                        .map_err(|e| StoreError::io(&path, e))?
                        .len();
                    Ok(Some(BlobRead::File(f, len)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        })
    }

    fn read<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            let path = self.path_of(digest);
            match tokio::fs::read(&path).await {
                Ok(v) => Ok(Some(v.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        })
    }

    fn contains(&self, digest: &Digest) -> bool {
        self.path_of(digest).is_file()
    }

    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    fn remove(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.path_of(digest);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    fn list(&self) -> Vec<Listed> {
        fn rec(p: &Path, root: &Path, out: &mut Vec<Listed>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    match e.file_type() {
                        Ok(t) if t.is_dir() => rec(&path, root, out),
                        Ok(t) if t.is_file() => {
                            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                            // A digest only where its name puts it: a file elsewhere is stray.
                            let digest = path
                                .file_name()
                                .and_then(|n| n.to_str())
                                .and_then(Digest::parse)
                                .filter(|d| blob_path(root, &d.hex()) == path);
                            out.push(Listed {
                                digest,
                                location: path,
                                size,
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut out = Vec::new();
        rec(&self.root, &self.root, &mut out);
        out
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.path_of(digest);
        path.is_file().then_some(path)
    }

    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    fn quarantine(&self, location: &Path, dir: &Path) -> Result<(PathBuf, u64), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let name = location
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unnamed".into());
        let dest = dir.join(format!("{}-{}", crate::store::now_ms(), name));
        std::fs::rename(location, &dest).map_err(|e| StoreError::io(location, e))?;
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        Ok((dest, size))
    }
}

/// Steps 4–5 of the write protocol on a filesystem: rename the fsynced temp file `src` to
/// `dest` in `parent` and fsync `parent`; `true` if the content was already there. A shard
/// directory created on the way is made durable in its own parent too.
#[allow(clippy::disallowed_methods)] // store/ owns the data directory
pub(super) fn place(src: &Path, dest: &Path, parent: &Path) -> Result<bool, StoreError> {
    if dest.is_file() {
        let _ = std::fs::remove_file(src);
        return Ok(true);
    }
    if !parent.is_dir() {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        // `ab/cd/`: both levels may be new.
        for dir in parent.ancestors().skip(1).take(2) {
            sync_dir(dir)?;
        }
    }
    std::fs::rename(src, dest).map_err(|e| StoreError::io(dest, e))?;
    sync_dir(parent)?;
    Ok(false)
}

#[allow(clippy::disallowed_methods)] // store/ owns the data directory
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// sha256 and length of a file, streamed in 256 KiB reads (blocking).
#[allow(clippy::disallowed_methods)] // store/ owns the data directory
pub(super) fn hash_file(path: &Path) -> Result<(Digest, u64), StoreError> {
    use sha2::Digest as _;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((Digest(h.finalize().into()), len))
}
