//! The cache core: the only API the protocol adapters call.
//!
//! # HTTP caching as a proxy
//! packrat caches on behalf of many credentials, so "is this response fresh?" and "may this
//! caller see it?" are separate questions with separate clocks:
//!
//! - **Content** (a [`MetaRecord`]) is fresh for `metadata_ttl` after the upstream last
//!   confirmed it; then it is revalidated with `If-None-Match` (a 304 only bumps the clock).
//!   If the upstream is down or answers 5xx, content younger than `stale_if_error` is served
//!   with `Warning: 110`.
//! - **Access** (a [`Decision`] per credential hash and scope) is reused for `auth_ttl`
//!   (`negative_ttl` for 404s). A caller with no fresh decision is always checked upstream,
//!   even if the content is fresh: the conditional request that checks them costs a 304.
//!   With the upstream unreachable, a decision younger than `stale_if_error` is reused;
//!   otherwise the request fails: it is never allowed on doubt.
//! - **Blobs** are immutable and content-addressed; reading one requires the caller to have
//!   passed the gate for the metadata scope that names it (the adapters do this first).
//! - **Per-caller documents** ([`MetaSpec::per_caller`], e.g. npm group and instance
//!   metadata, which GitLab merges from every project the caller may read): the record is
//!   shared, but a decision is only good for the revision it was granted on
//!   ([`MetaRecord::revision`]). A caller whose fresh decision names another revision is asked
//!   upstream with the record's ETag: a 304 moves their decision to this revision; a 200 is
//!   their own document, served to them and stored (so everyone else is re-checked). Files
//!   listed by such a document are read through [`Core::listed`], which finds only those the
//!   hit's revision lists.
//!
//! The gate ([`Core::gate`], deciding with [`gate::verdict`] and [`gate::outage`]) is the one
//! function every cached read goes through.
//!
//! # Layout
//! - this file: [`Core`], its operations for the adapters and the server (pass-through reads
//!   and writes, accessors), the gate's bookkeeping of decisions;
//! - [`gate`]: the gate and the outage rule, pure;
//! - `meta.rs`: metadata documents; `blob.rs`: blobs and single-flight downloads
//!   ([`flight`]); `hot.rs`: access times for eviction;
//! - [`records`]: records the adapters fill from the upstream (the Packages API index);
//! - [`effects`]: what writes that went through change locally;
//! - [`projects`]: a project's two names; [`request_body`]: bodies on their way upstream.
//!
//! The value types of the API ([`Digest`], [`Expect`], [`Origin`], [`Hasher`]) are the
//! store's, re-exported: adapters never import the store or the upstream client.

mod blob;
pub mod effects;
pub mod flight;
pub mod gate;
mod hot;
mod meta;
pub mod projects;
pub mod records;
pub mod request_body;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::auth::{Credential, Decisions};
use crate::config::Config;
use crate::error::{Error, UpstreamError};
use crate::metrics::Metrics;
pub use crate::store::digest::Hasher;
use crate::store::{now_ms, Decision, MetaRecord, Store, Tree};
pub use crate::store::{Digest, Expect, Origin};
use crate::upstream::{self, Request, Upstream};
pub use crate::upstream::{Fetched, Forwarded, OutBody};
pub use blob::{
    expect_later, BlobBody, BlobHit, BlobSpec, ExpectLater, ExpectSender, Rejected, Validate,
};
use flight::Flights;
use gate::{Content, Verdict};
pub use meta::{
    Build, Built, BuiltVariant, MetaHit, MetaSpec, Payload, Retired, AUX_REVISION, HOT_MAX_ITEM,
};

/// The shared-record namespace of adapter records every node must see (origin pins).
const SHARED_AUX: &str = "aux";

