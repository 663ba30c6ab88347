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
//! The gate ([`Core::gate`]) is the one function every cached read goes through.

pub mod flight;
pub mod gate;
pub mod projects;
pub mod records;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::StatusCode;

use crate::auth::{Credential, Decisions};
use crate::config::Config;
use crate::error::{Error, StoreError, UpstreamError};
use crate::metrics::Metrics;
use crate::store::{
    now_ms, BlobEntry, Decision, Digest, Expect, MetaRecord, Origin, Store, Tree, Variant,
};
use crate::upstream::{self, Fetched, Request, Upstream};
use flight::{Flights, Progress, Role};
use gate::{Content, Held, Outage, Verdict};

/// Characters kept as-is when a project or group path is put into a URL segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Largest metadata document accepted from an upstream.
const MAX_METADATA: u64 = 512 << 20;
/// Variants up to this size are kept in the hot memory tier; larger ones stream from disk.
const HOT_MAX_ITEM: u64 = 64 << 20;
/// Blobs (tarballs, zips) up to this size are also served from the hot tier (bounded as a
/// whole by `storage.memory_cache`): no file open and no blocking reads per request.
const HOT_MAX_BLOB: u64 = 8 << 20;

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

/// Turns an upstream metadata body into the variants packrat serves. Runs off the async
/// threads, once per upstream revision (and again only if `server.public_url` changes).
pub trait Build: Send + Sync {
    fn build(&self, raw: &[u8]) -> Result<Built, Error>;
    /// The public base URL the variants embed (a change triggers a rebuild from `raw`).
    fn base(&self) -> String;
    /// The aux key prefix under which this document's file records live (`Built::aux`
    /// entries starting with it), if it lists files.
    fn files_prefix(&self) -> Option<String> {
        None
    }
    /// A file record that a new revision of a document shared by all callers no longer lists:
    /// the file is gone upstream. Returns the other aux keys and the blob index keys that must
    /// stop answering for it (the bytes stay for gc).
    fn retire(&self, _key: &str, _record: &serde_json::Value) -> Retired {
        Retired::default()
    }
}

/// What answers for a file that a new revision of its document dropped.
#[derive(Default)]
pub struct Retired {
    pub aux: Vec<String>,
    pub blobs: Vec<String>,
}

#[derive(Default)]
pub struct Built {
    pub variants: Vec<BuiltVariant>,
    /// Small adapter-owned index records written with the document.
    pub aux: Vec<(String, serde_json::Value)>,
}

pub struct BuiltVariant {
    pub name: &'static str,
    pub bytes: Bytes,
    pub content_type: &'static str,
}

/// A metadata read.
pub struct MetaSpec<'a> {
    /// Index key of the document.
    pub key: String,
    /// Authorization scope: whoever the upstream allowed to read `url` may read this.
    pub scope: String,
    pub url: String,
    pub credential: &'a Credential,
    pub forward_name: Option<&'a str>,
    pub kind: &'static str,
    pub builder: Arc<dyn Build>,
    /// What a not-found looks like on this route (GitLab's body differs per family).
    pub not_found: fn() -> Error,
    /// Where the document comes from (kept in the record; origins are never merged).
    pub origin: Origin,
    /// The upstream may answer each caller a different document at this URL (GitLab's npm
    /// group and instance metadata with `npm_allow_packages_in_multiple_projects`): a cached
    /// record goes only to a caller whose decision names its revision.
    pub per_caller: bool,
}

impl MetaSpec<'_> {
    /// What a cached read of `rec` would serve, as the gate compares it with a decision.
    fn content<'r>(&self, rec: Option<&'r MetaRecord>) -> Content<'r> {
        if self.per_caller {
            Content::Revision(rec.and_then(|r| r.revision.as_deref()))
        } else {
            Content::Shared
        }
    }
}

