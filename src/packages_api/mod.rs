//! The Packages API adapter (<https://docs.gitlab.com/api/packages/>): package lists for
//! projects and groups, one package (with `versions`), its files and its pipelines, answered
//! from the local index ([`index`]) with GitLab's filters, orderings and pagination headers
//! ([`params`], [`paginate`]); a package the index cannot show on its own is asked upstream,
//! uncached. File downloads are cached blobs, verified against the listing's checksums.
//! Deletes are forwarded upstream and applied locally only on GitLab's success (the package
//! leaves every list; the npm packuments or Go list that named it revalidate).
//!
//! Like the other adapters it parses typed routes ([`PkgRoute`]) and answers a [`Reply`],
//! which the router renders; GitLab and the data directory are reached only through [`Core`].

pub mod index;
pub mod paginate;
pub mod params;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use crate::auth::Credential;
use crate::cache::Forwarded;
use crate::cache::{BlobSpec, CacheOutcome, Core};
use crate::cache::{Digest, Expect, Origin};
use crate::error::{Error, RequestError};
use crate::gitlab::Namespace;
use crate::reply::Reply;
use index::Slice;
use params::{id_of, str_field, FilesQuery, ListKind, ListQuery, PipelinesQuery, Query};

/// Statuses whose package can be shown on its own (`GET .../packages/:package_id`).
const DETAILED: &[&str] = &["default", "deprecated"];

/// A parsed Packages API route (below `/projects/:id/packages` or `/groups/:id/packages`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PkgRoute {
    List,
    Show(i64),
    Files(i64),
    Pipelines(i64),
    DeletePackage(i64),
    DeleteFile(i64, i64),
    /// `GET .../package_files/:package_file_id/download` (GitLab 18.4): the file itself.
    Download(i64, i64),
    /// A path id that is not an integer, with Grape's message; answered only once access is
    /// decided (see [`handle`]).
    BadId(String),
}

impl PkgRoute {
    /// Parse the raw path below `packages` (`""`, `/7`, `/7/package_files`, ...). Returns
    /// `None` for paths that are not Packages API routes (other formats' routes, e.g.
    /// `packages/go/...`, are longer). Grape checks integer params before anything else.
    pub fn parse(
        method: &Method,
        target: &Namespace,
        rest: &str,
    ) -> Option<Result<PkgRoute, Error>> {
        let read = *method == Method::GET || *method == Method::HEAD;
        let delete = *method == Method::DELETE;
        let segs: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.strip_prefix('/')?.split('/').collect()
        };
        // Below a non-numeric segment are other routes (`packages/<format>/...`): nothing
        // of the Packages API, so GitLab's route 404, not an invalid `package_id`.
        if segs.len() > 1 && !segs[0].bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return None;
        }
        let group = matches!(target, Namespace::Group(_));
        let route = match (segs.as_slice(), group) {
            ([], _) => {
                if !read {
                    return Some(Err(RequestError::MethodNotAllowed.into()));
                }
                Ok(PkgRoute::List)
            }
            (_, true) => return None,
            ([id], false) => package_id(id).and_then(|id| {
                if delete {
                    Ok(PkgRoute::DeletePackage(id))
                } else if read {
                    Ok(PkgRoute::Show(id))
                } else {
                    Err(RequestError::MethodNotAllowed.into())
                }
            }),
            ([id, "package_files"], false) => package_id(id).and_then(|id| {
                if read {
                    Ok(PkgRoute::Files(id))
                } else {
                    Err(RequestError::MethodNotAllowed.into())
                }
            }),
            ([id, "pipelines"], false) => package_id(id).and_then(|id| {
                if read {
                    Ok(PkgRoute::Pipelines(id))
                } else {
                    Err(RequestError::MethodNotAllowed.into())
                }
            }),
            ([id, "package_files", file, "download"], false) => package_id(id).and_then(|id| {
                let file = params::parse_int(file).ok_or_else(|| {
                    Error::from(RequestError::Grape("package_file_id is invalid".into()))
                })?;
                if read {
                    Ok(PkgRoute::Download(id, file))
                } else {
                    Err(RequestError::MethodNotAllowed.into())
                }
            }),
            ([id, "package_files", file], false) => package_id(id).and_then(|id| {
                let file = params::parse_int(file).ok_or_else(|| {
                    Error::from(RequestError::Grape("package_file_id is invalid".into()))
                })?;
                if delete {
                    Ok(PkgRoute::DeleteFile(id, file))
                } else {
                    Err(RequestError::MethodNotAllowed.into())
                }
            }),
            _ => return None,
        };
        Some(route.or_else(|e| match e {
            Error::Request(RequestError::Grape(message)) => Ok(PkgRoute::BadId(message)),
            other => Err(other),
        }))
    }

    pub fn label(&self) -> &'static str {
        match self {
            PkgRoute::List => "packages_list",
            PkgRoute::Show(_) => "packages_show",
            PkgRoute::Files(_) => "packages_files",
            PkgRoute::Pipelines(_) => "packages_pipelines",
            PkgRoute::DeletePackage(_) => "packages_delete",
            PkgRoute::DeleteFile(..) => "packages_file_delete",
            PkgRoute::Download(..) => "packages_file_download",
            PkgRoute::BadId(_) => "packages_invalid",
        }
    }
}

