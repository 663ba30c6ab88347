//! The blob path: immutable content (tarballs, Go files, package files) served from the hot
//! tier or the store, by joining a download in flight, or by leading one (single-flight,
//! [`super::flight`]) that streams to every requester while it is written, verified and
//! committed. The caller passed the gate for the metadata that names the blob first.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::StatusCode;

use super::flight::{self, Progress, Role};
use super::{CacheOutcome, Core};
use crate::auth::Credential;
use crate::error::{Error, StoreError, UpstreamError};
use crate::store::{
    now_ms, BlobEntry, BlobRead, Digest, Expect, Origin, SharedBlob, Tree, SHARED_BLOBS,
};
use crate::upstream::{self, Fetched, Request};

/// Checks a completed download (its temp file) before it may be committed.
pub type Validate = Arc<dyn Fn(&std::path::Path) -> Result<(), Rejected> + Send + Sync>;

/// Why a format check refused a download.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// A blob read; the caller has already passed the gate for the scope that names it.
#[derive(Clone)]
pub struct BlobSpec {
    pub key: String,
    pub url: String,
    pub credential: Credential,
    pub expect: Expect,
    pub content_type: &'static str,
    pub kind: &'static str,
    pub origin: Origin,
    /// Format checks beyond digests (e.g. a Go module zip's layout); a failure means the
    /// bytes are refused and nothing is cached. Such a blob is served only once committed
    /// (no streaming of the first download).
    pub validate: Option<Validate>,
    /// For a GitLab npm tarball: its package name, so that GitLab forwarding the fetch to a
    /// public registry is a not-found, never content cached as GitLab's.
    pub forward_name: Option<String>,
    /// The checksums, when they arrive while the download runs (a tarball fetched at once
    /// with its packument): the download hashes everything and waits for them before it
    /// verifies; `expect` then only gives limits.
    pub expect_later: Option<ExpectLater>,
}

/// Checksums that arrive while a download runs: `None` until known, then the expectation,
/// or `None` inside when it cannot be had (nothing is then cached).
pub type ExpectLater = tokio::sync::watch::Receiver<Option<Option<Expect>>>;

/// The sending side of an [`ExpectLater`].
pub type ExpectSender = tokio::sync::watch::Sender<Option<Option<Expect>>>;

/// A channel for checksums that arrive while their download runs.
pub fn expect_later() -> (ExpectSender, ExpectLater) {
    tokio::sync::watch::channel(None)
}

pub enum BlobBody {
    Bytes(Bytes),
    File(tokio::fs::File),
    Stream(std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>),
}

pub struct BlobHit {
    pub body: BlobBody,
    pub len: Option<u64>,
    pub digest: Option<Digest>,
    pub outcome: CacheOutcome,
}

impl Core {
    /// Serve a blob: from the store, by joining a download in flight, or by starting one.
    pub async fn blob(self: &Arc<Self>, spec: BlobSpec) -> Result<BlobHit, Error> {
        // On a shared store, another node may have fetched it: asked once per request (a
        // record whose blob is gone is then refetched from the upstream).
        let mut ask_shared = self.store.blobs.is_shared();
        loop {
            if let Some(hit) = self.blob_from_store(&spec).await? {
                return Ok(hit);
            }
            if std::mem::take(&mut ask_shared) && self.adopt_shared(&spec.key).await?.is_some() {
                continue;
            }
            if self.upstream.is_offline() {
                return Err(self.offline_miss(&spec.url));
            }
            let index = self.store.index.clone();
            let key = spec.key.clone();
            let role = self.flights.join_or_lead(&spec.key, || {
                matches!(index.get::<BlobEntry>(Tree::Blobs, &key), Ok(Some(_)))
            });
            let (mut rx, outcome) = match role {
                Role::Ready => continue,
                // A flight that already landed (committed and indexed, just not yet out of
                // the map) is a plain hit: serve it from the store.
                Role::Joiner(rx) if matches!(*rx.borrow(), Progress::Done { .. }) => continue,
                // Verified and being committed: the bytes are all there and checked, so this
                // is a hit, served from the temp file until the commit lands.
                Role::Joiner(rx) if matches!(*rx.borrow(), Progress::Verified { .. }) => {
                    self.metrics.hit(spec.kind);
                    (rx, CacheOutcome::Hit)
                }
                Role::Joiner(rx) => {
                    self.metrics.join();
                    (rx, CacheOutcome::Joined)
                }
                Role::Leader(lead) => {
                    self.metrics.miss(spec.kind);
                    let rx = lead.subscribe();
                    let core = self.clone();
                    let spec = spec.clone();
                    tokio::spawn(async move { core.download(spec, lead).await });
                    (rx, CacheOutcome::Miss)
                }
            };
            // A blob with a validation hook is not served before it passed: its requesters
            // wait until it is verified and checked instead of streaming the download, so a
            // refused blob is a clean error response, never a 200 whose body already went out.
            let len = if spec.validate.is_some() {
                flight::settled(&mut rx).await.map(Some)
            } else {
                flight::first_answer(&mut rx).await
            }
            .map_err(Error::Shared)?;
            // Verified already (a hit on a blob being committed): its digest is known.
            let digest = match &*rx.borrow() {
                Progress::Verified { digest, .. } | Progress::Done { digest, .. } => Some(*digest),
                _ => None,
            };
            let body = flight::tail(rx, self.store.blobs.clone());
            return Ok(BlobHit {
                body: BlobBody::Stream(Box::pin(body)),
                len,
                digest,
                outcome,
            });
        }
    }

