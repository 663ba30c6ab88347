//! Records an adapter fills from the upstream itself (the Packages API index: package lists,
//! package files, pipelines), under the same rules as [`Core::metadata`]:
//!
//! - the gate decides first: a caller with a fresh refusal gets it again; a caller with no
//!   fresh decision is checked upstream by the fill itself, with their own credential;
//! - content is fresh for `metadata_ttl` after the fill *started*, and only if no write went
//!   through packrat since ([`Core::records_written`] moves that epoch);
//! - when the upstream is down or answers 5xx, a record younger than `stale_if_error` is
//!   served to a caller whose last decision allows it (outcome `StaleIfError`);
//! - refusals (401/403/404) are GitLab's, recorded per credential hash and scope.
//!
//! The local effects of writes live in [`super::effects`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::gate::{self, Content, Held, Outage, Verdict};
use super::{refusal, CacheOutcome, Core};
use crate::auth::Credential;
use crate::error::Error;
use crate::store::{now_ms, Tree};

/// Aux key of the write epoch: Unix ms of the last write that went through packrat.
pub(super) const EPOCH_KEY: &str = "records/epoch";

/// A record and when the fill that produced it started (Unix ms).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamped<T> {
    pub fetched_at: u64,
    pub value: T,
}

/// A read of an adapter-filled record.
pub struct RecordSpec<'a> {
    /// Authorization scope: whoever the upstream allowed to fill it may read it.
    pub scope: String,
    pub credential: &'a Credential,
    /// Metric label.
    pub kind: &'static str,
    /// Where this caller's copy lives, when that is known without asking the upstream
    /// (`None`: only a fill can tell, e.g. a credential never seen before).
    pub key: Option<String>,
    /// The upstream URL a fill reads (for messages; never logged with a query string).
    pub url: String,
    /// Offline mirrors only, when the caller has no copy of their own: any stored copy whose
    /// key is `<.0><one segment><.1>` (another class's or credential's copy of the same list;
    /// access was checked against `offline.tokens`).
    pub offline_any: Option<(String, String)>,
}

/// What a fill produced and where to keep it.
pub struct Filled<T> {
    pub key: String,
    pub value: T,
}

pub struct RecordHit<T> {
    pub value: T,
    pub outcome: CacheOutcome,
}

