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

pub mod name;
mod offline;
pub mod packument;
pub mod publish;
pub mod sync;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::auth::Credential;
use crate::cache::request_body::RequestBody;
use crate::cache::{expect_later, BlobSpec, Core, Fetched, MetaHit, MetaSpec};
use crate::cache::{Expect, Origin};
use crate::error::NotFound;
use crate::error::{Error, RequestError, StoreError};
use crate::forwarding::{self, Kind, Verdict};
use crate::gitlab::Namespace;
use crate::reply::Reply;
pub use name::PackageName;
use packument::{PackumentBuilder, TarballRef};

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

pub(crate) async fn tarball(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    file: &str,
    credential: &Credential,
) -> Result<Reply, Error> {
    if let Some(reply) = tarball_at_once(core, scope, name, file, credential).await? {
        return Ok(reply);
    }
    let (origin, tref) = locate(core, scope, name, file, credential).await?;
    fetch_tarball(core, origin, &tref, name, credential).await
}

/// A cold tarball at a project prefix: GitLab's URL for it is known before its packument
/// is, so both are fetched at once and a miss costs one round trip, not two. GitLab's answer
/// to the tarball request, made with the caller's credential, is its own access decision; the
/// gate (the packument this caller may read, listing the file) still decides before the
/// first byte goes out, and the download is verified against the packument's checksums
/// before its last byte (its hashes are all computed as it streams in; see
/// `BlobSpec::expect_later`). `None`: not such a case, take the ordinary path.
async fn tarball_at_once(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    file: &str,
    credential: &Credential,
) -> Result<Option<Reply>, Error> {
    // GitLab writes tarball URLs with the project's numeric id, the name and the file plain.
    let Namespace::Project(id) = scope else {
        return Ok(None);
    };
    if core.is_offline() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let url = core.gitlab_url(&format!("{}/{name}/-/{file}", scope.npm_prefix()));
    let key = blob_key(Origin::Gitlab, &url);
    // Already fetched: served only once the gate has passed, the ordinary way.
    if core.has_blob(&key).await? {
        return Ok(None);
    }
    let (checksums, later) = expect_later();
    // Its own task: the download waits on it, whether or not this request stays.
    let located = tokio::spawn({
        let (core, scope, name, file) =
            (core.clone(), scope.clone(), name.clone(), file.to_string());
        let (credential, key) = (credential.clone(), key.clone());
        async move {
            let located = locate(&core, &scope, &name, &file, &credential).await;
            let expect = match &located {
                Ok((Origin::Gitlab, tref)) if blob_key(Origin::Gitlab, &tref.url) == key => Some(
                    Expect::npm(tref.shasum.as_deref(), tref.integrity.as_deref()),
                ),
                // Refused, public, or the packument names another URL: nothing to confirm.
                _ => None,
            };
            let _ = checksums.send(Some(expect));
            located
        }
    });
    let fetched = core
        .blob(BlobSpec {
            key: key.clone(),
            url,
            credential: credential.clone(),
            expect: Expect::default(),
            content_type: "application/octet-stream",
            kind: "npm_tarball",
            origin: Origin::Gitlab,
            validate: None,
            forward_name: Some(name.to_string()),
            expect_later: Some(later),
        })
        .await;
    let (origin, tref) = located.await.map_err(|source| Error::Task {
        what: "tarball lookup",
        source,
    })??;
    match fetched {
        Ok(hit) if origin == Origin::Gitlab && blob_key(origin, &tref.url) == key => {
            Ok(Some(tarball_reply(hit, origin, credential)))
        }
        // The download this request joined was led by a caller GitLab refused, or never
        // confirmed: with the gate passed, fetch as this caller.
        Err(e) if retry_alone(&e) => fetch_tarball(core, origin, &tref, name, credential)
            .await
            .map(Some),
        Err(e) => Err(tarball_refusal(e, credential)),
        // The packument lists the file under another URL: fetch that one.
        Ok(_) => fetch_tarball(core, origin, &tref, name, credential)
            .await
            .map(Some),
    }
}