/// How a read was answered (a metric label and the `X-Packrat-Cache` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Joined,
    Revalidated,
    StaleIfError,
    /// A 4xx refusal (401, 403, 400, …), GitLab's or packrat's.
    Refused,
    /// A 404 the upstream answered just now.
    NotFound,
    /// A 404 answered from a remembered decision (`negative_ttl`), without asking.
    Negative,
    Bypass,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Joined => "joined",
            CacheOutcome::Revalidated => "revalidated",
            CacheOutcome::StaleIfError => "stale",
            CacheOutcome::Refused => "refused",
            CacheOutcome::NotFound => "not_found",
            CacheOutcome::Negative => "negative",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

/// The cache core. Its parts are its own: adapters and the server call operations, never the
/// store, the upstream client or the decision memory directly.
pub struct Core {
    config: Arc<Config>,
    store: Store,
    upstream: Upstream,
    decisions: Decisions,
    flights: Flights,
    metrics: Arc<Metrics>,
    hot: moka::future::Cache<Digest, Bytes>,
    meta_locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    public_url: OnceLock<String>,
    /// Names known to be pinned (saves an index read per request; pins are never removed).
    pins_seen: moka::sync::Cache<String, ()>,
    /// Blob access times since the last flush (no index write per request).
    atimes: std::sync::Mutex<std::collections::HashMap<Digest, u64>>,
    /// Refusals and absences an adapter learnt while searching (which GitLab project holds a
    /// Go module), per credential hash, for `min(negative_ttl, auth_ttl)`: a search repeated
    /// or varied by a client does not ask the upstream again.
    absences: moka::sync::Cache<String, u16>,
}

impl Core {
    pub fn new(config: Arc<Config>, store: Store, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let upstream = Upstream::new(&config, metrics.clone())?;
        let c = &config.cache;
        let decisions = Decisions::new(
            store.index.clone(),
            c.auth_ttl,
            c.negative_ttl,
            c.stale_if_error,
        );
        let hot = moka::future::Cache::builder()
            .max_capacity(config.storage.memory_cache)
            .weigher(|_k: &Digest, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .build();
        let absences = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(c.negative_ttl.min(c.auth_ttl).max(Duration::from_millis(1)))
            .build();
        let meta_locks = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(120))
            .build();
        Ok(Core {
            config,
            store,
            upstream,
            decisions,
            flights: Flights::default(),
            metrics,
            hot,
            meta_locks,
            public_url: OnceLock::new(),
            atimes: std::sync::Mutex::new(std::collections::HashMap::new()),
            pins_seen: moka::sync::Cache::new(100_000),
            absences,
        })
    }

    /// What the upstream answered `credential` about `key` (a status), if remembered.
    pub fn recall_absent(&self, credential: &Credential, key: &str) -> Option<StatusCode> {
        let status = self
            .absences
            .get(&format!("{}|{key}", credential.hash().hex()))?;
        StatusCode::from_u16(status).ok()
    }

