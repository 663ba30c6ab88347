//! Blobs and shared records in an S3-compatible bucket, through `object_store`, with the
//! node's [`DiskTier`] in front.
//!
//! - **Writes.** A blob reaches [`S3Backend::publish`] only as a verified, fsynced temp file
//!   (the download was hashed while it was spooled there, [`super::blob`]). Up to
//!   [`SINGLE_PUT_MAX`] it is one `PUT` with `If-None-Match: *` (`PutMode::Create`): the
//!   first node wins, the others learn the blob exists. Larger blobs are streamed from the file
//!   into a multipart upload (bounded memory: a few parts in flight) that is completed only
//!   when every part is in and aborted on any failure, so a crash mid-upload leaves nothing
//!   under the blob's name. `object_store` 0.12 cannot make the completion conditional, so a
//!   large blob is checked with `HEAD` first; two nodes that both pass that check write the
//!   same verified bytes under the same sha256, and the second completion replaces identical
//!   content. The file then becomes the disk tier's copy. (The upload follows verification
//!   rather than running beside the download: the object's name is the sha256, known only at
//!   the end, so that would need a staging key and a server-side copy.)
//! - **Reads** come from the disk tier, else stream from the bucket in ranged `GET`s of
//!   [`RANGE`] bytes, hashed as they pass; the last chunk is held back until the whole object
//!   hashed to its name, so a client never receives a complete body the bucket corrupted. A
//!   read that fits the tier is written through to it.
//! - **Shared records** are small JSON objects under `<prefix>records/<ns>/<sha256 of key>`.
//! - Blocking callers (maintenance, `publish` on a blocking thread) run the async calls on
//!   this backend's own small runtime; the request path never blocks on the bucket.
//!
//! Credentials go to the `object_store` builder only; nothing here logs or prints them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backend::{Backend, BlobRead, BoxFuture, Listed};
use super::digest::Digest;
use super::disk_tier::DiskTier;
use crate::config::S3Config;
use crate::error::StoreError;

/// Blobs up to this size are one conditional `PUT`; larger ones a multipart upload.
pub const SINGLE_PUT_MAX: u64 = 32 << 20;
/// Part size of a multipart upload.
const PART: usize = 16 << 20;
/// Parts in flight at once (memory: about `PART * PARTS_IN_FLIGHT`).
const PARTS_IN_FLIGHT: usize = 2;
/// One ranged `GET` of a streamed read: each request is bounded in time by the client's
/// timeout, whatever the blob's size.
const RANGE: u64 = 32 << 20;
/// File reads while uploading.
const READ_BUF: usize = 1 << 20;

/// The largest shared record (a blob entry, a pin, a batch of access times) read back.
const MAX_SHARED_RECORD: u64 = 4 << 20;