pub struct MetaHit {
    pub record: Arc<MetaRecord>,
    pub outcome: CacheOutcome,
    /// The record is one caller's document ([`MetaSpec::per_caller`]): read the files it
    /// lists with [`Core::listed`].
    pub per_caller: bool,
}

/// Checks a completed download (its temp file) before it may be committed.
pub type Validate = Arc<dyn Fn(&std::path::Path) -> Result<(), String> + Send + Sync>;

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

/// A metadata variant's bytes, from memory or from disk.
pub enum Payload {
    Bytes(Bytes),
    File(tokio::fs::File, u64),
}

/// Aux records written with a metadata document carry its [`MetaRecord::revision`] under
/// this key (object values only), so [`Core::listed`] can tell which revision listed them.
pub const AUX_REVISION: &str = "_packrat_revision";

pub struct Core {
    pub config: Arc<Config>,
    pub store: Store,
    pub upstream: Upstream,
    pub decisions: Decisions,
    pub flights: Flights,
    pub metrics: Arc<Metrics>,
    hot: moka::future::Cache<Digest, Bytes>,
    meta_locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    public_url: OnceLock<String>,
    /// Names known to be pinned (saves an index read per request; pins are never removed).
    pub pins_seen: moka::sync::Cache<String, ()>,
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

    /// An allow for `spec`'s scope, granted on `rec` (its revision, for per-caller scopes).
    fn record_allow(&self, spec: &MetaSpec<'_>, rec: &MetaRecord) {
        let revision = if spec.per_caller {
            rec.revision.clone()
        } else {
            None
        };
        let ok = StatusCode::OK;
        self.record_decision_on(
            spec.credential,
            &spec.scope,
            ok,
            &Bytes::new(),
            None,
            revision,
        );
    }

    fn fresh(&self, rec: &MetaRecord) -> bool {
        Duration::from_millis(now_ms().saturating_sub(rec.fetched_at))
            < self.config.cache.metadata_ttl
    }

    fn within_stale_if_error(&self, rec: &MetaRecord) -> bool {
        Duration::from_millis(now_ms().saturating_sub(rec.fetched_at))
            < self.config.cache.stale_if_error
    }

