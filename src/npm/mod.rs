//! The npm adapter: GitLab's npm API (<https://docs.gitlab.com/api/packages/npm/>) at its three
//! prefixes (instance, group, project): metadata, tarballs, dist-tags, the writes
//! ([`publish`]), the audit POSTs, and writes packrat has no route for, sent on as they came.
//!
//! It parses typed routes ([`NpmRoute`]) and answers a [`Reply`], which the router renders;
//! GitLab, public registries and the data directory are reached only through [`Core`]. A name
//! GitLab does not have comes from a public registry only as [`crate::forwarding`] allows
//! ([`resolve`]). Deliberately better than GitLab (README.md, "Pointing each client at
//! packrat"): tarball URLs keep the prefix the client used, and tarballs are served at all
//! three prefixes, mapped to the owning project through the packument the client may read.

mod audit;
pub mod name;
mod offline;
pub mod packument;
pub mod publish;
pub mod sync;
mod tarball;

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};

use crate::auth::Credential;
use crate::cache::request_body::RequestBody;
use crate::cache::{Core, MetaHit, MetaSpec, Origin};
use crate::error::NotFound;
use crate::error::{Error, RequestError, StoreError};
use crate::forwarding::{self, Kind, Verdict};
use crate::gitlab::Namespace;
use crate::reply::Reply;
use audit::audit;
pub use name::PackageName;
use packument::PackumentBuilder;
pub(crate) use tarball::{blob_key, tarball};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    AdvisoriesBulk,
    AuditsQuick,
}

/// A parsed npm route (below the prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NpmRoute {
    Metadata(PackageName),
    Tarball(PackageName, String),
    DistTags(PackageName),
    /// `PUT {P}/:package_name`: publish (or deprecate).
    Publish(PackageName),
    /// `PUT .../-/package/:package_name/dist-tags/:tag`
    DistTagPut(PackageName, String),
    /// `DELETE .../-/package/:package_name/dist-tags/:tag`
    DistTagDelete(PackageName, String),
    Audit(AuditKind),
    /// A write no route of packrat's claims (npm unpublish's `PUT .../-rev/<rev>` and
    /// `DELETE .../-rev/<rev>`, …): sent to GitLab as the client sent it, whose answer comes
    /// back unchanged. The path below the prefix, still percent-encoded; no dot segments.
    Unrouted(Method, String),
}

impl NpmRoute {
    /// Parse the raw (still percent-encoded) path below the prefix.
    pub fn parse(method: &Method, rest: &str) -> Result<NpmRoute, Error> {
        let raw = rest;
        let decoded = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| RequestError::BadPackageName)?;
        let rest = decoded.as_ref();
        let read = *method == Method::GET || *method == Method::HEAD;
        // A write packrat has no route for goes to GitLab as it came (npm unpublish), but only
        // below this prefix: no segment may climb out of it.
        let unrouted = || -> Result<NpmRoute, Error> {
            let climbs = rest
                .split('/')
                .any(|seg| seg == "." || seg == ".." || seg.contains('\\'));
            if climbs || rest.bytes().any(|b| b.is_ascii_control()) {
                return Err(RequestError::BadPackageName.into());
            }
            Ok(NpmRoute::Unrouted(method.clone(), raw.to_string()))
        };
        if let Some(audit) = rest.strip_prefix("-/npm/v1/security/") {
            let kind = match audit {
                "advisories/bulk" => AuditKind::AdvisoriesBulk,
                "audits/quick" => AuditKind::AuditsQuick,
                _ => return Err(RequestError::NoRoute.into()),
            };
            return if *method == Method::POST {
                Ok(NpmRoute::Audit(kind))
            } else {
                Err(RequestError::NoRoute.into())
            };
        }
        if let Some(pkg) = rest.strip_prefix("-/package/") {
            let (name, tail) = pkg.split_once("/dist-tags").ok_or(RequestError::NoRoute)?;
            let name = PackageName::parse(name)?;
            if tail.is_empty() {
                return if read {
                    Ok(NpmRoute::DistTags(name))
                } else {
                    Err(RequestError::MethodNotAllowed.into())
                };
            }
            let tag = tail
                .strip_prefix('/')
                .filter(|t| valid_tag(t))
                .ok_or(RequestError::NoRoute)?
                .to_string();
            return match *method {
                Method::PUT => Ok(NpmRoute::DistTagPut(name, tag)),
                Method::DELETE => Ok(NpmRoute::DistTagDelete(name, tag)),
                _ => Err(RequestError::MethodNotAllowed.into()),
            };
        }
        if rest.starts_with("-/") {
            return Err(RequestError::NoRoute.into());
        }
        if *method == Method::PUT && !rest.contains("/-/") && !rest.contains("/-rev/") {
            return Ok(NpmRoute::Publish(PackageName::parse(rest)?));
        }
        if !read {
            return unrouted();
        }
        if let Some((name, file)) = rest.split_once("/-/") {
            let name = PackageName::parse(name)?;
            if !valid_file_name(&name, file) {
                return Err(Error::npm_not_found("Package"));
            }
            return Ok(NpmRoute::Tarball(name, file.to_string()));
        }
        Ok(NpmRoute::Metadata(PackageName::parse(rest)?))
    }
}