fn package_id(raw: &str) -> Result<i64, Error> {
    params::parse_int(raw).ok_or_else(|| RequestError::Grape("package_id is invalid".into()).into())
}

/// What the adapter needs from the HTTP request.
pub struct PkgRequest<'a> {
    pub method: &'a Method,
    pub credential: &'a Credential,
    pub headers: &'a HeaderMap,
    /// The path as the client sent it (still percent-encoded): `Link` URLs repeat it.
    pub raw_path: &'a str,
    pub query: Option<&'a str>,
}

pub async fn handle(
    core: &Arc<Core>,
    target: &Namespace,
    route: PkgRoute,
    req: PkgRequest<'_>,
) -> Result<Reply, Error> {
    let query = Query::parse(req.query);
    let result = match route {
        PkgRoute::List => list(core, target, &query, &req).await,
        PkgRoute::Show(id) => show(core, target, id, &req).await,
        PkgRoute::Files(id) => files(core, target, id, &query, &req).await,
        PkgRoute::Pipelines(id) => pipelines(core, target, id, &query, &req).await,
        PkgRoute::DeletePackage(id) => delete_package(core, id, &req).await,
        PkgRoute::DeleteFile(id, file) => delete_file(core, id, file, &req).await,
        PkgRoute::Download(id, file) => download(core, target, id, file, &req).await,
        PkgRoute::BadId(message) => Err(RequestError::Grape(message).into()),
    };
    match result {
        Err(e @ Error::Request(RequestError::Grape(_))) => {
            access_first(core, target, &req, e).await
        }
        other => other,
    }
}

/// Grape validates parameters only after the `before` blocks that find the project or group
/// and check access: a caller packrat holds no fresh allow for gets GitLab's own answer (its
/// 401/404, or the same 400), a fresh refusal is repeated, and only an allowed caller (or
/// anyone at an offline mirror, whose tokens were checked already) gets the 400 from here.
async fn access_first(
    core: &Arc<Core>,
    target: &Namespace,
    req: &PkgRequest<'_>,
    invalid: Error,
) -> Result<Reply, Error> {
    if core.is_offline() || core.allowed(req.credential, &index::scope_of(target))? {
        return Err(invalid);
    }
    let answer = forward(core, req.method.clone(), req, "packages_invalid").await?;
    Ok(forwarded(answer))
}

async fn list(
    core: &Arc<Core>,
    target: &Namespace,
    query: &Query,
    req: &PkgRequest<'_>,
) -> Result<Reply, Error> {
    let kind = match target {
        Namespace::Project(_) => ListKind::Project,
        Namespace::Group(_) | Namespace::Instance => ListKind::Group,
    };
    let q = ListQuery::parse(query, kind, target.id())?;
    let hit = index::list(core, target, Slice::for_query(&q), req.credential).await?;
    let mut rows: Vec<&Value> = hit.value.iter().filter(|v| q.matches(v)).collect();
    rows.sort_by(|a, b| q.compare(a, b));
    let page = paginate::offset(
        rows.len(),
        q.offset,
        &q.link_params,
        &format!("{}{}", core.public_url(), req.raw_path),
    );
    let shown: Vec<Value> = rows[page.rows.clone()]
        .iter()
        .map(|v| public_links(core, (*v).clone()))
        .collect();
    Ok(json_reply(&Value::Array(shown), hit.outcome, &page.headers))
}