    pub(super) async fn blob_from_store(&self, spec: &BlobSpec) -> Result<Option<BlobHit>, Error> {
        let Some(entry) = self
            .store
            .index
            .get_shared::<BlobEntry>(Tree::Blobs, &spec.key)?
        else {
            return Ok(None);
        };
        if entry.size <= self.hot_blob_max() {
            let hot = match self.hot.get(&entry.digest).await {
                Some(b) => Some(b),
                None => match self.store.blobs.read(&entry.digest).await? {
                    Some(b) if b.len() as u64 == entry.size => {
                        self.hot.insert(entry.digest, b.clone()).await;
                        Some(b)
                    }
                    _ => None,
                },
            };
            if let Some(bytes) = hot {
                self.metrics.hit(spec.kind);
                self.touch(entry.digest);
                return Ok(Some(BlobHit {
                    len: Some(bytes.len() as u64),
                    body: BlobBody::Bytes(bytes),
                    digest: Some(entry.digest),
                    outcome: CacheOutcome::Hit,
                }));
            }
        }
        match self.store.blobs.open(&entry.digest).await? {
            Some(read) => {
                self.metrics.hit(spec.kind);
                self.touch(entry.digest);
                let len = read.len();
                let body = match read {
                    BlobRead::File(file, _) => BlobBody::File(file),
                    BlobRead::Stream(stream, _) => BlobBody::Stream(stream),
                };
                Ok(Some(BlobHit {
                    body,
                    len: Some(len),
                    digest: Some(entry.digest),
                    outcome: CacheOutcome::Hit,
                }))
            }
            None => {
                tracing::warn!(key = %spec.key, digest = %entry.digest, "indexed blob is missing on disk; refetching");
                self.store.index.remove(Tree::Blobs, &spec.key)?;
                Ok(None)
            }
        }
    }

    /// The leader's download: stream to a temp file, publishing progress; commit; index.
    pub(super) async fn download(self: Arc<Self>, spec: BlobSpec, lead: flight::Lead) {
        match self.fetch_into_store(&spec, &lead).await {
            Ok((digest, len)) => lead.finish(Progress::Done { digest, len }),
            Err(e) => {
                // Each response that carries the failure logs it (a WARN for a 5xx, once per
                // request); here only the detail, and a not-found (Go probing versions that do
                // not exist) is no failure at all.
                tracing::debug!(key = %spec.key, error = %e, "download failed; nothing cached");
                lead.finish(Progress::Failed(Arc::new(e)));
            }
        }
    }