/// A dist-tag in a path: one segment (GitLab's `NO_SLASH_URL_PART_REGEX`), nothing odd.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 255
        && !tag
            .bytes()
            .any(|b| b == b'/' || b == b'\\' || b.is_ascii_control())
}

/// `<name>-<version>.tgz`, or the unscoped `<basename>-<version>.tgz` npm also uses.
fn valid_file_name(name: &PackageName, file: &str) -> bool {
    let base = name.as_str().rsplit('/').next().unwrap_or(name.as_str());
    let ok_prefix =
        file.starts_with(&format!("{}-", name.as_str())) || file.starts_with(&format!("{base}-"));
    ok_prefix
        && file.ends_with(".tgz")
        && file.len() <= 512
        && !file.contains("..")
        && !file.bytes().any(|b| b.is_ascii_control() || b == b'\\')
}

/// What the adapter needs from the HTTP request.
pub struct NpmRequest<'a> {
    pub credential: &'a Credential,
    pub headers: &'a HeaderMap,
    pub body: Option<RequestBody>,
}

pub async fn handle(
    core: &Arc<Core>,
    scope: &Namespace,
    route: NpmRoute,
    req: NpmRequest<'_>,
) -> Result<Reply, Error> {
    match route {
        NpmRoute::Metadata(name) => {
            let Resolved { hit, origin } = resolve(core, scope, &name, req.credential).await?;
            let gzip = accepts_gzip(req.headers);
            // GitLab's document is already abbreviated and GitLab ignores Accept; for public
            // packages the client gets the form it asks for.
            let abbreviated = origin == Origin::Public && wants_abbreviated(req.headers);
            let wanted = match (abbreviated, gzip) {
                (true, true) => packument::ABBREV_GZ,
                (true, false) => packument::ABBREV,
                (false, true) => packument::JSON_GZ,
                (false, false) => packument::JSON,
            };
            let variant = hit
                .record
                .variant(wanted)
                .or_else(|| hit.record.variant(packument::JSON))
                .ok_or_else(|| StoreError::Incomplete {
                    key: format!("the packument of {name}"),
                    what: "JSON variant",
                })?
                .clone();
            let payload = core.payload(&variant).await?;
            let anonymous = Credential::anonymous();
            let visibility = if origin == Origin::Public {
                &anonymous
            } else {
                req.credential
            };
            let mut reply = Reply::payload(payload, hit.outcome)
                .header(http::header::CONTENT_TYPE, &variant.content_type)
                .header(http::header::VARY, "Accept, Accept-Encoding")
                .revalidate(visibility.is_anonymous())
                .etag(&variant.etag);
            if variant.name.ends_with(".gz") {
                reply = reply.header(http::header::CONTENT_ENCODING, "gzip");
            }
            Ok(reply.warn_if_stale())
        }
        NpmRoute::DistTags(name) => {
            let Resolved { hit, .. } = resolve(core, scope, &name, req.credential)
                .await
                .map_err(|e| not_found_as(e, "Package"))?;
            let variant = hit
                .record
                .variant(packument::DIST_TAGS)
                .ok_or_else(|| StoreError::Incomplete {
                    key: format!("the packument of {name}"),
                    what: "dist-tags variant",
                })?
                .clone();
            let payload = core.payload(&variant).await?;
            let reply = Reply::payload(payload, hit.outcome)
                .header(http::header::CONTENT_TYPE, "application/json")
                .revalidate(req.credential.is_anonymous())
                .etag(&variant.etag);
            Ok(reply.warn_if_stale())
        }
        NpmRoute::Tarball(name, file) => tarball(core, scope, &name, &file, req.credential).await,
        NpmRoute::Publish(name) => publish::publish(core, scope, &name, req).await,
        NpmRoute::DistTagPut(name, tag) => {
            publish::dist_tag(core, scope, &name, &tag, Method::PUT, req).await
        }
        NpmRoute::DistTagDelete(name, tag) => {
            publish::dist_tag(core, scope, &name, &tag, Method::DELETE, req).await
        }
        NpmRoute::Audit(kind) => audit(core, scope, kind, req).await,
        NpmRoute::Unrouted(method, rest) => unrouted(core, scope, method, &rest, req).await,
    }
}