    /// Read a metadata document: from the index when fresh and the caller is known to be
    /// allowed, else from the upstream (conditionally when possible).
    pub async fn metadata(&self, spec: MetaSpec<'_>) -> Result<MetaHit, Error> {
        if self.upstream.is_offline() {
            // An offline mirror serves what it holds, however old; access was checked against
            // offline.tokens by the router. Never a connection attempt.
            return match self.store.index.get::<MetaRecord>(Tree::Meta, &spec.key)? {
                Some(rec) if !rec.variants.is_empty() => {
                    self.metrics.hit(spec.kind);
                    self.ready(&spec, rec, CacheOutcome::Hit).await
                }
                _ => Err(self.offline_miss(&spec.url)),
            };
        }
        if let Some(hit) = self.meta_from_cache(&spec).await? {
            return Ok(hit);
        }
        // Coalesce concurrent refreshes of one document; after the wait, look again.
        let lock = self
            .meta_locks
            .get_with(spec.key.clone(), || Arc::new(tokio::sync::Mutex::new(())));
        let _guard = lock.lock().await;
        if let Some(hit) = self.meta_from_cache(&spec).await? {
            return Ok(hit);
        }
        let rec: Option<MetaRecord> = self.store.index.get(Tree::Meta, &spec.key)?;
        let stale_decision =
            match self.gate(spec.credential, &spec.scope, spec.content(rec.as_ref())) {
                Verdict::Ask(d) => d,
                Verdict::Allow => None,
                Verdict::Refuse(d) => return Err(refusal(&d)),
            };
        self.metrics.miss(spec.kind);
        // A per-caller record from before revisions existed is fetched whole: its body is
        // then stored with a revision (a 304 would leave it without one).
        let etag = rec
            .as_ref()
            .filter(|r| !r.variants.is_empty() && (r.revision.is_some() || !spec.per_caller))
            .and_then(|r| r.etag.clone());
        let mut req = Request::get(spec.url.clone(), spec.credential, spec.kind);
        req.if_none_match = etag.as_deref();
        req.accept = Some("application/json");
        req.forward = spec.forward_name.map(upstream::Forward::Metadata);
        match self.upstream.send(req).await {
            Ok(Fetched::NotModified { etag: new_etag }) => {
                let Some(mut rec) = rec else {
                    return Err(Error::Internal(
                        "upstream answered 304 to an unconditional request".into(),
                    ));
                };
                rec.fetched_at = now_ms();
                // The body is unchanged, and so is the revision (a new ETag only validates it).
                if new_etag.is_some() {
                    rec.etag = new_etag;
                }
                self.store.index.put(Tree::Meta, &spec.key, &rec)?;
                // The 304 proves this caller sees this very document: the allow names its
                // revision (`ready` gives an old record without one its revision first).
                let hit = self.ready(&spec, rec, CacheOutcome::Revalidated).await?;
                self.record_allow(&spec, &hit.record);
                Ok(hit)
            }
            Ok(Fetched::Body(body)) => {
                let raw = upstream::read_all(body.stream, MAX_METADATA, &spec.url).await?;
                // For a per-caller scope this is the caller's own document: it is served to
                // them and replaces the record, whose new revision no other caller's
                // decision names.
                let rec = self
                    .store_meta(
                        &spec.key,
                        &spec.builder,
                        raw,
                        body.etag,
                        spec.origin,
                        !spec.per_caller,
                    )
                    .await?;
                self.record_allow(&spec, &rec);
                Ok(MetaHit {
                    record: Arc::new(rec),
                    outcome: CacheOutcome::Miss,
                    per_caller: spec.per_caller,
                })
            }
            Ok(Fetched::NotFound { body }) => {
                self.record_decision(
                    spec.credential,
                    &spec.scope,
                    StatusCode::NOT_FOUND,
                    &body,
                    None,
                );
                Err(Error::passthrough(StatusCode::NOT_FOUND, body, None))
            }
            Ok(Fetched::Denied {
                status,
                body,
                www_authenticate,
            }) => {
                self.record_decision(
                    spec.credential,
                    &spec.scope,
                    status,
                    &body,
                    www_authenticate.clone(),
                );
                Err(Error::passthrough(status, body, www_authenticate))
            }
            Ok(Fetched::ForwardedToPublic { location }) => {
                // GitLab has no such package and would send the client to a public registry.
                // Public fallback is decided by packrat's forwarding rules, not here.
                tracing::info!(name = spec.forward_name, location = %upstream::redact(&location), "upstream forwards this name to a public registry; answering not found");
                Err((spec.not_found)())
            }
            Err(e) => self.on_upstream_error(&spec, rec, stale_decision, e).await,
        }
    }

    async fn meta_from_cache(&self, spec: &MetaSpec<'_>) -> Result<Option<MetaHit>, Error> {
        let rec: Option<MetaRecord> = self.store.index.get(Tree::Meta, &spec.key)?;
        match self.gate(spec.credential, &spec.scope, spec.content(rec.as_ref())) {
            Verdict::Refuse(d) => {
                self.metrics.hit(spec.kind);
                Err(refusal(&d))
            }
            Verdict::Allow => match rec {
                Some(rec) if self.fresh(&rec) && !rec.variants.is_empty() => {
                    self.metrics.hit(spec.kind);
                    self.ready(spec, rec, CacheOutcome::Hit).await.map(Some)
                }
                _ => Ok(None),
            },
            Verdict::Ask(_) => Ok(None),
        }
    }