/// Whether a download started at once failed for a reason that may be another caller's (a
/// refusal of the credential that led it, or checksums its own lookup never confirmed).
fn retry_alone(e: &Error) -> bool {
    matches!(
        e.inner(),
        Error::Store(crate::error::StoreError::Unconfirmed)
    ) || matches!(
        e.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    )
}

/// The gate for a tarball: whoever may read the package's metadata at this prefix may read
/// the files listed in the document they were allowed to read (at the group and instance
/// prefixes, that caller's own document, see `MetaSpec::per_caller`). Where the file lives
/// and what it must hash to, or the refusal as GitLab's tarball route words it.
async fn locate(
    core: &Arc<Core>,
    scope: &Namespace,
    name: &PackageName,
    file: &str,
    credential: &Credential,
) -> Result<(Origin, TarballRef), Error> {
    let mut attempts = 0;
    let offline = core.is_offline();
    let elsewhere = || offline::file_elsewhere(core, scope, name, file, credential);
    loop {
        attempts += 1;
        let Resolved { hit, origin } = match resolve(core, scope, name, credential).await {
            Ok(r) => r,
            // Offline, a file synced through another prefix answers here too.
            Err(e) if offline && e.status() == StatusCode::NOT_FOUND => match elsewhere()? {
                Some(tref) => return Ok((Origin::Gitlab, tref)),
                None => return Err(tarball_refusal(e, credential)),
            },
            Err(e) => return Err(tarball_refusal(e, credential)),
        };
        let aux_prefix = match origin {
            Origin::Gitlab => format!("npmfile/{}/{}/", scope.key(), name),
            Origin::Public => format!("npmpubfile/{}/{}/", scope.key(), name),
        };
        let key = PackumentBuilder::file_key(&aux_prefix, file);
        match core.listed::<TarballRef>(&hit, &key)? {
            Some(tref) => return Ok((origin, tref)),
            // Another caller's document may have replaced this one's between the two
            // reads (its files then carry the other revision): resolve once more.
            None if hit.per_caller && attempts < 2 => continue,
            None if offline && origin == Origin::Gitlab => match elsewhere()? {
                Some(tref) => return Ok((Origin::Gitlab, tref)),
                None => return Err(Error::npm_not_found("Package")),
            },
            None => return Err(Error::npm_not_found("Package")),
        }
    }
}

/// Serve a located tarball: from the store, or fetched as the caller (anonymously from a
/// public registry) and verified against its packument's checksums.
async fn fetch_tarball(
    core: &Arc<Core>,
    origin: Origin,
    tref: &TarballRef,
    name: &PackageName,
    credential: &Credential,
) -> Result<Reply, Error> {
    let fetch_as = match origin {
        Origin::Gitlab => credential.clone(),
        Origin::Public => Credential::anonymous(),
    };
    // A public tarball is only ever what its packument's checksum says: without one there is
    // nothing to verify the bytes against, so they are neither cached nor served.
    if origin == Origin::Public && tref.shasum.is_none() && tref.integrity.is_none() {
        return Err(Error::Upstream(crate::error::UpstreamError::Body {
            url: crate::urls::redact(&tref.url),
            reason: "the public registry's packument gives no shasum or integrity for this tarball; packrat serves only what it can verify".into(),
        }));
    }
    let hit = core
        .blob(BlobSpec {
            key: blob_key(origin, &tref.url),
            url: tref.url.clone(),
            credential: fetch_as,
            expect: Expect::npm(tref.shasum.as_deref(), tref.integrity.as_deref()),
            content_type: "application/octet-stream",
            kind: "npm_tarball",
            origin,
            validate: None,
            forward_name: (origin == Origin::Gitlab).then(|| name.to_string()),
            expect_later: None,
        })
        .await
        .map_err(|e| tarball_refusal(e, credential))?;
    Ok(tarball_reply(hit, origin, credential))
}

fn tarball_reply(hit: crate::cache::BlobHit, origin: Origin, credential: &Credential) -> Reply {
    let public = credential.is_anonymous() || origin == Origin::Public;
    Reply::blob(hit)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .immutable(public)
}