/// A write packrat has no route for, as the client sent it; GitLab's answer, unchanged. Should
/// GitLab accept it, the name it concerns revalidates everywhere.
async fn unrouted(
    core: &Arc<Core>,
    scope: &Namespace,
    method: Method,
    rest: &str,
    req: NpmRequest<'_>,
) -> Result<Reply, Error> {
    let path = format!("{}/{rest}", scope.npm_prefix());
    let body = match req.body {
        Some(b) => Some(b.outgoing().await?),
        None => None,
    };
    let answer = core
        .forward(
            method,
            &path,
            req.credential,
            req.headers,
            body,
            "npm_unrouted",
        )
        .await?;
    if answer.status.is_success() {
        let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
        let mut segs = decoded.split('/');
        let first = segs.next().unwrap_or("");
        let candidate = if first.starts_with('@') {
            format!("{first}/{}", segs.next().unwrap_or(""))
        } else {
            first.to_string()
        };
        if let Ok(name) = PackageName::parse(&candidate) {
            if let Err(e) = core
                .npm_name_written(name.as_str())
                .and_then(|()| core.records_written())
            {
                tracing::warn!(name = %name, error = %e, "a write went through upstream; invalidating the cache failed");
            }
        }
    }
    Ok(Reply::passthrough(
        answer.status,
        answer.headers,
        answer.body,
    ))
}

/// The packument for `name` as seen at `scope`, through the cache core's gate.
async fn packument(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    credential: &Credential,
) -> Result<MetaHit, Error> {
    let key = format!("npm/{}/{}", scope.key(), name);
    let builder = PackumentBuilder {
        name: name.clone(),
        tarball_base: format!("{}{}", core.public_url(), scope.npm_prefix()),
        upstream_base: core.upstream_base().to_string(),
        aux_prefix: format!("npmfile/{}/{}/", scope.key(), name),
        abbreviate: false,
        origin: Origin::Gitlab,
    };
    core.metadata(MetaSpec {
        scope: key.clone(),
        key,
        url: core.gitlab_url(&format!("{}/{}", scope.npm_prefix(), name.encoded())),
        credential,
        forward_name: Some(name.as_str()),
        kind: "npm_metadata",
        builder: Arc::new(builder),
        not_found: || Error::npm_not_found("Packages"),
        origin: Origin::Gitlab,
        // GitLab merges the group and instance documents from the projects the caller may
        // read (its `npm_allow_packages_in_multiple_projects` flag; the group and instance
        // routes: https://docs.gitlab.com/api/packages/npm/); a project's is one.
        per_caller: !matches!(scope, Namespace::Project(_)),
    })
    .await
}

/// A packument as this caller may see it, and where it came from.
pub(crate) struct Resolved {
    pub(crate) hit: MetaHit,
    pub(crate) origin: Origin,
}