/// `GET /projects/:id/packages/:package_id`: from the index when the package is there and
/// shows on its own; anything else is GitLab's to answer (unknown, `error`, hidden, or newer
/// than the index), so it goes upstream.
async fn show(
    core: &Arc<Core>,
    target: &Namespace,
    id: i64,
    req: &PkgRequest<'_>,
) -> Result<Reply, Error> {
    let mut found = None;
    for slice in [
        Slice::DISPLAYABLE,
        Slice {
            terraform: true,
            ..Slice::DISPLAYABLE
        },
    ] {
        let hit = index::list(core, target, slice, req.credential).await?;
        if let Some(item) = hit.value.iter().find(|i| id_of(i) == id) {
            if DETAILED.contains(&str_field(item, "status")) {
                let versions = versions_of(item, &hit.value);
                let mut item = public_links(core, item.clone());
                if let Some(obj) = item.as_object_mut() {
                    obj.insert("versions".into(), Value::Array(versions));
                }
                found = Some((item, hit.outcome));
            }
            break;
        }
    }
    match found {
        Some((item, outcome)) => Ok(json_reply(&item, outcome, &[])),
        None => show_upstream(core, req).await,
    }
}

/// `versions`: the other displayable versions of the same name and type, by version.
fn versions_of(item: &Value, all: &[Value]) -> Vec<Value> {
    let id = id_of(item);
    let version = item.get("version").and_then(Value::as_str);
    let mut others: Vec<&Value> = all
        .iter()
        .filter(|o| {
            id_of(o) != id
                && str_field(o, "name") == str_field(item, "name")
                && str_field(o, "package_type") == str_field(item, "package_type")
                && params::DISPLAYABLE.contains(&str_field(o, "status"))
                && o.get("version")
                    .and_then(Value::as_str)
                    .is_some_and(|v| Some(v) != version)
        })
        .collect();
    others.sort_by(|a, b| {
        str_field(a, "version")
            .cmp(str_field(b, "version"))
            .then_with(|| id_of(a).cmp(&id_of(b)))
    });
    others
        .into_iter()
        .map(|o| {
            let mut v = serde_json::Map::new();
            for key in ["id", "version", "created_at", "tags"] {
                v.insert(key.into(), o.get(key).cloned().unwrap_or(Value::Null));
            }
            if let Some(p) = o.get("pipeline") {
                v.insert("pipeline".into(), p.clone());
            }
            Value::Object(v)
        })
        .collect()
}

async fn show_upstream(core: &Arc<Core>, req: &PkgRequest<'_>) -> Result<Reply, Error> {
    if core.is_offline() {
        // What the mirror does not list, it does not have.
        return Err(Error::gitlab(StatusCode::NOT_FOUND, "404 Not found"));
    }
    let path = match req.query {
        Some(q) => format!("{}?{q}", req.raw_path),
        None => req.raw_path.to_string(),
    };
    let doc = core
        .uncached_json(&path, req.credential, "packages_show", 16 << 20)
        .await?;
    Ok(json_reply(
        &public_links(core, doc),
        CacheOutcome::Bypass,
        &[],
    ))
}

async fn files(
    core: &Arc<Core>,
    target: &Namespace,
    id: i64,
    query: &Query,
    req: &PkgRequest<'_>,
) -> Result<Reply, Error> {
    let q = FilesQuery::parse(query, target.id(), id)?;
    let hit = index::files(core, target, id, req.credential).await?;
    let mut rows: Vec<&Value> = hit.value.iter().collect();
    rows.sort_by(|a, b| q.compare(a, b));
    let page = paginate::offset(
        rows.len(),
        q.offset,
        &q.link_params,
        &format!("{}{}", core.public_url(), req.raw_path),
    );
    let shown: Vec<Value> = rows[page.rows.clone()]
        .iter()
        .map(|v| (*v).clone())
        .collect();
    Ok(json_reply(&Value::Array(shown), hit.outcome, &page.headers))
}

