//! Access decisions: what the upstream answered a credential (by hash) for a scope, and for
//! how long that answer may be reused. This is the memory of the one authorization gate
//! (`crate::cache::Core::gate`): a decision younger than `auth_ttl` (404s:
//! `negative_ttl`) is reused; with the upstream unreachable, one younger than
//! `stale_if_error` is; anything else is asked again upstream. Decisions past that are of no
//! use and say who read what, so [`Decisions::expire`] deletes them (every few minutes).

use std::sync::Arc;
use std::time::Duration;

use super::credential::Credential;
use crate::error::StoreError;
use crate::store::{now_ms, Decision, Index, Tree};

pub struct Decisions {
    index: Arc<Index>,
    hot: moka::sync::Cache<String, Arc<Decision>>,
    auth_ttl: Duration,
    negative_ttl: Duration,
    stale_if_error: Duration,
}

/// How a stored decision may be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// Within `auth_ttl` (or `negative_ttl` for a 404): reuse without asking.
    Fresh,
    /// Older, but within `stale_if_error`: reuse only if the upstream cannot be asked.
    Stale,
    /// Too old to use at all.
    Expired,
}

impl Decisions {
    pub fn new(
        index: Arc<Index>,
        auth_ttl: Duration,
        negative_ttl: Duration,
        stale_if_error: Duration,
    ) -> Self {
        Decisions {
            index,
            hot: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(stale_if_error.max(Duration::from_secs(1)))
                .build(),
            auth_ttl,
            negative_ttl,
            stale_if_error,
        }
    }

    fn key(cred: &Credential, scope: &str) -> String {
        format!("{}|{}", cred.hash().hex(), scope)
    }

    pub fn get(&self, cred: &Credential, scope: &str) -> Option<Arc<Decision>> {
        let key = Self::key(cred, scope);
        if let Some(d) = self.hot.get(&key) {
            return Some(d);
        }
        let d: Decision = self.index.get(Tree::Auth, &key).ok().flatten()?;
        let d = Arc::new(d);
        self.hot.insert(key, d.clone());
        Some(d)
    }

    pub fn record(&self, cred: &Credential, scope: &str, d: Decision) -> Arc<Decision> {
        let key = Self::key(cred, scope);
        if let Err(e) = self.index.put(Tree::Auth, &key, &d) {
            tracing::warn!(error = %e, "could not persist an access decision");
        }
        let d = Arc::new(d);
        self.hot.insert(key, d.clone());
        d
    }

    pub fn forget(&self, cred: &Credential, scope: &str) {
        let key = Self::key(cred, scope);
        self.hot.invalidate(&key);
        let _ = self.index.remove(Tree::Auth, &key);
    }

    /// Delete every stored decision too old to be used ([`Age::Expired`]) and every record
    /// that does not decode; returns how many were deleted.
    pub fn expire(&self) -> Result<usize, StoreError> {
        let (ok, bad) = self.index.scan_all::<Decision>(Tree::Auth)?;
        let mut removed = 0;
        let expired = ok
            .into_iter()
            .filter(|(_, d)| self.age(d) == Age::Expired)
            .map(|(k, _)| k);
        for key in expired.chain(bad) {
            self.hot.invalidate(&key);
            self.index.remove(Tree::Auth, &key)?;
            removed += 1;
        }
        Ok(removed)
    }

    pub fn age(&self, d: &Decision) -> Age {
        let age = Duration::from_millis(now_ms().saturating_sub(d.at));
        let ttl = if d.status == 404 {
            self.negative_ttl.min(self.auth_ttl)
        } else {
            self.auth_ttl
        };
        if age < ttl {
            Age::Fresh
        } else if age < self.stale_if_error {
            Age::Stale
        } else {
            Age::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_deletes_only_decisions_too_old_to_use() {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(dir.path()).unwrap());
        let s = Duration::from_secs;
        let decisions = Decisions::new(index.clone(), s(1), s(1), s(60));
        let at = |ago: u64| Decision {
            at: now_ms() - ago * 1000,
            status: 200,
            body: None,
            www_authenticate: None,
        };
        let old = Credential::private_token(&crate::config::Secret::new("old".into()));
        let stale = Credential::private_token(&crate::config::Secret::new("stale".into()));
        decisions.record(&old, "scope", at(120));
        decisions.record(&stale, "scope", at(30));
        assert_eq!(decisions.expire().unwrap(), 1);
        assert!(decisions.get(&old, "scope").is_none());
        assert!(
            decisions.get(&stale, "scope").is_some(),
            "still usable on an outage"
        );
        assert_eq!(index.scan_all::<Decision>(Tree::Auth).unwrap().0.len(), 1);
        assert_eq!(decisions.expire().unwrap(), 0);
    }
}