    /// The upstream failed: the outage rule ([`gate::outage`]) decides between stale content,
    /// the caller's recent refusal, the failure itself and the undecided caller's answer.
    async fn on_upstream_error(
        &self,
        spec: &MetaSpec<'_>,
        rec: Option<MetaRecord>,
        stale_decision: Option<Arc<Decision>>,
        e: UpstreamError,
    ) -> Result<MetaHit, Error> {
        let decision = stale_decision.or_else(|| self.decisions.get(spec.credential, &spec.scope));
        let usable = rec.filter(|r| self.within_stale_if_error(r) && !r.variants.is_empty());
        let held = match (&usable, &decision) {
            (None, _) => Held::Nothing,
            (Some(r), Some(d)) if spec.content(Some(r)).granted(d) => Held::Granted,
            (Some(_), _) => Held::NotGranted,
        };
        let aged = decision
            .as_ref()
            .map(|d| (d.as_ref(), self.decisions.age(d)));
        match gate::outage(&e, aged, held, spec.origin == Origin::Public) {
            Outage::ServeStale => match usable {
                Some(rec) => {
                    tracing::warn!(key = %spec.key, error = %e, "upstream failed; serving stale metadata");
                    self.ready(spec, rec, CacheOutcome::StaleIfError).await
                }
                None => Err(e.into()),
            },
            Outage::Refuse => match decision {
                Some(d) => Err(refusal(&d)),
                None => Err(undecided(&e)),
            },
            Outage::Fail => Err(e.into()),
            Outage::Undecided => Err(undecided(&e)),
        }
    }

    /// Make sure the record's variants were built for this server's public URL.
    async fn ready(
        &self,
        spec: &MetaSpec<'_>,
        rec: MetaRecord,
        outcome: CacheOutcome,
    ) -> Result<MetaHit, Error> {
        let base = spec.builder.base();
        // A per-caller record from before revisions existed is rebuilt too: that gives it a
        // revision and stamps its aux records with it.
        if rec.built_for == base && !(spec.per_caller && rec.revision.is_none()) {
            return Ok(MetaHit {
                record: Arc::new(rec),
                outcome,
                per_caller: spec.per_caller,
            });
        }
        let Some(raw) = &rec.raw else {
            return Err(Error::Internal(
                "metadata record has no raw body to rebuild from".into(),
            ));
        };
        let raw = self
            .store
            .blobs
            .read(&raw.digest)
            .await?
            .ok_or_else(|| Error::Internal("raw metadata blob is missing".into()))?;
        let mut rebuilt = self
            .store_meta(
                &spec.key,
                &spec.builder,
                raw,
                rec.etag.clone(),
                rec.origin,
                !spec.per_caller,
            )
            .await?;
        rebuilt.fetched_at = rec.fetched_at;
        self.store.index.put(Tree::Meta, &spec.key, &rebuilt)?;
        Ok(MetaHit {
            record: Arc::new(rebuilt),
            outcome,
            per_caller: spec.per_caller,
        })
    }