async fn pipelines(
    core: &Arc<Core>,
    target: &Namespace,
    id: i64,
    query: &Query,
    req: &PkgRequest<'_>,
) -> Result<Reply, Error> {
    let q = PipelinesQuery::parse(query, target.id(), id)?;
    let hit = index::pipelines(core, target, id, req.credential).await?;
    let mut rows: Vec<&Value> = hit
        .value
        .iter()
        .filter(|p| q.before.is_none_or(|b| id_of(p) < b))
        .collect();
    rows.sort_by_key(|p| std::cmp::Reverse(id_of(p)));
    let per_page = usize::try_from(q.per_page).unwrap_or(20);
    let more = rows.len() > per_page;
    rows.truncate(per_page);
    let mut headers = Vec::new();
    if let (true, Some(last)) = (more, rows.last()) {
        headers.push((
            "link",
            paginate::keyset_next_link(
                &q.request_params,
                id_of(last),
                &format!("{}{}", core.public_url(), req.raw_path),
            ),
        ));
    }
    let shown: Vec<Value> = rows.into_iter().cloned().collect();
    Ok(json_reply(&Value::Array(shown), hit.outcome, &headers))
}

/// `DELETE /projects/:id/packages/:package_id`: GitLab decides; on success the package
/// leaves every local list, and the npm packument or Go list that named it is revalidated.
async fn delete_package(core: &Arc<Core>, id: i64, req: &PkgRequest<'_>) -> Result<Reply, Error> {
    // What it was, to invalidate its format's metadata afterwards.
    let known = match index::known_package(core, id)? {
        Some(item) => Some(item),
        None => lookup_upstream(core, req.raw_path, req.credential).await,
    };
    let answer = forward(core, Method::DELETE, req, "packages_delete").await?;
    if answer.status.is_success() {
        let files = format!("/packages/{id}/package_files/");
        let applied = index::forget_package(core, id)
            .and_then(|()| {
                core.forget_blobs("pkgfile:", |k| k.contains(&files))
                    .map(drop)
            })
            .and_then(|()| match &known {
                Some(item) => forget_format_metadata(core, item, None),
                None => Ok(()),
            })
            .and_then(|()| core.records_written());
        if let Err(e) = applied {
            tracing::warn!(error = %e, package_id = id, "upstream deleted the package; updating the local index failed");
        }
    }
    Ok(forwarded(answer))
}

/// `GET .../package_files/:package_file_id/download`: whoever may read the package's file
/// list may read its files. The file is cached like every blob, verified against the
/// listing's `file_sha256` (else `file_sha1`), for every package type.
async fn download(
    core: &Arc<Core>,
    target: &Namespace,
    package_id: i64,
    file_id: i64,
    req: &PkgRequest<'_>,
) -> Result<Reply, Error> {
    let hit = index::files(core, target, package_id, req.credential).await?;
    let Some(file) = hit.value.iter().find(|f| id_of(f) == file_id) else {
        return Err(Error::Gitlab {
            status: StatusCode::NOT_FOUND,
            message: "404 Package File Not Found".into(),
            error: Some("Package file not found".into()),
        });
    };
    let mut expect = Expect::default();
    if let Some(d) = Digest::parse(str_field(file, "file_sha256")) {
        expect.sha256 = Some(d.0);
    } else {
        expect = Expect::npm(Some(str_field(file, "file_sha1")), None);
    }
    if expect.sha256.is_none() && expect.sha1.is_none() {
        return Err(Error::Upstream(crate::error::UpstreamError::Body {
            url: crate::urls::redact(&core.gitlab_url(req.raw_path)),
            reason: "the package file listing gives no sha256 or sha1 to verify it against".into(),
        }));
    }
    expect.size = file.get("size").and_then(Value::as_u64);
    let path = format!(
        "{}/packages/{package_id}/package_files/{file_id}/download",
        target.api_path()
    );
    let blob = core
        .blob(BlobSpec {
            key: format!("pkgfile:{path}"),
            url: core.gitlab_url(&path),
            credential: req.credential.clone(),
            expect,
            content_type: "application/octet-stream",
            kind: "package_file",
            origin: Origin::Gitlab,
            validate: None,
            forward_name: None,
            expect_later: None,
        })
        .await?;
    let name = str_field(file, "file_name");
    let base = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .replace(['"', '\\'], "_");
    Ok(Reply::blob(blob)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(
            http::header::CONTENT_DISPOSITION,
            &format!("attachment; filename=\"{base}\""),
        )
        .immutable(req.credential.is_anonymous()))
}

