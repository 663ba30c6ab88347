//! Access decisions: what the upstream answered a credential (by hash) for a scope, and for
//! how long that answer may be reused. This is the memory of the one authorization gate
//! (`crate::cache::Core::gate`): a decision younger than `auth_ttl` (package-not-found 404s:
//! `negative_ttl`; a 404 hiding the project or group: the shorter of the two) is reused; with
//! the upstream unreachable, one younger than `stale_if_error` is; anything else is asked
//! again upstream. Decisions past that are of no use and say who read what, so
//! [`Decisions::expire`] deletes them (every ten minutes while `serve` runs).

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

    /// A write went through: every remembered 404 for a scope `matches` accepts is
    /// forgotten, whoever it was answered to (each credential, each carrier), so the next read
    /// by anyone asks the upstream and sees what the write created. Returns how many.
    pub fn forget_not_found(&self, matches: impl Fn(&str) -> bool) -> Result<usize, StoreError> {
        let (ok, _) = self.index.scan_all::<Decision>(Tree::Auth)?;
        let mut removed = 0;
        for (key, d) in ok {
            let scope = key.split_once('|').map_or("", |(_, s)| s);
            if d.status == 404 && matches(scope) {
                self.hot.invalidate(&key);
                self.index.remove(Tree::Auth, &key)?;
                removed += 1;
            }
        }
        Ok(removed)
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
        age_at(
            d,
            now_ms(),
            self.auth_ttl,
            self.negative_ttl,
            self.stale_if_error,
        )
    }
}

/// How a decision may be used at `now` (Unix ms), given the three clocks.
pub fn age_at(
    d: &Decision,
    now: u64,
    auth_ttl: Duration,
    negative_ttl: Duration,
    stale_if_error: Duration,
) -> Age {
    let age = Duration::from_millis(now.saturating_sub(d.at));
    let ttl = match d.status {
        // GitLab hides a project or group the credential may not read behind a 404: that
        // is an access refusal, so it is not remembered longer than an access grant
        // would be (a member added upstream is let in within auth_ttl).
        404 if hides_scope(d) => negative_ttl.min(auth_ttl),
        // Any other 404 (the package is not there) is the negative cache.
        404 => negative_ttl,
        _ => auth_ttl,
    };
    if age < ttl {
        Age::Fresh
    } else if age < stale_if_error {
        Age::Stale
    } else {
        Age::Expired
    }
}

/// Whether a 404's body is GitLab's "this project/group does not exist for you"
/// (`404 Project Not Found`, `404 Group Not Found`: GitLab answers 404 for what the caller may
/// not see, <https://docs.gitlab.com/api/rest/>) rather than "no such package".
fn hides_scope(d: &Decision) -> bool {
    d.body.as_deref().is_some_and(|b| {
        let b = b.to_ascii_lowercase();
        b.contains("project not found") || b.contains("group not found")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(auth_ttl: u64, negative_ttl: u64) -> (tempfile::TempDir, Decisions) {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(&dir.path().join("index")).unwrap());
        let s = Duration::from_secs;
        let d = Decisions::new(index, s(auth_ttl), s(negative_ttl), s(86_400));
        (dir, d)
    }

    fn decision(status: u16, body: &str, age_secs: u64) -> Decision {
        Decision {
            at: now_ms() - age_secs * 1000,
            status,
            body: Some(body.to_string()),
            www_authenticate: None,
            revision: None,
        }
    }

    const PACKAGES: &str = r#"{"message":"404 Packages Not Found","error":"Packages not found"}"#;
    const PROJECT: &str = r#"{"message":"404 Project Not Found","error":"Project not found"}"#;
    const GROUP: &str = r#"{"message":"404 Group Not Found"}"#;

    #[test]
    fn a_not_found_404_is_remembered_for_negative_ttl_even_past_auth_ttl() {
        let (_dir, d) = decisions(60, 3600);
        assert_eq!(d.age(&decision(404, PACKAGES, 120)), Age::Fresh);
        assert_eq!(d.age(&decision(404, PACKAGES, 3599)), Age::Fresh);
        assert_eq!(d.age(&decision(404, PACKAGES, 3601)), Age::Stale);
        // An allow is still bounded by auth_ttl.
        assert_eq!(d.age(&decision(200, "", 120)), Age::Stale);
    }

    #[test]
    fn a_404_hiding_the_project_or_group_is_capped_at_auth_ttl() {
        let (_dir, d) = decisions(60, 3600);
        for body in [PROJECT, GROUP] {
            assert_eq!(d.age(&decision(404, body, 30)), Age::Fresh, "{body}");
            assert_eq!(d.age(&decision(404, body, 120)), Age::Stale, "{body}");
        }
        // A shorter negative_ttl wins for both kinds.
        let (_dir, d) = decisions(60, 10);
        assert_eq!(d.age(&decision(404, PACKAGES, 30)), Age::Stale);
        assert_eq!(d.age(&decision(404, PROJECT, 30)), Age::Stale);
    }

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
            revision: None,
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
