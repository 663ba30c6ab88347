//! The metadata path: documents (packuments, Go lists, the checksum database's latest) served
//! from the index while fresh and the caller is allowed, else revalidated upstream with
//! `If-None-Match`; variants built once per upstream revision ([`Build`]) and served from the
//! hot tier when small enough ([`Core::payload`]); stale-if-error by the outage rule
//! ([`super::gate`]); files a document lists read only through the revision the caller may
//! see ([`Core::listed`]), and retired when a new revision drops them ([`Retired`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::gate::{self, Content, Held, Outage, Verdict};
use super::{refusal, undecided, CacheOutcome, Core};
use crate::auth::Credential;
use crate::error::{Error, StoreError, UpstreamError};
use crate::store::{now_ms, Decision, MetaRecord, Origin, Tree, Variant};
use crate::upstream::{self, Fetched, Request};

/// Largest metadata document accepted from an upstream.
const MAX_METADATA: u64 = 512 << 20;

/// No metadata variant larger than this is read into memory whole.
pub const HOT_MAX_ITEM: u64 = 64 << 20;

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
    pub(super) fn content<'r>(&self, rec: Option<&'r MetaRecord>) -> Content<'r> {
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

/// A metadata variant's bytes, from memory or from disk.
pub enum Payload {
    Bytes(Bytes),
    File(tokio::fs::File, u64),
}

/// Aux records written with a metadata document carry its [`MetaRecord::revision`] under
/// this key (object values only), so [`Core::listed`] can tell which revision listed them.
pub const AUX_REVISION: &str = "_packrat_revision";

impl Core {
    /// An allow for `spec`'s scope, granted on `rec` (its revision, for per-caller scopes).
    pub(super) fn record_allow(&self, spec: &MetaSpec<'_>, rec: &MetaRecord) {
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

    pub(super) fn fresh(&self, rec: &MetaRecord) -> bool {
        Duration::from_millis(now_ms().saturating_sub(rec.fetched_at))
            < self.config.cache.metadata_ttl
    }

    pub(super) fn within_stale_if_error(&self, rec: &MetaRecord) -> bool {
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
                    return Err(UpstreamError::Malformed {
                        url: crate::urls::redact(&spec.url),
                        reason: "a 304 Not Modified to an unconditional request".into(),
                    }
                    .into());
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
            Ok(Fetched::NotFound { body, .. }) => {
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
                tracing::info!(name = spec.forward_name, location = %crate::urls::redact(&location), "upstream forwards this name to a public registry; answering not found");
                Err((spec.not_found)())
            }
            Err(e) => self.on_upstream_error(&spec, rec, stale_decision, e).await,
        }
    }

    pub(super) async fn meta_from_cache(
        &self,
        spec: &MetaSpec<'_>,
    ) -> Result<Option<MetaHit>, Error> {
        // The hot path of every cached read: the record decoded once and shared.
        let rec = self
            .store
            .index
            .get_shared::<MetaRecord>(Tree::Meta, &spec.key)?;
        match self.gate(spec.credential, &spec.scope, spec.content(rec.as_deref())) {
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
    pub(super) async fn on_upstream_error(
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
    pub(super) async fn ready(
        &self,
        spec: &MetaSpec<'_>,
        rec: impl Into<Arc<MetaRecord>>,
        outcome: CacheOutcome,
    ) -> Result<MetaHit, Error> {
        let rec: Arc<MetaRecord> = rec.into();
        let base = spec.builder.base();
        // A per-caller record from before revisions existed is rebuilt too: that gives it a
        // revision and stamps its aux records with it.
        if rec.built_for == base && !(spec.per_caller && rec.revision.is_none()) {
            return Ok(MetaHit {
                record: rec,
                outcome,
                per_caller: spec.per_caller,
            });
        }
        let Some(raw) = &rec.raw else {
            return Err(StoreError::Incomplete {
                key: spec.key.clone(),
                what: "raw body to rebuild from",
            }
            .into());
        };
        let raw = self
            .store
            .blobs
            .read(&raw.digest)
            .await?
            .ok_or_else(|| StoreError::Missing {
                digest: raw.digest.to_string(),
            })?;
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
    pub(super) async fn store_meta(
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
            .map_err(|source| Error::Task {
                what: "metadata build",
                source,
            })??;
        let raw_info = self.store.blobs.put_bytes(&raw).await?;
        let revision = etag
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", raw_info.digest.hex()));
        let mut variants = Vec::with_capacity(built.variants.len());
        for v in built.variants {
            let info = self.store.blobs.put_bytes(&v.bytes).await?;
            if info.len <= self.hot_meta_max() {
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
        if v.len <= self.hot_meta_max() {
            let bytes = self
                .store
                .blobs
                .read_local(&v.digest)
                .await?
                .ok_or_else(|| StoreError::Missing {
                    digest: v.digest.to_string(),
                })?;
            self.hot.insert(v.digest, bytes.clone()).await;
            return Ok(Payload::Bytes(bytes));
        }
        match self.store.blobs.open_local(&v.digest).await? {
            Some((f, len)) => Ok(Payload::File(f, len)),
            None => Err(StoreError::Missing {
                digest: v.digest.to_string(),
            }
            .into()),
        }
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
        let Some(value) = self
            .store
            .index
            .get_shared::<serde_json::Value>(Tree::Aux, key)?
        else {
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
        match T::deserialize(&*value) {
            Ok(v) => Ok(Some(v)),
            // As the index treats a record that does not decode: absent.
            Err(e) => {
                tracing::warn!(key, error = %e, "aux record does not decode; treating as absent");
                Ok(None)
            }
        }
    }
}