    /// Build the variants of a new upstream revision and index them. The file records the
    /// previous revision wrote and this one does not are removed; for a document every caller
    /// shares (`shared`), the files it dropped are gone upstream, so what answered for them is
    /// retired too ([`Build::retire`]): a deleted version is never served from the cache again.
    async fn store_meta(
        &self,
        key: &str,
        builder: &Arc<dyn Build>,
        raw: Bytes,
        etag: Option<String>,
        origin: Origin,
        shared: bool,
    ) -> Result<MetaRecord, Error> {
        let b = builder.clone();
        let raw2 = raw.clone();
        let built = tokio::task::spawn_blocking(move || b.build(&raw2))
            .await
            .map_err(|e| Error::Internal(format!("metadata build task failed: {e}")))??;
        let raw_info = self.store.blobs.put_bytes(&raw).await?;
        let revision = etag
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", raw_info.digest.hex()));
        let mut variants = Vec::with_capacity(built.variants.len());
        for v in built.variants {
            let info = self.store.blobs.put_bytes(&v.bytes).await?;
            if info.len <= HOT_MAX_ITEM {
                self.hot.insert(info.digest, v.bytes.clone()).await;
            }
            variants.push(Variant {
                name: v.name.to_string(),
                digest: info.digest,
                len: info.len,
                etag: format!("\"{}\"", info.digest.hex()),
                content_type: v.content_type.to_string(),
            });
        }
        if let Some(prefix) = builder.files_prefix() {
            let listed: std::collections::HashSet<&str> =
                built.aux.iter().map(|(k, _)| k.as_str()).collect();
            for (k, v) in self
                .store
                .index
                .scan::<serde_json::Value>(Tree::Aux, &prefix)?
            {
                if listed.contains(k.as_str()) {
                    continue;
                }
                self.store.index.remove(Tree::Aux, &k)?;
                if shared {
                    let retired = builder.retire(&k, &v);
                    for a in &retired.aux {
                        self.store.index.remove(Tree::Aux, a)?;
                    }
                    for b in &retired.blobs {
                        self.store.index.remove(Tree::Blobs, b)?;
                    }
                    tracing::info!(key = %k, "a new revision no longer lists this file; it is no longer served");
                }
            }
        }
        for (k, mut v) in built.aux {
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    AUX_REVISION.into(),
                    serde_json::Value::from(revision.clone()),
                );
            }
            self.store.index.put(Tree::Aux, &k, &v)?;
        }
        let rec = MetaRecord {
            fetched_at: now_ms(),
            etag,
            origin,
            raw: Some(Variant {
                name: "raw".into(),
                digest: raw_info.digest,
                len: raw_info.len,
                etag: String::new(),
                content_type: "application/json".into(),
            }),
            built_for: builder.base(),
            variants,
            revision: Some(revision),
        };
        self.store.index.put(Tree::Meta, key, &rec)?;
        Ok(rec)
    }

    /// The bytes of a variant: the hot tier, else the blob store.
    pub async fn payload(&self, v: &Variant) -> Result<Payload, Error> {
        if let Some(b) = self.hot.get(&v.digest).await {
            return Ok(Payload::Bytes(b));
        }
        if v.len <= HOT_MAX_ITEM {
            let bytes = self.store.blobs.read(&v.digest).await?.ok_or_else(|| {
                Error::Store(StoreError::Verify(format!(
                    "metadata blob {} is missing; run `packrat verify`",
                    v.digest
                )))
            })?;
            self.hot.insert(v.digest, bytes.clone()).await;
            return Ok(Payload::Bytes(bytes));
        }
        match self.store.blobs.open(&v.digest).await? {
            Some((f, len)) => Ok(Payload::File(f, len)),
            None => Err(Error::Store(StoreError::Verify(format!(
                "metadata blob {} is missing; run `packrat verify`",
                v.digest
            )))),
        }
    }

    /// An adapter-owned index record.
    pub fn aux<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        Ok(self.store.index.get(Tree::Aux, key)?)
    }

    /// An aux record written with a document (a file it lists), as the caller who got `hit`
    /// may see it: for a per-caller document only if `hit`'s revision wrote it, i.e. the
    /// document this caller was allowed to read lists it. Files listed only by another
    /// caller's document are `None`, exactly like files that do not exist.
    pub fn listed<T: serde::de::DeserializeOwned>(
        &self,
        hit: &MetaHit,
        key: &str,
    ) -> Result<Option<T>, Error> {
        let Some(value) = self.store.index.get::<serde_json::Value>(Tree::Aux, key)? else {
            return Ok(None);
        };
        let stamp = value.get(AUX_REVISION).and_then(serde_json::Value::as_str);
        let current = hit.record.revision.as_deref();
        let listed_here = if hit.per_caller {
            stamp.is_some() && stamp == current
        } else {
            // A shared document: its current revision must list the file (records written
            // before revisions existed carry no stamp and stand).
            stamp.is_none() || current.is_none() || stamp == current
        };
        if !listed_here {
            return Ok(None);
        }
        match serde_json::from_value(value) {
            Ok(v) => Ok(Some(v)),
            // As the index treats a record that does not decode: absent.
            Err(e) => {
                tracing::warn!(key, error = %e, "aux record does not decode; treating as absent");
                Ok(None)
            }
        }
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

    /// Note a blob read (for LRU eviction); written to the index by [`Core::flush_atimes`].
    fn touch(&self, digest: Digest) {
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
        Ok(batch.len())
    }

    /// Write an adapter-owned index record.
    pub fn put_aux<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        Ok(self.store.index.put(Tree::Aux, key, value)?)
    }

    /// Serve a blob: from the store, by joining a download in flight, or by starting one.
    pub async fn blob(self: &Arc<Self>, spec: BlobSpec) -> Result<BlobHit, Error> {
        loop {
            if let Some(hit) = self.blob_from_store(&spec).await? {
                return Ok(hit);
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
            // A blob with a validation hook is not visible before it passed: its requesters
            // wait for the commit instead of streaming the download, so a refused blob is a
            // clean error response and never a 200 whose body already went out whole.
            let len = if spec.validate.is_some() {
                flight::settled(&mut rx).await.map(Some)
            } else {
                flight::first_answer(&mut rx).await
            }
            .map_err(Error::Shared)?;
            let body = flight::tail(rx, self.store.blobs.clone());
            return Ok(BlobHit {
                body: BlobBody::Stream(Box::pin(body)),
                len,
                digest: None,
                outcome,
            });
        }
    }

    async fn blob_from_store(&self, spec: &BlobSpec) -> Result<Option<BlobHit>, Error> {
        let Some(entry) = self.store.index.get::<BlobEntry>(Tree::Blobs, &spec.key)? else {
            return Ok(None);
        };
        if entry.size <= HOT_MAX_BLOB {
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
            Some((file, len)) => {
                self.metrics.hit(spec.kind);
                self.touch(entry.digest);
                Ok(Some(BlobHit {
                    body: BlobBody::File(file),
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
    async fn download(self: Arc<Self>, spec: BlobSpec, lead: flight::Lead) {
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

    async fn fetch_into_store(
        &self,
        spec: &BlobSpec,
        lead: &flight::Lead,
    ) -> Result<(Digest, u64), Error> {
        let mut req = Request::get(spec.url.clone(), &spec.credential, spec.kind);
        req.forward = spec.forward_name.as_deref().map(upstream::Forward::Tarball);
        let body = match self.upstream.send(req).await? {
            Fetched::Body(b) => b,
            Fetched::NotFound { body } => {
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
        let mut writer = self.store.blobs.create(expect).await?;
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
                    url: upstream::redact(&spec.url),
                    reason: format!("expected {t} bytes, got {}", writer.len()),
                }
                .into());
            }
        }
        if let Some(validate) = spec.validate.clone() {
            let path = writer.tmp_path().to_path_buf();
            tokio::task::spawn_blocking(move || validate(&path))
                .await
                .map_err(|e| Error::Internal(format!("validation task failed: {e}")))?
                .map_err(|reason| Error::Store(StoreError::Verify(reason)))?;
        }
        let info = writer.commit().await?;
        self.store.index.put(
            Tree::Blobs,
            &spec.key,
            &BlobEntry {
                digest: info.digest,
                size: info.len,
                content_type: spec.content_type.to_string(),
                fetched_at: now_ms(),
                etag: body.etag,
                origin: spec.origin,
            },
        )?;
        Ok((info.digest, info.len))
    }
}

impl Core {
    /// An offline mirror's miss: a fast 404 that names the mirror and what it lacks (the path
    /// as this mirror serves it, never the upstream it was synced from) and says what to do.
    fn offline_miss(&self, upstream_url: &str) -> Error {
        let redacted = upstream::redact(upstream_url);
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
    Error::Remembered(Box::new(Error::Passthrough {
        status: StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN),
        body: Bytes::from(d.body.clone().unwrap_or_default()),
        www_authenticate: d.www_authenticate.clone(),
    }))
}