    /// Remember that the upstream refused `credential` or found nothing for `key`.
    pub fn remember_absent(&self, credential: &Credential, key: &str, status: StatusCode) {
        self.absences.insert(
            format!("{}|{key}", credential.hash().hex()),
            status.as_u16(),
        );
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// An offline mirror: no upstream is ever contacted.
    pub fn is_offline(&self) -> bool {
        self.upstream.is_offline()
    }

    /// The GitLab base URL, e.g. `https://gitlab.example.com`.
    pub fn upstream_base(&self) -> &str {
        self.upstream.base()
    }

    /// The GitLab URL of a path starting with `/api/v4/`.
    pub fn gitlab_url(&self, path_and_query: &str) -> String {
        self.upstream.gitlab_url(path_and_query)
    }

    /// Downloads in flight (for `/-/ready`).
    pub fn downloads_in_flight(&self) -> usize {
        self.flights.in_flight()
    }

    /// Wait (up to `within`) until no download is in flight: the ones whose clients were
    /// served at verification may still be committing. `false` if some are left.
    pub async fn downloads_landed(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.flights.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Bytes of committed blobs in the store.
    pub fn blob_bytes(&self) -> u64 {
        self.store.blobs.bytes_on_disk()
    }

    /// Count the store's blobs, off the runtime (the size reads 0 until this is done).
    pub async fn scan_size(&self) {
        // A shared bucket is not listed at every node's start (`packrat gc` lists it).
        if self.store.blobs.is_shared() {
            return;
        }
        let blobs = self.store.blobs.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || blobs.scan_size()).await {
            tracing::warn!(error = %e, "the blob store's size scan failed");
        }
    }

    /// Flush the index to disk.
    pub async fn flush(&self) -> Result<(), Error> {
        Ok(self.store.index.flush().await?)
    }

    /// Delete access decisions too old to be used; returns how many.
    pub fn expire_decisions(&self) -> Result<usize, Error> {
        Ok(self.decisions.expire()?)
    }

    /// When the store has grown past `storage.max_size`, evict least-recently-used blobs (the
    /// same code as `packrat gc`); `None` when it fits.
    pub fn evict_over_max_size(&self) -> Result<Option<crate::gc::Report>, Error> {
        let max = self.config.storage.max_size;
        // A shared bucket is not one node's to evict from in the background: `packrat gc`
        // does it explicitly (the node's disk tier keeps itself under `local_cache`).
        if self.store.blobs.is_shared() || self.store.blobs.bytes_on_disk() <= max {
            return Ok(None);
        }
        let started = now_ms();
        let r = crate::gc::run(&self.store, max, false)?;
        let mut run = crate::status::Run::finished(
            crate::status::RunKind::Gc,
            started,
            true,
            crate::status::runs::gc_summary(&r, max),
        );
        run.by = "serve".into();
        run.details = crate::status::runs::gc_details(&r, max);
        crate::status::runs::record(&self.store, &run)?;
        Ok(Some(r))
    }

    /// The last run of a maintenance command (the index's `ops` tree).
    pub fn last_run(
        &self,
        kind: crate::status::RunKind,
    ) -> Result<Option<crate::status::Run>, Error> {
        Ok(crate::status::runs::last(&self.store, kind)?)
    }

    /// Metadata documents whose index key starts with `prefix`.
    pub fn count_documents(&self, prefix: &str) -> Result<u64, Error> {
        Ok(self.store.index.count_prefix(Tree::Meta, prefix)?)
    }

    /// Files (blob entries) whose index key starts with `prefix`.
    pub fn count_files(&self, prefix: &str) -> Result<u64, Error> {
        Ok(self.store.index.count_prefix(Tree::Blobs, prefix)?)
    }

    /// Receive a request body for the upstream: refused past `limit` as it arrives (413),
    /// spooled to the store's temp space past `spool_above` bytes.
    pub async fn receive_body<B>(
        &self,
        headers: &http::HeaderMap,
        body: B,
        limit: u64,
        spool_above: u64,
    ) -> Result<request_body::RequestBody, Error>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        request_body::receive(headers, body, limit, spool_above, &self.store.blobs).await
    }

    /// Whether a pin key is known to exist (saves an index read).
    pub fn pin_known(&self, key: &str) -> bool {
        self.pins_seen.contains_key(key)
    }

    /// Remember that a pin key exists.
    pub fn pin_seen(&self, key: &str) {
        self.pins_seen.insert(key.to_string(), ());
    }

    /// A write forwarded to the GitLab upstream with the client's credential; GitLab's answer
    /// as it sent it, whatever its status (see [`Upstream::forward`]).
    pub async fn forward(
        &self,
        method: http::Method,
        path_and_query: &str,
        credential: &Credential,
        headers: &http::HeaderMap,
        body: Option<OutBody>,
        kind: &'static str,
    ) -> Result<Forwarded, Error> {
        Ok(self
            .upstream
            .forward(method, path_and_query, credential, headers, body, kind)
            .await?)
    }

    /// A read from GitLab that is not cached (pass-through): the body, or GitLab's refusal or
    /// not-found as the error a client gets.
    pub async fn uncached_get(
        &self,
        path_and_query: &str,
        credential: &Credential,
        kind: &'static str,
    ) -> Result<upstream::Body, Error> {
        let url = self.upstream.gitlab_url(path_and_query);
        let mut req = Request::get(url.clone(), credential, kind);
        req.accept = Some("application/json");
        self.upstream.send(req).await?.into_body(&url)
    }