    pub(super) async fn fetch_into_store(
        &self,
        spec: &BlobSpec,
        lead: &flight::Lead,
    ) -> Result<(Digest, u64), Error> {
        let mut req = Request::get(spec.url.clone(), &spec.credential, spec.kind);
        req.forward = spec.forward_name.as_deref().map(upstream::Forward::Tarball);
        let body = match self.upstream.send(req).await? {
            Fetched::Body(b) => b,
            Fetched::NotFound { body, .. } => {
                return Err(Error::passthrough(StatusCode::NOT_FOUND, body, None))
            }
            Fetched::Denied {
                status,
                body,
                www_authenticate,
            } => return Err(Error::passthrough(status, body, www_authenticate)),
            Fetched::NotModified { .. } | Fetched::ForwardedToPublic { .. } => {
                return Err(Error::gitlab(StatusCode::NOT_FOUND, "404 Not Found"))
            }
        };
        let mut expect = spec.expect.clone();
        if expect.max_size.is_none() {
            expect.max_size = Some(self.config.storage.max_size);
        }
        // Announced as too large: refuse before the first byte, so the requester gets a clean
        // error response instead of a 200 that is cut at the limit.
        if let (Some(len), Some(limit)) = (body.len, expect.max_size) {
            if len > limit {
                return Err(Error::Store(StoreError::TooLarge { limit }));
            }
        }
        let mut writer = if spec.expect_later.is_some() {
            self.store.blobs.create_deferred(expect).await?
        } else {
            self.store.blobs.create(expect).await?
        };
        let tmp = Arc::new(writer.tmp_path().to_path_buf());
        let total = body.len;
        lead.progress(Progress::Writing {
            tmp: tmp.clone(),
            bytes: 0,
            total,
        });
        let mut stream = body.stream;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            writer.write(&chunk).await?;
            lead.progress(Progress::Writing {
                tmp: tmp.clone(),
                bytes: writer.len(),
                total,
            });
        }
        if let Some(t) = total {
            if t != writer.len() {
                return Err(UpstreamError::Body {
                    url: crate::urls::redact(&spec.url),
                    reason: format!("expected {t} bytes, got {}", writer.len()),
                }
                .into());
            }
        }
        if let Some(validate) = spec.validate.clone() {
            let path = writer.tmp_path().to_path_buf();
            tokio::task::spawn_blocking(move || validate(&path))
                .await
                .map_err(|source| Error::Task {
                    what: "validation",
                    source,
                })?
                .map_err(|r| Error::Store(StoreError::Rejected { reason: r.0 }))?;
        }
        if let Some(mut later) = spec.expect_later.clone() {
            // The last byte is held until the checksums are in and checked.
            let known = tokio::time::timeout(
                self.config.upstream.timeout,
                later.wait_for(Option::is_some),
            )
            .await;
            match known
                .ok()
                .and_then(Result::ok)
                .and_then(|v| v.clone())
                .flatten()
            {
                Some(expect) => writer.expect(expect),
                None => return Err(Error::Store(StoreError::Unconfirmed)),
            }
        }
        // Verified: every requester may have the whole body now; the commit (fsync, rename,
        // directory fsync) that makes it durable and visible to new requests follows.
        let digest = writer.verify()?;
        lead.progress(Progress::Verified {
            tmp: tmp.clone(),
            len: writer.len(),
            digest,
        });
        let info = writer.commit().await?;
        debug_assert_eq!(info.digest, digest);
        let entry = BlobEntry {
            digest: info.digest,
            size: info.len,
            content_type: spec.content_type.to_string(),
            fetched_at: now_ms(),
            etag: body.etag,
            origin: spec.origin,
        };
        self.store.index.put(Tree::Blobs, &spec.key, &entry)?;
        self.share_record(&spec.key, &entry).await;
        Ok((info.digest, info.len))
    }

    /// On a shared store: the record another node wrote for `key`, now in this node's index
    /// too. `None` when there is none (or on fs).
    pub(super) async fn adopt_shared(&self, key: &str) -> Result<Option<BlobEntry>, Error> {
        let Some(raw) = self.store.blobs.shared_get(SHARED_BLOBS, key).await? else {
            return Ok(None);
        };
        let Ok(rec) = serde_json::from_slice::<SharedBlob>(&raw) else {
            // A tombstone (a file the upstream deleted) or a record of a future format.
            return Ok(None);
        };
        if rec.key != key {
            return Ok(None);
        }
        self.store.index.put(Tree::Blobs, key, &rec.entry)?;
        Ok(Some(rec.entry))
    }

    /// On a shared store: tell the other nodes which blob answers `key` (written after the
    /// blob is durable in the bucket). A failure only costs them a download of their own.
    pub(super) async fn share_record(&self, key: &str, entry: &BlobEntry) {
        if !self.store.blobs.is_shared() {
            return;
        }
        let rec = SharedBlob {
            key: key.to_owned(),
            entry: entry.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&rec) else {
            return;
        };
        if let Err(e) = self
            .store
            .blobs
            .shared_put(SHARED_BLOBS, key, bytes.into(), false)
            .await
        {
            tracing::warn!(key, error = %e, "could not share the blob record; other nodes fetch it themselves");
        }
    }
}

impl Core {
    /// On a shared store: no node serves `key` from the shared record any more (a file the
    /// upstream deleted); written in the background, a tombstone over the record.
    pub(super) fn unshare_record(&self, key: String) {
        if !self.store.blobs.is_shared() {
            return;
        }
        let blobs = self.store.blobs.clone();
        tokio::spawn(async move {
            let tombstone = bytes::Bytes::from_static(b"{\"gone\":true}");
            if let Err(e) = blobs.shared_put(SHARED_BLOBS, &key, tombstone, false).await {
                tracing::warn!(key, error = %e, "could not retire the shared blob record");
            }
        });
    }
}