/// GitLab first. Only when GitLab does not have the name (404, or its own redirect to a
/// public registry) may the public registry answer, and only as the forwarding rules and
/// the origin pins allow (see [`crate::forwarding`]).
///
/// A 404 is not always "GitLab does not have it": GitLab answers 404 *Project Not Found* to
/// an authenticated caller who may not see the project, whether or not the package exists.
/// Forwarding on that answer would hand a non-member (or a job token from another project)
/// the public package of the same name, a dependency confusion no pin can stop on a cold
/// cache. So the 404 must prove absence first ([`gitlab_lacks`]); a refusal is passed on
/// unchanged, never forwarded and never counted as a blocked attempt.
pub(crate) async fn resolve(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    credential: &Credential,
) -> Result<Resolved, Error> {
    match packument(core, scope, name, credential).await {
        Ok(hit) => {
            forwarding::pin(core, Kind::Npm, name.as_str()).await?;
            Ok(Resolved {
                hit,
                origin: Origin::Gitlab,
            })
        }
        // An offline mirror forwards nothing and blocks nothing: a name it does not hold at
        // this prefix is a plain miss (never a dependency-confusion attempt), unless it holds
        // the public package, which it serves as it was synced.
        Err(e) if e.status() == StatusCode::NOT_FOUND && core.is_offline() => {
            if forwarding::is_pinned(core, Kind::Npm, name.as_str()).await? {
                return Err(e);
            }
            let registry = core
                .config()
                .forwarding
                .npm_registry
                .clone()
                .unwrap_or_default();
            match public_packument(core, scope, name, &registry).await {
                Ok(hit) => Ok(Resolved {
                    hit,
                    origin: Origin::Public,
                }),
                Err(_) => Err(e),
            }
        }
        Err(e) if e.status() == StatusCode::NOT_FOUND => {
            let pinned = forwarding::is_pinned(core, Kind::Npm, name.as_str()).await?;
            let registry = forwarding::public_registry(core, Kind::Npm, name.as_str());
            // Nothing would change GitLab's answer: pass it on without further questions.
            if !pinned && registry.is_none() {
                return Err(e);
            }
            if !gitlab_lacks(core, scope, name, credential, &e).await {
                return Err(e);
            }
            match forwarding::decide(core, Kind::Npm, name.as_str()).await? {
                Verdict::Forward(registry) => {
                    let hit = public_packument(core, scope, name, &registry).await?;
                    forwarding::seen_public(core, Kind::Npm, name.as_str())?;
                    Ok(Resolved {
                        hit,
                        origin: Origin::Public,
                    })
                }
                Verdict::NotAllowed | Verdict::Blocked => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether GitLab's 404 for `name` at `scope` means no project there holds the name (as
/// GitLab's own request forwarding decides: on existence, regardless of who asks) rather
/// than "not for you".
///
/// - `Packages not found` (or GitLab's own redirect to a public registry): the caller can
///   see the project or namespace, and the name is not in it.
/// - An anonymous caller: GitLab answers 401 for private projects and groups, so its 404
///   already speaks of existence.
/// - Otherwise (`Project Not Found`, `Group Not Found` to an authenticated caller) GitLab
///   is asked anonymously, through the same gate and decision cache: 404 means nobody
///   holds the name; 401 means it exists in a private project this caller cannot read.
async fn gitlab_lacks(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    credential: &Credential,
    e: &Error,
) -> bool {
    if says_no_such_package(e) || credential.is_anonymous() {
        return true;
    }
    match packument(core, scope, name, &Credential::anonymous()).await {
        Err(probe) => probe.status() == StatusCode::NOT_FOUND,
        Ok(_) => false,
    }
}

/// GitLab's npm "the project is visible, the package is not in it" answer.
fn says_no_such_package(e: &Error) -> bool {
    e.not_found() == Some(NotFound::Package)
}

/// The public registry's full packument, cached like GitLab's (never merged with it).
/// Public packages are readable by anyone who may use the route: one shared decision.
async fn public_packument(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    registry: &str,
) -> Result<MetaHit, Error> {
    let key = format!("npmpub/{}/{}", scope.key(), name);
    let builder = PackumentBuilder {
        name: name.clone(),
        tarball_base: format!("{}{}", core.public_url(), scope.npm_prefix()),
        upstream_base: registry.trim_end_matches('/').to_string(),
        aux_prefix: format!("npmpubfile/{}/{}/", scope.key(), name),
        abbreviate: true,
        origin: Origin::Public,
    };
    core.metadata(MetaSpec {
        scope: format!("npmpub/{name}"),
        key,
        url: format!("{}/{}", registry.trim_end_matches('/'), name.encoded()),
        credential: &Credential::anonymous(),
        forward_name: None,
        kind: "npm_public_metadata",
        builder: Arc::new(builder),
        not_found: || Error::npm_not_found("Packages"),
        origin: Origin::Public,
        per_caller: false,
    })
    .await
}

/// A route whose not-found names another thing than the metadata route's (dist-tags say
/// `Package`): GitLab's "the name is not in the project" answer, renamed.
fn not_found_as(e: Error, thing: &str) -> Error {
    match (e.inner(), e.not_found()) {
        (Error::Passthrough { .. }, Some(NotFound::Package)) | (Error::Gitlab { .. }, Some(_)) => {
            Error::npm_not_found(thing)
        }
        _ => e,
    }
}

fn wants_abbreviated(h: &HeaderMap) -> bool {
    h.get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/vnd.npm.install-v1+json"))
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(http::header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|part| {
                let mut it = part.split(';');
                let enc = it.next().unwrap_or("").trim();
                let q_zero = it.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
                });
                (enc.eq_ignore_ascii_case("gzip") || enc == "*") && !q_zero
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(rest: &str) -> Result<NpmRoute, Error> {
        NpmRoute::parse(&Method::GET, rest)
    }

    #[test]
    fn parses_routes_in_both_encodings() {
        let ui = PackageName::parse("@acme/ui").unwrap();
        assert_eq!(get("@acme%2fui").unwrap(), NpmRoute::Metadata(ui.clone()));
        assert_eq!(get("@acme%2Fui").unwrap(), NpmRoute::Metadata(ui.clone()));
        assert_eq!(get("@acme/ui").unwrap(), NpmRoute::Metadata(ui.clone()));
        assert_eq!(
            get("@acme/ui/-/@acme/ui-1.0.0.tgz").unwrap(),
            NpmRoute::Tarball(ui.clone(), "@acme/ui-1.0.0.tgz".into())
        );
        assert_eq!(
            get("@acme%2fui/-/ui-1.0.0.tgz").unwrap(),
            NpmRoute::Tarball(ui.clone(), "ui-1.0.0.tgz".into())
        );
        assert_eq!(
            get("-/package/@acme%2fui/dist-tags").unwrap(),
            NpmRoute::DistTags(ui.clone())
        );
        assert_eq!(
            NpmRoute::parse(&Method::PUT, "@acme%2fui").unwrap(),
            NpmRoute::Publish(ui.clone())
        );
        assert_eq!(
            NpmRoute::parse(&Method::PUT, "-/package/@acme%2fui/dist-tags/stable").unwrap(),
            NpmRoute::DistTagPut(ui.clone(), "stable".into())
        );
        assert_eq!(
            NpmRoute::parse(&Method::DELETE, "-/package/@acme/ui/dist-tags/stable").unwrap(),
            NpmRoute::DistTagDelete(ui.clone(), "stable".into())
        );
        assert!(NpmRoute::parse(&Method::GET, "-/package/@acme/ui/dist-tags/stable").is_err());
        // npm unpublish: sent to GitLab as it came.
        assert_eq!(
            NpmRoute::parse(&Method::DELETE, "@acme%2fui/-rev/3").unwrap(),
            NpmRoute::Unrouted(Method::DELETE, "@acme%2fui/-rev/3".into())
        );
        assert_eq!(
            NpmRoute::parse(&Method::PUT, "@acme%2fui/-rev/3").unwrap(),
            NpmRoute::Unrouted(Method::PUT, "@acme%2fui/-rev/3".into())
        );
        assert!(NpmRoute::parse(&Method::DELETE, "@acme%2fui/..%2f..%2fusers").is_err());
        assert!(NpmRoute::parse(&Method::DELETE, "%2e%2e/x").is_err());
        assert_eq!(
            NpmRoute::parse(&Method::POST, "-/npm/v1/security/audits/quick").unwrap(),
            NpmRoute::Audit(AuditKind::AuditsQuick)
        );
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(
            get(".."),
            Err(Error::Request(RequestError::BadPackageName))
        ));
        assert!(matches!(
            get("a%00b"),
            Err(Error::Request(RequestError::BadPackageName))
        ));
        assert!(matches!(
            get("%ff"),
            Err(Error::Request(RequestError::BadPackageName))
        ));
        assert!(get(&"a".repeat(2000)).is_err());
        assert!(get("@acme/ui/-/../../etc/passwd.tgz").is_err());
        assert!(matches!(
            get("-/v1/search"),
            Err(Error::Request(RequestError::NoRoute))
        ));
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        h.insert("accept-encoding", "gzip, deflate".parse().unwrap());
        assert!(accepts_gzip(&h));
        h.insert("accept-encoding", "gzip;q=0".parse().unwrap());
        assert!(!accepts_gzip(&h));
        h.insert("accept-encoding", "identity".parse().unwrap());
        assert!(!accepts_gzip(&h));
    }
}