    /// [`Core::uncached_get`] for a small JSON answer, read whole (up to `limit` bytes).
    pub async fn uncached_json(
        &self,
        path_and_query: &str,
        credential: &Credential,
        kind: &'static str,
        limit: u64,
    ) -> Result<serde_json::Value, Error> {
        let url = self.upstream.gitlab_url(path_and_query);
        let body = self.uncached_get(path_and_query, credential, kind).await?;
        let raw = upstream::read_all(body.stream, limit, &url).await?;
        serde_json::from_slice(&raw).map_err(|e| {
            Error::Upstream(UpstreamError::Body {
                url: crate::urls::redact(&url),
                reason: format!("not a JSON document: {e}"),
            })
        })
    }

    /// A POST to GitLab whose answer is classified but not followed (the npm audit routes,
    /// whose 307 is GitLab's forwarding to a public registry).
    pub async fn uncached_post(
        &self,
        path: &str,
        credential: &Credential,
        body: Bytes,
        content_type: Option<&str>,
        kind: &'static str,
    ) -> Result<Fetched, Error> {
        let mut req = Request::get(self.upstream.gitlab_url(path), credential, kind);
        req.method = http::Method::POST;
        req.body = Some(body);
        req.content_type = content_type;
        req.follow_redirects = false;
        Ok(self.upstream.send(req).await?)
    }

    /// Set once the listener is bound (the URL may depend on the port).
    pub fn set_public_url(&self, url: String) {
        let _ = self.public_url.set(url.trim_end_matches('/').to_string());
    }

    pub fn public_url(&self) -> &str {
        self.public_url.get().map_or("", String::as_str)
    }

    /// The gate's verdict without asking anyone: `Ok(true)` for a fresh allow, the refusal
    /// for a fresh one, `Ok(false)` when only the upstream can tell.
    pub fn allowed(&self, credential: &Credential, scope: &str) -> Result<bool, Error> {
        match self.gate(credential, scope, Content::Shared) {
            Verdict::Allow => Ok(true),
            Verdict::Refuse(d) => Err(refusal(&d)),
            Verdict::Ask(_) => Ok(false),
        }
    }

    /// The one authorization function for cached reads ([`gate::verdict`] on the caller's
    /// stored decision). An allow covers `content` only if it was granted on it (always, for
    /// shared content); a fresh allow granted on another revision of a per-caller document is
    /// asked again (and usable in an outage only for the revision it names).
    fn gate(&self, credential: &Credential, scope: &str, content: Content<'_>) -> Verdict {
        let stored = self.decisions.get(credential, scope).map(|d| {
            let age = self.decisions.age(&d);
            (d, age)
        });
        gate::verdict(stored, content)
    }

    fn record_decision(
        &self,
        credential: &Credential,
        scope: &str,
        status: StatusCode,
        body: &Bytes,
        www: Option<String>,
    ) {
        self.record_decision_on(credential, scope, status, body, www, None);
    }

    /// [`Core::record_decision`], naming the revision an allow was granted on.
    fn record_decision_on(
        &self,
        credential: &Credential,
        scope: &str,
        status: StatusCode,
        body: &Bytes,
        www: Option<String>,
        revision: Option<String>,
    ) {
        self.decisions.record(
            credential,
            scope,
            Decision {
                at: now_ms(),
                status: status.as_u16(),
                body: (!status.is_success()).then(|| String::from_utf8_lossy(body).into_owned()),
                www_authenticate: www,
                revision: revision.filter(|_| status.is_success()),
            },
        );
    }

