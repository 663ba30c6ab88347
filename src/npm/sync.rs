//! Mirroring npm packages ahead of time (`packrat sync`): the same gate, cache and
//! verification as serving a client, plus a `mirror/` record so `gc` keeps what a lockfile
//! needs.

use std::sync::Arc;

use serde_json::Value;

use super::packument::{PackumentBuilder, TarballRef, JSON};
use super::{blob_key, resolve, tarball, PackageName, Resolved};
use crate::auth::Credential;
use crate::cache::{CacheOutcome, Core, Payload};
use crate::cache::{Expect, Hasher, Origin};
use crate::error::Error;
use crate::gitlab::Namespace;

/// Which version of a package to mirror.
pub enum Want<'a> {
    Exact(&'a str),
    /// An npm range (`^2`, `~1.4`, `>=1 <2`) or a dist-tag (`latest`).
    Range(&'a str),
}

pub struct Synced {
    pub version: String,
    pub outcome: CacheOutcome,
    pub bytes: u64,
}

fn bad(name: &PackageName, why: String) -> Error {
    Error::Sync {
        item: name.to_string(),
        reason: why,
    }
}

/// Fetch (or confirm present) one version's packument and tarball through the cache. With a
/// lockfile's `integrity`, the tarball must match it too (else `npm ci` would refuse it
/// offline with EINTEGRITY).
pub async fn sync_version(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    want: Want<'_>,
    integrity: Option<&str>,
    credential: &Credential,
) -> Result<Synced, Error> {
    let Resolved { hit, origin } = resolve(core, scope, name, credential).await?;
    let variant = hit
        .record
        .variant(JSON)
        .ok_or_else(|| bad(name, "packument has no JSON variant".into()))?
        .clone();
    let bytes = match core.payload(&variant).await? {
        Payload::Bytes(b) => b.to_vec(),
        Payload::File(mut f, len) => {
            use tokio::io::AsyncReadExt;
            let mut v = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            f.read_to_end(&mut v)
                .await
                .map_err(|e| bad(name, e.to_string()))?;
            v
        }
    };
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| bad(name, e.to_string()))?;
    let version = pick(&doc, &want).ok_or_else(|| {
        let w = match want {
            Want::Exact(v) | Want::Range(v) => v,
        };
        bad(name, format!("no version matches {w:?}"))
    })?;
    let url = doc["versions"][&version]["dist"]["tarball"]
        .as_str()
        .ok_or_else(|| bad(name, format!("{version} has no tarball")))?;
    let file = url
        .rsplit_once("/-/")
        .map(|(_, f)| {
            percent_encoding::percent_decode_str(f)
                .decode_utf8_lossy()
                .into_owned()
        })
        .ok_or_else(|| bad(name, format!("odd tarball URL for {version}")))?;
    let reply = tarball(core, scope, name, &file, credential).await?;
    let outcome = reply.outcome;
    let bytes = match integrity {
        Some(sri) => {
            let expect = Expect::lockfile(sri);
            let mut hasher = Hasher::new(&expect);
            let n = reply
                .body
                .for_each_chunk(|c| hasher.update(c))
                .await
                .map_err(|e| bad(name, format!("reading the tarball: {e}")))?;
            expect
                .verify_lockfile(hasher, n, name, &version)
                .map_err(|e| Error::Sync {
                    item: e.name.clone(),
                    reason: e.to_string(),
                })?;
            n
        }
        None => reply
            .body
            .drain()
            .await
            .map_err(|e| bad(name, format!("downloading the tarball: {e}")))?,
    };
    // Keep it through gc: the mirror needs it.
    let prefix = match origin {
        Origin::Gitlab => format!("npmfile/{}/{}/", scope.key(), name),
        Origin::Public => format!("npmpubfile/{}/{}/", scope.key(), name),
    };
    if let Some(tref) = core.aux::<TarballRef>(&PackumentBuilder::file_key(&prefix, &file))? {
        let key = blob_key(origin, &tref.url);
        core.pin_for_mirror(&key)?;
        // The owning project's full path lets the mirror answer at every prefix offline.
        if let Some(owner) = super::packument::owner_of(&tref.url) {
            core.learn_project_names(credential, owner).await;
        }
    }
    Ok(Synced {
        version,
        outcome,
        bytes,
    })
}

/// The version `want` names in a packument: exact, a dist-tag, or the highest in a range.
pub fn pick(doc: &Value, want: &Want<'_>) -> Option<String> {
    let versions = doc.get("versions")?.as_object()?;
    match want {
        Want::Exact(v) => versions.contains_key(*v).then(|| v.to_string()),
        Want::Range(r) => {
            if let Some(v) = doc
                .get("dist-tags")
                .and_then(|t| t.get(*r))
                .and_then(Value::as_str)
            {
                return Some(v.to_string());
            }
            if versions.contains_key(*r) {
                return Some(r.to_string());
            }
            let req = npm_range(r)?;
            versions
                .keys()
                .filter_map(|k| semver::Version::parse(k).ok())
                .filter(|v| req.matches(v))
                .max()
                .map(|v| v.to_string())
        }
    }
}

/// npm's space-separated comparators (`>=1 <2`) in the semver crate's comma form.
fn npm_range(r: &str) -> Option<semver::VersionReq> {
    let r = r.trim();
    if r.is_empty() || r == "*" || r == "x" {
        return semver::VersionReq::parse("*").ok();
    }
    let mut parts: Vec<String> = Vec::new();
    for tok in r.split_whitespace() {
        // Join an operator written apart from its version (`>= 1.2`).
        if let Some(last) = parts.last_mut() {
            if last.chars().all(|c| "<>=~^".contains(c)) {
                last.push_str(tok);
                continue;
            }
        }
        parts.push(tok.to_string());
    }
    semver::VersionReq::parse(&parts.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_versions() {
        let doc = serde_json::json!({
            "versions": {"1.0.0": {}, "1.2.0": {}, "2.0.0": {}, "2.1.0-rc.1": {}},
            "dist-tags": {"latest": "2.0.0", "next": "2.1.0-rc.1"}
        });
        let p = |w: Want<'_>| pick(&doc, &w);
        assert_eq!(p(Want::Exact("1.2.0")).as_deref(), Some("1.2.0"));
        assert_eq!(p(Want::Exact("9.9.9")), None);
        assert_eq!(p(Want::Range("^1")).as_deref(), Some("1.2.0"));
        assert_eq!(p(Want::Range(">=1 <2")).as_deref(), Some("1.2.0"));
        assert_eq!(p(Want::Range("latest")).as_deref(), Some("2.0.0"));
        assert_eq!(p(Want::Range("next")).as_deref(), Some("2.1.0-rc.1"));
        assert_eq!(p(Want::Range("*")).as_deref(), Some("2.0.0"));
        assert_eq!(p(Want::Range("1.0.0")).as_deref(), Some("1.0.0"));
    }
}