/// The index key of a tarball's blob: GitLab's by API path (whatever host GitLab wrote),
/// a public registry's by full URL. One file, one key, whichever prefix asked.
pub(crate) fn blob_key(origin: Origin, url: &str) -> String {
    match origin {
        Origin::Gitlab => format!(
            "npm-tgz:{}",
            url.find("/api/v4/").map_or(url, |i| &url[i..])
        ),
        Origin::Public => format!("npmpub-tgz:{url}"),
    }
}

/// GitLab's tarball route answers 404 where its metadata route answers 401 to an anonymous
/// caller (no `authenticate_non_public` there; the routes:
/// <https://docs.gitlab.com/api/packages/npm/>). On npm routes GitLab reads HTTP Basic only as
/// a deploy token, and a Basic credential that is none is no credential: such a caller is
/// anonymous to GitLab too. A token GitLab rejects in a carrier it reads is a 401 on both
/// routes.
fn tarball_refusal(e: Error, credential: &Credential) -> Error {
    let anonymous_to_gitlab = credential.is_anonymous() || credential.is_basic_only();
    match (e.status(), e.not_found()) {
        (StatusCode::UNAUTHORIZED, _) if anonymous_to_gitlab => Error::npm_not_found("Project"),
        (_, Some(NotFound::Package)) => Error::npm_not_found("Package"),
        _ => e,
    }
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

/// The two audit POSTs, answered as GitLab does with request forwarding off ("npm audit
/// workflow" in <https://docs.gitlab.com/user/packages/npm_registry/>): the project prefix
/// answers `[]` to anyone the upstream lets read the project; the group and instance prefixes
/// answer 404; anonymous callers get 401.
async fn audit(
    core: &Arc<Core>,
    scope: &Namespace,
    kind: AuditKind,
    req: NpmRequest<'_>,
) -> Result<Reply, Error> {
    if req.credential.is_anonymous() {
        return Err(Error::gitlab(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
    }
    if !matches!(scope, Namespace::Project(_)) {
        return Err(Error::npm_not_found("Project"));
    }
    let path = match kind {
        AuditKind::AdvisoriesBulk => "advisories/bulk",
        AuditKind::AuditsQuick => "audits/quick",
    };
    // Let GitLab check the credential: it answers 200 `[]`, or 307 to a public registry
    // when its own forwarding is on (which packrat does not follow), or a refusal.
    let body = req.body.unwrap_or_default().bytes().await?;
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let path = format!("{}/-/npm/v1/security/{path}", scope.npm_prefix());
    match core
        .uncached_post(&path, req.credential, body, content_type, "npm_audit")
        .await?
    {
        // GitLab's forwarding is on: its 307 is sent before any access check, so whether
        // this caller may read the project's packages is asked another way.
        Fetched::ForwardedToPublic { .. } => {
            audit_read_check(core, scope, req.credential).await?;
            Ok(audit_empty())
        }
        Fetched::NotModified { .. } => Ok(audit_empty()),
        other => other.into_body(&path).map(|_| audit_empty()),
    }
}

fn audit_empty() -> Reply {
    Reply::json(StatusCode::OK, Bytes::from_static(b"[]"))
}

/// The read_package check GitLab's audit route makes with forwarding off, through the
/// Packages API (same permission): a denial becomes the audit route's own answer.
async fn audit_read_check(
    core: &Arc<Core>,
    scope: &Namespace,
    credential: &Credential,
) -> Result<(), Error> {
    let Namespace::Project(id) = scope else {
        return Err(Error::npm_not_found("Project"));
    };
    let path = format!(
        "/api/v4/projects/{}/packages?per_page=1",
        crate::gitlab::segment(id)
    );
    match core.uncached_get(&path, credential, "npm_audit").await {
        Ok(_) => Ok(()),
        Err(e) if e.status() == StatusCode::NOT_FOUND => Err(Error::npm_not_found("Project")),
        Err(e) => Err(e),
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