    /// An adapter-owned index record.
    pub fn aux<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        Ok(self.store.index.get(Tree::Aux, key)?)
    }

    /// All adapter-owned records under a key prefix.
    pub fn aux_scan<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, Error> {
        Ok(self
            .store
            .index
            .scan(Tree::Aux, prefix)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Whether the index has a blob under `key` (a file already fetched): on a shared store,
    /// by any node.
    pub async fn has_blob(&self, key: &str) -> Result<bool, Error> {
        if self
            .store
            .index
            .get_shared::<crate::store::BlobEntry>(Tree::Blobs, key)?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self.adopt_shared(key).await?.is_some())
    }

    /// An adapter-owned record that every node sharing the store sees (origin pins): this
    /// node's copy, else the shared one (then kept here too).
    pub async fn shared_aux<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        if let Some(v) = self.aux::<T>(key)? {
            return Ok(Some(v));
        }
        let Some(raw) = self.store.blobs.shared_get(SHARED_AUX, key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<T>(&raw) {
            Ok(v) => {
                self.put_aux(key, &v)?;
                Ok(Some(v))
            }
            Err(_) => Ok(None),
        }
    }

    /// Write an adapter-owned record here and, on a shared store, for every node (the first
    /// writer's record stands there).
    pub async fn put_shared_aux<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        if self.store.blobs.is_shared() {
            let bytes = serde_json::to_vec(value).map_err(Error::Encode)?;
            self.store
                .blobs
                .shared_put(SHARED_AUX, key, bytes.into(), true)
                .await?;
        }
        self.put_aux(key, value)
    }

    /// Whether the index holds a metadata document under `key` (any age).
    pub fn has_metadata(&self, key: &str) -> Result<bool, Error> {
        Ok(self
            .store
            .index
            .get::<MetaRecord>(Tree::Meta, key)?
            .is_some())
    }

    /// All adapter-owned records under a key prefix, with their keys.
    pub fn aux_scan_keyed<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, Error> {
        Ok(self.store.index.scan(Tree::Aux, prefix)?)
    }

    /// Write an adapter-owned index record.
    pub fn put_aux<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        Ok(self.store.index.put(Tree::Aux, key, value)?)
    }

    /// Keep a synced blob (by its index key) through gc and background eviction: a mirror
    /// serves what it was synced with for as long as it runs.
    pub fn pin_for_mirror(&self, blob_key: &str) -> Result<(), Error> {
        self.put_aux(
            &format!("{}{blob_key}", crate::gc::MIRROR_PREFIX),
            &blob_key,
        )
    }
}

impl Core {
    /// An offline mirror's miss: a fast 404 that names the mirror and what it lacks (the path
    /// as this mirror serves it, never the upstream it was synced from) and says what to do.
    fn offline_miss(&self, upstream_url: &str) -> Error {
        let redacted = crate::urls::redact(upstream_url);
        let path = redacted
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/");
        Error::Gitlab {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "404 Not Found: this offline mirror does not hold {path} (the mirror is packrat at {}); sync it on a connected machine (packrat sync), export a bundle and import it here",
                self.public_url()
            ),
            error: Some("not in the offline mirror".into()),
        }
    }
}

/// The answer to a caller packrat holds no usable access decision for while GitLab cannot be
/// asked: refuse, never allow, with the status that names the failure (502 unreachable or
/// failing, 504 timed out). One fixed sentence per status, whether or not the content is
/// cached and whatever the name, so the answer reveals nothing about what the cache holds.
pub(crate) fn undecided(e: &UpstreamError) -> Error {
    tracing::info!(error = %e, "upstream failed; the caller's access cannot be checked");
    match e.status() {
        StatusCode::GATEWAY_TIMEOUT => Error::gitlab(
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Timeout: GitLab did not answer in time to check this credential's access; retry later or raise upstream.timeout",
        ),
        _ => Error::gitlab(
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway: packrat cannot reach GitLab to check this credential's access; retry when GitLab is reachable",
        ),
    }
}

fn refusal(d: &Decision) -> Error {
    Error::Remembered(Box::new(Error::passthrough(
        StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN),
        Bytes::from(d.body.clone().unwrap_or_default()),
        d.www_authenticate.clone(),
    )))
}