impl Core {
    /// Read a record through the gate: the stored copy when fresh and the caller is known to
    /// be allowed, else a fill with the caller's credential (stale-if-error on failure).
    pub async fn record<T, F, Fut>(
        &self,
        spec: RecordSpec<'_>,
        fill: F,
    ) -> Result<RecordHit<T>, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Filled<T>, Error>>,
    {
        if self.upstream.is_offline() {
            return self.record_offline(&spec);
        }
        if let Some(hit) = self.record_from_cache(&spec)? {
            return Ok(hit);
        }
        let lock_key = match &spec.key {
            Some(k) => format!("record|{k}"),
            None => format!("record|{}|{}", spec.scope, spec.credential.hash().hex()),
        };
        let lock = self
            .meta_locks
            .get_with(lock_key, || Arc::new(tokio::sync::Mutex::new(())));
        let _guard = lock.lock().await;
        if let Some(hit) = self.record_from_cache(&spec)? {
            return Ok(hit);
        }
        let stale_decision = match self.gate(spec.credential, &spec.scope, Content::Shared) {
            Verdict::Ask(d) => d,
            Verdict::Allow => None,
            Verdict::Refuse(d) => return Err(refusal(&d)),
        };
        self.metrics.miss(spec.kind);
        let started = now_ms();
        match fill().await {
            Ok(Filled { key, value }) => {
                self.store.index.put(
                    Tree::Aux,
                    &key,
                    &Stamped {
                        fetched_at: started,
                        value: &value,
                    },
                )?;
                self.record_decision(
                    spec.credential,
                    &spec.scope,
                    StatusCode::OK,
                    &Bytes::new(),
                    None,
                );
                Ok(RecordHit {
                    value,
                    outcome: CacheOutcome::Miss,
                })
            }
            Err(Error::Passthrough {
                status,
                body,
                www_authenticate,
                ..
            }) => {
                if matches!(status.as_u16(), 401 | 403 | 404) {
                    self.record_decision(
                        spec.credential,
                        &spec.scope,
                        status,
                        &body,
                        www_authenticate.clone(),
                    );
                }
                Err(Error::passthrough(status, body, www_authenticate))
            }
            // The outage rule, the same one as for metadata ([`gate::outage`]).
            Err(Error::Upstream(e)) => {
                let decision =
                    stale_decision.or_else(|| self.decisions.get(spec.credential, &spec.scope));
                let stored = match &spec.key {
                    Some(k) => self.store.index.get::<Stamped<T>>(Tree::Aux, k)?,
                    None => None,
                }
                .filter(|r| self.record_within_stale_if_error(r.fetched_at));
                let held = if stored.is_some() {
                    Held::Granted
                } else {
                    Held::Nothing
                };
                let aged = decision
                    .as_ref()
                    .map(|d| (d.as_ref(), self.decisions.age(d)));
                match (gate::outage(&e, aged, held, false), stored, decision) {
                    (Outage::ServeStale, Some(r), _) => {
                        tracing::warn!(scope = %spec.scope, error = %e, "upstream failed; serving a stale record");
                        Ok(RecordHit {
                            value: r.value,
                            outcome: CacheOutcome::StaleIfError,
                        })
                    }
                    (Outage::Refuse, _, Some(d)) => Err(refusal(&d)),
                    (Outage::Undecided, ..) | (Outage::Refuse, _, None) => {
                        Err(super::undecided(&e))
                    }
                    (Outage::Fail | Outage::ServeStale, ..) => Err(e.into()),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// An offline mirror serves what it holds, however old; never a connection attempt.
    fn record_offline<T: DeserializeOwned>(
        &self,
        spec: &RecordSpec<'_>,
    ) -> Result<RecordHit<T>, Error> {
        let own = match &spec.key {
            Some(k) => self.store.index.get::<Stamped<T>>(Tree::Aux, k)?,
            None => None,
        };
        let found = match (own, &spec.offline_any) {
            (Some(r), _) => Some(r),
            (None, Some((prefix, suffix))) => self
                .store
                .index
                .scan::<Stamped<T>>(Tree::Aux, prefix)?
                .into_iter()
                .find(|(k, _)| {
                    k.strip_prefix(prefix.as_str())
                        .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                        .is_some_and(|seg| !seg.is_empty() && !seg.contains('/'))
                })
                .map(|(_, r)| r),
            (None, None) => None,
        };
        match found {
            Some(r) => {
                self.metrics.hit(spec.kind);
                Ok(RecordHit {
                    value: r.value,
                    outcome: CacheOutcome::Hit,
                })
            }
            None => Err(self.offline_miss(&spec.url)),
        }
    }

    fn record_from_cache<T: DeserializeOwned>(
        &self,
        spec: &RecordSpec<'_>,
    ) -> Result<Option<RecordHit<T>>, Error> {
        match self.gate(spec.credential, &spec.scope, Content::Shared) {
            Verdict::Refuse(d) => {
                self.metrics.hit(spec.kind);
                Err(refusal(&d))
            }
            Verdict::Allow => {
                let Some(key) = &spec.key else {
                    return Ok(None);
                };
                match self.store.index.get::<Stamped<T>>(Tree::Aux, key)? {
                    Some(r) if self.record_fresh(r.fetched_at) => {
                        self.metrics.hit(spec.kind);
                        Ok(Some(RecordHit {
                            value: r.value,
                            outcome: CacheOutcome::Hit,
                        }))
                    }
                    _ => Ok(None),
                }
            }
            Verdict::Ask(_) => Ok(None),
        }
    }

    /// Fresh: younger than `metadata_ttl`, and filled after the last write through packrat.
    pub fn record_fresh(&self, fetched_at: u64) -> bool {
        Duration::from_millis(now_ms().saturating_sub(fetched_at)) < self.config.cache.metadata_ttl
            && fetched_at > self.records_epoch()
    }

    fn record_within_stale_if_error(&self, fetched_at: u64) -> bool {
        Duration::from_millis(now_ms().saturating_sub(fetched_at))
            < self.config.cache.stale_if_error
    }

    fn records_epoch(&self) -> u64 {
        self.store
            .index
            .get::<u64>(Tree::Aux, EPOCH_KEY)
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}