pub struct S3Backend {
    client: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3 bucket "b" at <endpoint>`, for messages (no credentials).
    describe: Arc<str>,
    tier: Arc<DiskTier>,
    /// The node's temp area (bucket reads filling the tier are written here first).
    tmp: PathBuf,
    /// Runs the bucket calls of blocking callers.
    rt: Option<tokio::runtime::Runtime>,
}

impl S3Backend {
    /// Connect (lazily: no request is made here) and open the disk tier under `tier_dir`.
    pub fn new(c: &S3Config, tier_dir: PathBuf, tmp: PathBuf) -> Result<S3Backend, StoreError> {
        let describe: Arc<str> = match &c.endpoint {
            Some(e) => format!("s3 bucket {:?} at {e}", c.bucket),
            None => format!("s3 bucket {:?} in {}", c.bucket, c.region),
        }
        .into();
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_allow_http(c.allow_http)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(120))
                    .with_allow_http(c.allow_http),
            );
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let (Some(k), Some(s)) = (&c.access_key, &c.secret_key) {
            b = b
                .with_access_key_id(k.expose())
                .with_secret_access_key(s.expose());
        }
        let client = b.build().map_err(|e| StoreError::ObjectStore {
            store: describe.to_string(),
            op: "configure",
            reason: e.to_string(),
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("packrat-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::io(&tier_dir, e))?;
        Ok(S3Backend {
            client: Arc::new(client),
            prefix: c.prefix.clone(),
            describe,
            tier: Arc::new(DiskTier::open(tier_dir, c.local_cache)?),
            tmp,
            rt: Some(rt),
        })
    }

    fn blob_key(&self, digest: &Digest) -> Key {
        let hex = digest.hex();
        Key::from(format!(
            "{}blobs/sha256/{}/{}/{hex}",
            self.prefix,
            &hex[0..2],
            &hex[2..4]
        ))
    }

    fn record_key(&self, ns: &str, key: &str) -> Key {
        Key::from(format!(
            "{}records/{ns}/{}",
            self.prefix,
            Digest::of(key.as_bytes()).hex()
        ))
    }

    fn err(&self, op: &'static str, e: &object_store::Error) -> StoreError {
        object_error(&self.describe, op, e)
    }

    /// Run a bucket call from a blocking caller.
    fn block<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let rt = self.rt.as_ref().ok_or(StoreError::Finished("s3 runtime"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StoreError::ObjectStore {
            store: self.describe.to_string(),
            op: "run",
            reason: "the object store task ended without an answer".into(),
        })
    }

    /// Whether the bucket holds the blob (`HEAD`).
    async fn exists(client: &dyn ObjectStore, key: &Key) -> Result<bool, object_store::Error> {
        match client.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Upload the verified file `src` as `key`; `true` if the bucket already had it.
    async fn upload(
        client: Arc<dyn ObjectStore>,
        key: Key,
        src: PathBuf,
        describe: Arc<str>,
    ) -> Result<bool, StoreError> {
        let io = |e| StoreError::io(&src, e);
        let mut file = tokio::fs::File::open(&src).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size <= SINGLE_PUT_MAX {
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.read_to_end(&mut buf).await.map_err(io)?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            return match client.put_opts(&key, PutPayload::from(buf), opts).await {
                Ok(_) => Ok(false),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(true),
                Err(e) => Err(object_error(&describe, "upload", &e)),
            };
        }
        if Self::exists(client.as_ref(), &key)
            .await
            .map_err(|e| object_error(&describe, "look up", &e))?
        {
            return Ok(true);
        }
        let upload = client
            .put_multipart(&key)
            .await
            .map_err(|e| object_error(&describe, "start an upload", &e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; READ_BUF];
        let streamed: Result<(), StoreError> = async {
            loop {
                let n = file.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Ok(());
                }
                w.wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| object_error(&describe, "upload", &e))?;
                w.write(&buf[..n]);
            }
        }
        .await;
        match streamed {
            Ok(()) => {
                w.finish()
                    .await
                    .map_err(|e| object_error(&describe, "complete an upload", &e))?;
                Ok(false)
            }
            Err(e) => {
                // Nothing completed: nothing under the blob's name. Abort the parts too.
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// The blob from the bucket as a verified stream (see the module docs).
    fn stream(&self, digest: Digest, size: u64) -> BoxStream<'static, io::Result<Bytes>> {
        self.stream_from(digest, size, None)
    }

    /// [`S3Backend::stream`], continuing a first ranged `GET` already answered (`first`: its
    /// body and where its range ends).
    fn stream_from(
        &self,
        digest: Digest,
        size: u64,
        first: Option<(BoxStream<'static, object_store::Result<Bytes>>, u64)>,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let (inner, range_end) = match first {
            Some((s, end)) => (Some(s), end),
            None => (None, 0),
        };
        let fill = self.tier.fits(size).then(|| TierFill {
            path: self.tmp.join(format!(
                "{}-{:016x}.fill",
                std::process::id(),
                rand::random::<u64>()
            )),
            file: None,
            broken: false,
        });
        let st = Fetch {
            client: self.client.clone(),
            key: self.blob_key(&digest),
            quarantine: Key::from(format!(
                "{}quarantine/{}-{}",
                self.prefix,
                crate::store::now_ms(),
                digest.hex()
            )),
            describe: self.describe.clone(),
            digest,
            size,
            got: 0,
            range_end,
            inner,
            hasher: sha2::Sha256::new(),
            held: None,
            fill,
            tier: self.tier.clone(),
            done: false,
        };
        futures_util::stream::unfold(st, |mut st| async move {
            let item = st.next().await?;
            if item.is_err() {
                st.done = true;
            }
            Some((item, st))
        })
        .boxed()
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context would panic.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// An `object_store` failure as the store's error (503 on the request path).
fn object_error(describe: &str, op: &'static str, e: &object_store::Error) -> StoreError {
    StoreError::ObjectStore {
        store: describe.to_owned(),
        op,
        reason: e.to_string(),
    }
}

/// A bucket read in progress.
struct Fetch {
    client: Arc<dyn ObjectStore>,
    key: Key,
    /// Where the object goes if it does not hash to its name.
    quarantine: Key,
    describe: Arc<str>,
    digest: Digest,
    size: u64,
    /// Bytes received (and hashed) so far.
    got: u64,
    /// Where the current ranged `GET` ends.
    range_end: u64,
    inner: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    hasher: sha2::Sha256,
    /// The last chunk received, sent on only when the next one arrives or the hash checked out.
    held: Option<Bytes>,
    fill: Option<TierFill>,
    tier: Arc<DiskTier>,
    done: bool,
}

impl Fetch {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if self.inner.is_none() {
                if self.got >= self.size {
                    self.done = true;
                    return self.finish().await;
                }
                let end = (self.got + RANGE).min(self.size);
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(self.got..end)),
                    ..GetOptions::default()
                };
                match self.client.get_opts(&self.key, opts).await {
                    Ok(r) => {
                        self.range_end = end;
                        self.inner = Some(r.into_stream());
                    }
                    Err(e) => return Some(Err(self.fail(&e))),
                }
            }
            let Some(inner) = self.inner.as_mut() else {
                continue;
            };
            match inner.next().await {
                None => {
                    self.inner = None;
                    // A range that ended short of what it asked for would loop forever.
                    if self.got < self.range_end {
                        return Some(Err(io::Error::other(format!(
                            "{}: object {} ended at {} of {} bytes",
                            self.describe, self.key, self.got, self.size
                        ))));
                    }
                }
                Some(Err(e)) => return Some(Err(self.fail(&e))),
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    self.got += chunk.len() as u64;
                    if self.got > self.size {
                        return Some(Err(io::Error::other(format!(
                            "{}: object {} is longer than {} bytes",
                            self.describe, self.key, self.size
                        ))));
                    }
                    self.hasher.update(&chunk);
                    if let Some(fill) = &mut self.fill {
                        fill.write(&chunk).await;
                    }
                    if let Some(prev) = self.held.replace(chunk) {
                        return Some(Ok(prev));
                    }
                }
            }
        }
    }

    fn fail(&self, e: &object_store::Error) -> io::Error {
        io::Error::other(object_error(&self.describe, "read", e).to_string())
    }

    /// Every byte is in: the last chunk goes out only if the object hashed to its name.
    async fn finish(&mut self) -> Option<io::Result<Bytes>> {
        let hasher = std::mem::take(&mut self.hasher);
        let got = Digest(hasher.finalize().into());
        if got != self.digest {
            // Out of the way, so the next request fetches it from the upstream again.
            let moved = async {
                self.client.copy(&self.key, &self.quarantine).await?;
                self.client.delete(&self.key).await
            }
            .await;
            tracing::error!(
                store = %self.describe,
                object = %self.key,
                actual = %got,
                quarantined = moved.is_ok(),
                quarantine = %self.quarantine,
                "object in the bucket does not match its digest; not served, moved to quarantine"
            );
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: object {} does not match its digest",
                    self.describe, self.key
                ),
            )));
        }
        if let Some(fill) = self.fill.take() {
            fill.commit(&self.tier, &self.digest, self.size).await;
        }
        self.held.take().map(Ok)
    }
}

/// A bucket read written through to the disk tier; dropped unfinished, its file is removed.
struct TierFill {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    /// A write failed: the tier just does not get this blob.
    broken: bool,
}

impl TierFill {
    async fn write(&mut self, chunk: &[u8]) {
        if self.broken {
            return;
        }
        if self.file.is_none() {
            match super::tmp::create_new_tmp(&self.path).await {
                Ok(f) => self.file = Some(f),
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(chunk).await.is_err() {
                self.broken = true;
            }
        }
    }

    async fn commit(mut self, tier: &Arc<DiskTier>, digest: &Digest, size: u64) {
        let Some(f) = self.file.take() else {
            return;
        };
        if self.broken || f.sync_all().await.is_err() {
            return;
        }
        drop(f);
        let (tier, digest, path) = (tier.clone(), *digest, self.path.clone());
        let placed = tokio::task::spawn_blocking(move || tier.adopt(&path, &digest, size)).await;
        if let Ok(Ok(())) = placed {
            self.broken = true; // the file moved: nothing to remove
            self.path = PathBuf::new();
        }
    }
}

impl Drop for TierFill {
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Backend for S3Backend {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        self.describe.to_string()
    }

    fn publish(&self, src: &Path, digest: &Digest) -> Result<bool, StoreError> {
        let size = std::fs::metadata(src)
            .map_err(|e| StoreError::io(src, e))?
            .len();
        let existed = self.block(Self::upload(
            self.client.clone(),
            self.blob_key(digest),
            src.to_path_buf(),
            self.describe.clone(),
        ))??;
        // Durable in the bucket: the verified file becomes the disk tier's copy.
        self.tier.adopt(src, digest, size)?;
        Ok(existed)
    }

    fn open<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<BlobRead>, StoreError>> {
        Box::pin(async move {
            if let Some(path) = self.tier.get(digest) {
                if let Ok(f) = tokio::fs::File::open(&path).await {
                    if let Ok(m) = f.metadata().await {
                        return Ok(Some(BlobRead::File(f, m.len())));
                    }
                }
            }
            // The first range answers "is it there, how large" too: no separate HEAD.
            let opts = GetOptions {
                range: Some(GetRange::Bounded(0..RANGE)),
                ..GetOptions::default()
            };
            match self.client.get_opts(&self.blob_key(digest), opts).await {
                Ok(r) => {
                    let size = r.meta.size;
                    let end = RANGE.min(size);
                    let first = Some((r.into_stream(), end));
                    Ok(Some(BlobRead::Stream(
                        self.stream_from(*digest, size, first),
                        size,
                    )))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                // An empty object has no first byte to ask for.
                Err(_) => match self.client.head(&self.blob_key(digest)).await {
                    Ok(m) => Ok(Some(BlobRead::Stream(self.stream(*digest, m.size), m.size))),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.err("look up", &e)),
                },
            }
        })
    }

    fn read<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            match self.open(digest).await? {
                None => Ok(None),
                Some(BlobRead::File(mut f, len)) => {
                    let mut v = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                    f.read_to_end(&mut v)
                        .await
                        .map_err(|e| StoreError::io(self.tier.root(), e))?;
                    Ok(Some(v.into()))
                }
                Some(BlobRead::Stream(s, _)) => match s.try_collect::<Vec<Bytes>>().await {
                    Ok(chunks) => Ok(Some(chunks.concat().into())),
                    // Corrupt in the bucket (and now quarantined): not stored.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
                    Err(e) => Err(StoreError::ObjectStore {
                        store: self.describe.to_string(),
                        op: "read",
                        reason: e.to_string(),
                    }),
                },
            }
        })
    }

    fn contains(&self, digest: &Digest) -> bool {
        if self.tier.get(digest).is_some() {
            return true;
        }
        let (client, key) = (self.client.clone(), self.blob_key(digest));
        matches!(
            self.block(async move { Self::exists(client.as_ref(), &key).await }),
            Ok(Ok(true))
        )
    }

    fn remove(&self, digest: &Digest) -> Result<u64, StoreError> {
        self.tier.remove(digest);
        let (client, key) = (self.client.clone(), self.blob_key(digest));
        let size = self.block(async move {
            let size = match client.head(&key).await {
                Ok(m) => m.size,
                Err(object_store::Error::NotFound { .. }) => return Ok(0),
                Err(e) => return Err(e),
            };
            client.delete(&key).await.map(|()| size)
        })?;
        size.map_err(|e| self.err("delete", &e))
    }

    fn list(&self) -> Vec<Listed> {
        let client = self.client.clone();
        let prefix = Key::from(format!("{}blobs/sha256", self.prefix));
        let listed =
            self.block(async move { client.list(Some(&prefix)).try_collect::<Vec<_>>().await });
        match listed {
            Ok(Ok(objects)) => objects
                .into_iter()
                .map(|m| {
                    let digest = m
                        .location
                        .filename()
                        .and_then(Digest::parse)
                        .filter(|d| self.blob_key(d) == m.location);
                    Listed {
                        digest,
                        location: PathBuf::from(m.location.as_ref()),
                        size: m.size,
                    }
                })
                .collect(),
            Ok(Err(e)) => {
                tracing::error!(error = %self.err("list", &e), "cannot list the bucket");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot list the bucket");
                Vec::new()
            }
        }
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        if let Some(p) = self.tier.get(digest) {
            return Some(p);
        }
        // Fetch it into the tier (verified on the way); a blob too large for the tier has no
        // local path.
        let (client, key) = (self.client.clone(), self.blob_key(digest));
        let size = self
            .block(async move { client.head(&key).await.map(|m| m.size) })
            .ok()?
            .ok()?;
        if !self.tier.fits(size) {
            return None;
        }
        let stream = self.stream(*digest, size);
        let drained = self.block(async move {
            let mut s = stream;
            while let Some(chunk) = s.next().await {
                chunk?;
            }
            Ok::<(), io::Error>(())
        });
        match drained {
            Ok(Ok(())) => self.tier.get(digest),
            _ => None,
        }
    }

    fn quarantine(&self, location: &Path, dir: &Path) -> Result<(PathBuf, u64), StoreError> {
        // A bucket key or a disk-tier path: either way the blob is named by its file name.
        let name = location.file_name().map_or_else(
            || "unnamed".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        let from = match Digest::parse(&name) {
            Some(d) => {
                self.tier.remove(&d);
                self.blob_key(&d)
            }
            None => Key::from(location.to_string_lossy().as_ref()),
        };
        let to = Key::from(format!(
            "{}quarantine/{}-{name}",
            self.prefix,
            crate::store::now_ms()
        ));
        let client = self.client.clone();
        let (f, t) = (from.clone(), to.clone());
        let size = self
            .block(async move {
                let size = client.head(&f).await?.size;
                client.copy(&f, &t).await?;
                client.delete(&f).await?;
                Ok::<u64, object_store::Error>(size)
            })?
            .map_err(|e| self.err("quarantine", &e))?;
        let _ = dir;
        Ok((PathBuf::from(to.as_ref()), size))
    }

    fn hash(&self, listed: &Listed) -> Result<(Digest, u64), StoreError> {
        let client = self.client.clone();
        let key = Key::from(listed.location.to_string_lossy().as_ref());
        let describe = self.describe.clone();
        self.block(async move {
            let mut h = sha2::Sha256::new();
            let mut len = 0u64;
            let mut s = client
                .get(&key)
                .await
                .map_err(|e| object_error(&describe, "read", &e))?
                .into_stream();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| object_error(&describe, "read", &e))?;
                h.update(&chunk);
                len += chunk.len() as u64;
            }
            Ok((Digest(h.finalize().into()), len))
        })?
    }

    fn shared_get<'a>(
        &'a self,
        ns: &'static str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            match self.client.get(&self.record_key(ns, key)).await {
                // A record is a few hundred bytes: a larger object is not one of ours, and is
                // never read into memory whole.
                Ok(r) if r.meta.size > MAX_SHARED_RECORD => {
                    tracing::warn!(
                        ns,
                        size = r.meta.size,
                        "ignored an oversized shared record in the bucket"
                    );
                    Ok(None)
                }
                Ok(r) => r
                    .bytes()
                    .await
                    .map(Some)
                    .map_err(|e| self.err("read a shared record", &e)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("read a shared record", &e)),
            }
        })
    }

    fn shared_put<'a>(
        &'a self,
        ns: &'static str,
        key: &'a str,
        value: Bytes,
        create_only: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let opts = PutOptions {
                mode: if create_only {
                    PutMode::Create
                } else {
                    PutMode::Overwrite
                },
                ..PutOptions::default()
            };
            match self
                .client
                .put_opts(&self.record_key(ns, key), PutPayload::from(value), opts)
                .await
            {
                Ok(_)
                | Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(()),
                Err(e) => Err(self.err("write a shared record", &e)),
            }
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn shared_put_blocking(
        &self,
        ns: &'static str,
        key: &str,
        value: Bytes,
    ) -> Result<(), StoreError> {
        let (client, k) = (self.client.clone(), self.record_key(ns, key));
        self.block(async move { client.put(&k, PutPayload::from(value)).await })?
            .map(|_| ())
            .map_err(|e| self.err("write a shared record", &e))
    }

    fn shared_remove(&self, names: &[String]) -> Result<(), StoreError> {
        let client = self.client.clone();
        let prefix = format!("{}records/", self.prefix);
        // Only records: a name from elsewhere is never deleted through here.
        let keys: Vec<Key> = names
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .map(|n| Key::from(n.as_str()))
            .collect();
        let describe = self.describe.clone();
        self.block(async move {
            for k in keys {
                match client.delete(&k).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(object_error(&describe, "delete a shared record", &e)),
                }
            }
            Ok(())
        })?
    }

    fn shared_scan(&self, ns: &'static str) -> Result<Vec<(String, Bytes)>, StoreError> {
        let client = self.client.clone();
        let prefix = Key::from(format!("{}records/{ns}", self.prefix));
        let describe = self.describe.clone();
        self.block(async move {
            let objects: Vec<_> = client
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| object_error(&describe, "list shared records", &e))?;
            let mut out = Vec::with_capacity(objects.len());
            for m in objects {
                match client.get(&m.location).await {
                    Ok(r) => out.push((
                        m.location.to_string(),
                        r.bytes()
                            .await
                            .map_err(|e| object_error(&describe, "read a shared record", &e))?,
                    )),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(object_error(&describe, "read a shared record", &e)),
                }
            }
            Ok(out)
        })?
    }

    fn local_bytes(&self) -> u64 {
        self.tier.bytes()
    }
}