/// `DELETE .../package_files/:package_file_id`.
async fn delete_file(
    core: &Arc<Core>,
    package_id: i64,
    file_id: i64,
    req: &PkgRequest<'_>,
) -> Result<Reply, Error> {
    let known = match index::known_package(core, package_id)? {
        Some(item) => Some(item),
        None => {
            let package_path = req
                .raw_path
                .rsplit_once("/package_files/")
                .map_or(req.raw_path, |(p, _)| p);
            lookup_upstream(core, package_path, req.credential).await
        }
    };
    let answer = forward(core, Method::DELETE, req, "packages_file_delete").await?;
    if answer.status.is_success() {
        let file = format!("/packages/{package_id}/package_files/{file_id}/download");
        let applied = core
            .forget_blobs("pkgfile:", |k| k.ends_with(&file))
            .and_then(|_| index::forget_file(core, package_id, file_id))
            .and_then(|name| match &known {
                Some(item) => forget_format_metadata(core, item, Some(name.as_deref())),
                None => Ok(()),
            })
            .and_then(|()| core.records_written());
        if let Err(e) = applied {
            tracing::warn!(error = %e, package_id, file_id, "upstream deleted the file; updating the local index failed");
        }
    }
    Ok(forwarded(answer))
}

/// Best effort: what the package is, asked upstream with the caller's credential.
async fn lookup_upstream(core: &Arc<Core>, path: &str, credential: &Credential) -> Option<Value> {
    core.uncached_json(path, credential, "packages_show", 16 << 20)
        .await
        .ok()
}

/// The format-specific metadata that listed a deleted package (or one of its files):
/// npm packuments at every prefix (and the tarball the cache would otherwise still serve),
/// Go `@v/list`s. `file`: `None` for the whole package, `Some(name)` for one file (`Some(None)`
/// when its name is unknown: every cached tarball of that name is forgotten).
fn forget_format_metadata(
    core: &Core,
    item: &Value,
    file: Option<Option<&str>>,
) -> Result<(), Error> {
    let name = str_field(item, "name");
    if name.is_empty() {
        return Ok(());
    }
    match str_field(item, "package_type") {
        "npm" => {
            core.npm_name_written(name)?;
            let version = str_field(item, "version");
            let file_name = match file {
                None => Some(format!("{name}-{version}.tgz")),
                Some(f) => f.map(str::to_string),
            };
            core.npm_files_gone(name, file_name.as_deref())?;
        }
        "golang" => {
            core.go_module_written(name)?;
        }
        _ => {}
    }
    Ok(())
}

async fn forward(
    core: &Arc<Core>,
    method: Method,
    req: &PkgRequest<'_>,
    kind: &'static str,
) -> Result<Forwarded, Error> {
    let path = match req.query {
        Some(q) => format!("{}?{q}", req.raw_path),
        None => req.raw_path.to_string(),
    };
    core.forward(method, &path, req.credential, req.headers, None, kind)
        .await
}

/// GitLab's answer to a write, as it sent it.
fn forwarded(answer: Forwarded) -> Reply {
    Reply::passthrough(answer.status, answer.headers, answer.body)
}

/// `_links.delete_api_path` names packrat, like every URL packrat hands out.
fn public_links(core: &Core, mut item: Value) -> Value {
    if let Some(Value::String(url)) = item.pointer_mut("/_links/delete_api_path") {
        if let Some(i) = url.find("/api/v4/") {
            *url = format!("{}{}", core.public_url(), &url[i..]);
        }
    }
    item
}

