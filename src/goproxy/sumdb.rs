//! The checksum database proxy at `/go/sumdb/<name>/...` (the go command's "proxying a
//! checksum database" protocol): `supported`, `latest`, `lookup/<module>@<version>` and
//! `tile/...`, fetched from `forwarding.go_sumdb` without credentials. Lookups and tiles are
//! immutable blobs; `latest` is metadata with `metadata_ttl`. This is what keeps `GOSUMDB`
//! verification working through packrat, and offline for what was synced.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use super::not_found;
use crate::auth::Credential;
use crate::cache::{BlobSpec, Build, Built, BuiltVariant, Core, MetaSpec};
use crate::cache::{Expect, Origin};
use crate::error::{Error, StoreError};
use crate::reply::Reply;

struct Raw;

impl Build for Raw {
    fn build(&self, raw: &[u8]) -> Result<Built, Error> {
        Ok(Built {
            variants: vec![BuiltVariant {
                name: "latest",
                bytes: Bytes::copy_from_slice(raw),
                content_type: "text/plain; charset=utf-8",
            }],
            aux: Vec::new(),
        })
    }
    fn base(&self) -> String {
        String::new()
    }
}

/// The name packrat serves: the last path segment of `forwarding.go_sumdb` when it has a
/// path (a database reached through a proxy, `https://proxy.golang.org/sumdb/sum.golang.org`),
/// else its host (without port).
pub fn served_name(sumdb_url: &str) -> String {
    let rest = sumdb_url.split_once("://").map_or(sumdb_url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    if let Some(segment) = rest
        .split_once('/')
        .and_then(|(_, path)| path.split('/').rfind(|s| !s.is_empty()))
    {
        return segment.to_string();
    }
    let origin = crate::urls::origin_of(sumdb_url);
    let host = origin.split("://").nth(1).unwrap_or("");
    host.split(':').next().unwrap_or(host).to_string()
}

fn valid_rest(rest: &str) -> bool {
    !rest.is_empty()
        && rest.len() <= 2048
        && !rest
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/@!+".contains(&b))
}

/// The canonical form of a raw request path after `/go/sumdb/<name>/`: percent-decoded (the
/// go command sends `!` as `%21`), then validated. Only this form is forwarded and used as
/// the cache key, so `%21x` and `!x` are one entry, and `%2e%2e` is the `..` it means.
fn canonical_rest(raw: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    valid_rest(&decoded).then(|| decoded.into_owned())
}

pub async fn handle(core: &Arc<Core>, name: &str, rest: &str) -> Result<Reply, Error> {
    let base = core
        .config()
        .forwarding
        .go_sumdb
        .trim_end_matches('/')
        .to_string();
    let Some(rest) = canonical_rest(rest).filter(|_| name == served_name(&base)) else {
        return Err(not_found());
    };
    let rest = rest.as_str();
    let anonymous = Credential::anonymous();
    let url = format!("{base}/{rest}");
    if rest == "supported" {
        return Ok(Reply::new(
            StatusCode::OK,
            crate::reply::ReplyBody::Empty,
            crate::cache::CacheOutcome::Bypass,
        ));
    }
    if rest == "latest" {
        let key = format!("sumdb/{name}/latest");
        let hit = core
            .metadata(MetaSpec {
                key: key.clone(),
                scope: format!("sumdb/{name}"),
                url,
                credential: &anonymous,
                forward_name: None,
                kind: "sumdb_latest",
                builder: Arc::new(Raw),
                not_found,
                origin: Origin::Public,
                per_caller: false,
            })
            .await?;
        let v = hit
            .record
            .variant("latest")
            .ok_or_else(|| StoreError::Incomplete {
                key: "the checksum database's latest".into(),
                what: "latest variant",
            })?
            .clone();
        let payload = core.payload(&v).await?;
        return Ok(Reply::payload(payload, hit.outcome)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .revalidate(true)
            .etag(&v.etag)
            .warn_if_stale());
    }
    if !(rest.starts_with("lookup/") || rest.starts_with("tile/")) {
        return Err(not_found());
    }
    // A private module's name never goes to the public checksum database: not once it is
    // pinned, and not before either (a mapped module nobody fetched yet, a `forward = false`
    // rule), as the client's GONOSUMDB would have it.
    if let Some(lookup) = rest.strip_prefix("lookup/") {
        let module = lookup.rsplit_once('@').map_or(lookup, |(m, _)| m);
        let module = super::escape::unescape(module).unwrap_or_else(|| module.to_string());
        if super::is_private(core, &module).await? {
            tracing::info!(
                module,
                "not looking up a private module in the public checksum database"
            );
            return Err(Error::gitlab(
                StatusCode::NOT_FOUND,
                format!(
                    "404 Not Found: packrat never looks up GitLab's or other private modules in the public checksum database; list them in GONOSUMDB (e.g. GONOSUMDB={})",
                    core.config().go.host
                ),
            ));
        }
    }
    let hit = core
        .blob(BlobSpec {
            key: format!("sumdb:{name}/{rest}"),
            url,
            credential: anonymous,
            expect: Expect {
                max_size: Some(1 << 20),
                ..Expect::default()
            },
            content_type: "text/plain; charset=utf-8",
            kind: "sumdb",
            origin: Origin::Public,
            validate: None,
            forward_name: None,
            expect_later: None,
        })
        .await?;
    let ct = if rest.starts_with("tile/") {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    };
    Ok(Reply::blob(hit)
        .header(http::header::CONTENT_TYPE, ct)
        .immutable(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(served_name("https://sum.golang.org"), "sum.golang.org");
        assert_eq!(served_name("http://127.0.0.1:9999"), "127.0.0.1");
        assert_eq!(served_name("https://sum.golang.org/"), "sum.golang.org");
        assert_eq!(
            served_name("https://proxy.golang.org/sumdb/sum.golang.org"),
            "sum.golang.org"
        );
        assert_eq!(
            served_name("http://127.0.0.1:9999/go/sumdb/sum.example.com/"),
            "sum.example.com"
        );
        assert!(valid_rest("lookup/golang.org/x/text@v0.3.0"));
        assert!(valid_rest("tile/8/0/x001/234.p/5"));
        assert!(!valid_rest("tile/../../etc"));
        assert!(!valid_rest("lookup/a b"));
        assert_eq!(
            canonical_rest("lookup/gitlab.example.com/acme/%21utils@v1.0.0").as_deref(),
            Some("lookup/gitlab.example.com/acme/!utils@v1.0.0")
        );
        for bad in [
            "tile/%2e%2e/%2e%2e/etc",
            "lookup/a%20b@v1.0.0",
            "lookup/a%2525b@v1.0.0",
            "lookup/%ff@v1",
        ] {
            assert_eq!(canonical_rest(bad), None, "{bad}");
        }
    }
}