fn json_reply(doc: &Value, outcome: CacheOutcome, headers: &[(&'static str, String)]) -> Reply {
    let body = Bytes::from(serde_json::to_vec(doc).unwrap_or_else(|_| b"[]".to_vec()));
    let etag = format!("\"{}\"", Digest::of(&body).hex());
    let mut reply = Reply::json(StatusCode::OK, body)
        .header(
            http::header::CACHE_CONTROL,
            "max-age=0, private, must-revalidate",
        )
        .etag(&etag);
    reply.outcome = outcome;
    for (name, value) in headers {
        if let Ok(n) = http::header::HeaderName::from_bytes(name.as_bytes()) {
            reply = reply.header(n, value);
        }
    }
    if outcome == CacheOutcome::StaleIfError {
        reply = reply.header(http::header::WARNING, "110 - \"Response is Stale\"");
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(method: Method, target: &Namespace, rest: &str) -> Option<Result<PkgRoute, Error>> {
        PkgRoute::parse(&method, target, rest)
    }

    #[test]
    fn routes() {
        let p = Namespace::Project("42".into());
        let g = Namespace::Group("acme".into());
        assert_eq!(parse(Method::GET, &p, "").unwrap().unwrap(), PkgRoute::List);
        assert_eq!(parse(Method::GET, &g, "").unwrap().unwrap(), PkgRoute::List);
        assert!(parse(Method::GET, &g, "/7").is_none());
        assert_eq!(
            parse(Method::GET, &p, "/7").unwrap().unwrap(),
            PkgRoute::Show(7)
        );
        assert_eq!(
            parse(Method::DELETE, &p, "/7").unwrap().unwrap(),
            PkgRoute::DeletePackage(7)
        );
        assert_eq!(
            parse(Method::GET, &p, "/7/package_files").unwrap().unwrap(),
            PkgRoute::Files(7)
        );
        assert_eq!(
            parse(Method::GET, &p, "/7/pipelines").unwrap().unwrap(),
            PkgRoute::Pipelines(7)
        );
        assert_eq!(
            parse(Method::DELETE, &p, "/7/package_files/9")
                .unwrap()
                .unwrap(),
            PkgRoute::DeleteFile(7, 9)
        );
        assert!(parse(Method::GET, &p, "/go/example.com/x/@v/list").is_none());
        assert!(parse(Method::GET, &p, "x").is_none());
        assert!(parse(Method::GET, &p, "/abc/package_files").is_none());
        // Grape's message, kept until access is decided.
        assert_eq!(
            parse(Method::GET, &p, "/abc").unwrap().unwrap(),
            PkgRoute::BadId("package_id is invalid".into())
        );
        assert_eq!(
            parse(Method::DELETE, &p, "/7/package_files/x")
                .unwrap()
                .unwrap(),
            PkgRoute::BadId("package_file_id is invalid".into())
        );
        assert!(matches!(
            parse(Method::POST, &p, "").unwrap(),
            Err(Error::Request(RequestError::MethodNotAllowed))
        ));
    }

    #[test]
    fn versions_are_the_other_displayable_ones() {
        let all = vec![
            json!({"id": 1, "name": "a", "version": "1.0", "package_type": "npm", "status": "default", "created_at": "t1", "tags": []}),
            json!({"id": 2, "name": "a", "version": "2.0", "package_type": "npm", "status": "error", "created_at": "t2", "tags": [], "pipeline": {"id": 5}}),
            json!({"id": 3, "name": "a", "version": "0.9", "package_type": "npm", "status": "default", "created_at": "t3", "tags": []}),
            json!({"id": 4, "name": "a", "version": "1.5", "package_type": "maven", "status": "default", "created_at": "t4", "tags": []}),
            json!({"id": 5, "name": "a", "version": null, "package_type": "npm", "status": "default", "created_at": "t5", "tags": []}),
        ];
        let v = versions_of(&all[0], &all);
        assert_eq!(
            v,
            vec![
                json!({"id": 3, "version": "0.9", "created_at": "t3", "tags": []}),
                json!({"id": 2, "version": "2.0", "created_at": "t2", "tags": [], "pipeline": {"id": 5}}),
            ]
        );
    }
}
