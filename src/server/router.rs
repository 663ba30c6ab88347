//! The request pipeline, top to bottom:
//! 1. offline mirror: writes → 503 before routing;
//! 2. route parse into a typed [`Route`]: ops endpoints (`/-/health`, `/-/ready`,
//!    `/-/metrics`; `/-/pins`, `/-/status` and the `/-/ui` page for operators) first, then
//!    the adapters' routes (bad names → GitLab's 400 before any I/O);
//! 3. offline mirror: `offline.tokens` for the route's namespace;
//! 4. credential extraction from headers and `?private_token=`/`?job_token=` (never logged);
//! 5. npm request bodies, bounded while they arrive (publish: `server.max_body`, spooled past
//!    1 MiB; others small; 413);
//! 6. the adapter, which answers a [`Reply`];
//! 7. render: conditional request (`If-None-Match` → 304), HEAD, `Content-Length`,
//!    `X-Packrat-Cache`;
//! 8. metrics, the status page's counters (per ecosystem, with the package or module name)
//!    and one log line (method, path without query, status, outcome, time; debug for hits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::TryStreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Instrument;

use super::body::{self, Body};
use super::ui::{self, Ui, UiRoute};
use super::{ops, respond};
use crate::auth::credential::strip_query_credentials;
use crate::auth::offline;
use crate::auth::Credential;
use crate::cache::request_body;
use crate::cache::{CacheOutcome, Core};
use crate::error::{Error, RequestError};
use crate::gitlab::Namespace;
use crate::goproxy::{self, GoEntry, GoRoute};
use crate::npm::{self, NpmRoute};
use crate::packages_api::{self, PkgRoute};
use crate::reply::{Reply, ReplyBody};
use crate::status::{Ecosystem, Served};

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// A parsed route.
#[derive(Debug)]
pub enum Route {
    Health,
    Ready,
    Metrics,
    Pins,
    Status,
    Ui(UiRoute),
    Npm(Namespace, NpmRoute),
    Go(Namespace, GoRoute),
    SumDb { name: String, rest: String },
    Packages(Namespace, PkgRoute),
}

/// offline.tokens for `owner`; a project is covered by a scope naming it by id or by path
/// (the other name as the cached Packages API listings tell it).
fn offline_allows(core: &Core, credential: &Credential, owner: &Namespace) -> bool {
    let config = &core.config().offline;
    if offline::allows(config, credential, owner) {
        return true;
    }
    let Namespace::Project(p) = owner else {
        return false;
    };
    match core.project_alias(p) {
        Ok(Some(alias)) => offline::allows(config, credential, &Namespace::Project(alias)),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the project names index");
            false
        }
    }
}

impl Route {
    /// Whose content the route reads (for offline.tokens scopes); `None` for ops endpoints.
    fn owner(&self) -> Option<Namespace> {
        match self {
            Route::Health
            | Route::Ready
            | Route::Metrics
            | Route::Pins
            | Route::Status
            | Route::Ui(_) => None,
            Route::Npm(ns, _) | Route::Go(ns, _) | Route::Packages(ns, _) => Some(ns.clone()),
            Route::SumDb { .. } => Some(Namespace::Instance),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Route::Health
            | Route::Ready
            | Route::Metrics
            | Route::Pins
            | Route::Status
            | Route::Ui(_) => "ops",
            Route::Npm(_, NpmRoute::Metadata(_)) => "npm_metadata",
            Route::Npm(_, NpmRoute::Tarball(..)) => "npm_tarball",
            Route::Npm(_, NpmRoute::DistTags(_)) => "npm_dist_tags",
            Route::Npm(_, NpmRoute::Publish(_)) => "npm_publish",
            Route::Npm(_, NpmRoute::DistTagPut(..) | NpmRoute::DistTagDelete(..)) => {
                "npm_dist_tag_write"
            }
            Route::Npm(_, NpmRoute::Audit(_)) => "npm_audit",
            Route::Npm(_, NpmRoute::Unrouted(..)) => "npm_unrouted",
            Route::Go(_, GoRoute::List(_)) => "go_list",
            Route::Go(_, GoRoute::Latest(_)) => "go_latest",
            Route::Go(_, GoRoute::File(..)) => "go_file",
            Route::SumDb { .. } => "go_sumdb",
            Route::Packages(_, r) => r.label(),
        }
    }

    /// The ecosystem and the package or module a route is about, for the status page.
    fn subject(&self) -> Option<(Ecosystem, Option<Box<str>>)> {
        let name: Option<&str> = match self {
            Route::Npm(_, r) => match r {
                NpmRoute::Metadata(n)
                | NpmRoute::Tarball(n, _)
                | NpmRoute::DistTags(n)
                | NpmRoute::Publish(n)
                | NpmRoute::DistTagPut(n, _)
                | NpmRoute::DistTagDelete(n, _) => Some(n.as_str()),
                NpmRoute::Audit(_) | NpmRoute::Unrouted(..) => None,
            },
            Route::Go(_, GoRoute::List(m) | GoRoute::Latest(m) | GoRoute::File(m, ..)) => {
                Some(m.as_str())
            }
            Route::SumDb { .. } => None,
            Route::Packages(ns, r) => {
                return Some((Ecosystem::PackagesApi, Some(packages_subject(ns, r).into())))
            }
            _ => return None,
        };
        let eco = match self {
            Route::Npm(..) => Ecosystem::Npm,
            _ => Ecosystem::Go,
        };
        Some((eco, name.map(Box::from)))
    }
}

/// A Packages API request as the status page names it: the project or group, and the
/// package id when there is one.
fn packages_subject(ns: &Namespace, r: &PkgRoute) -> String {
    let owner = match ns {
        Namespace::Project(p) => format!("project {p}"),
        Namespace::Group(g) => format!("group {g}"),
        Namespace::Instance => "instance".to_string(),
    };
    match r {
        PkgRoute::Show(id)
        | PkgRoute::Files(id)
        | PkgRoute::Pipelines(id)
        | PkgRoute::DeletePackage(id)
        | PkgRoute::DeleteFile(id, _)
        | PkgRoute::Download(id, _) => format!("{owner} package {id}"),
        PkgRoute::List | PkgRoute::BadId(_) => owner,
    }
}

/// Where an answer's bytes came from, as the status page counts it.
fn served(outcome: CacheOutcome) -> Served {
    match outcome {
        CacheOutcome::Hit | CacheOutcome::Revalidated | CacheOutcome::StaleIfError => Served::Cache,
        CacheOutcome::Miss | CacheOutcome::Joined => Served::Upstream,
        CacheOutcome::Refused
        | CacheOutcome::NotFound
        | CacheOutcome::Negative
        | CacheOutcome::Bypass => Served::Other,
    }
}

/// Parse method + raw path into a route.
pub fn parse(method: &Method, path: &str) -> Result<Route, Error> {
    match path {
        "/-/health" => return Ok(Route::Health),
        "/-/ready" => return Ok(Route::Ready),
        "/-/metrics" => return Ok(Route::Metrics),
        "/-/pins" => return Ok(Route::Pins),
        "/-/status" => return Ok(Route::Status),
        _ => {}
    }
    if let Some(r) = UiRoute::parse(method, path) {
        return r.map(Route::Ui);
    }
    if let Some(rest) = path.strip_prefix("/go/") {
        if !(*method == Method::GET || *method == Method::HEAD) {
            return Err(RequestError::MethodNotAllowed.into());
        }
        return Ok(match goproxy::parse_go_entry(rest)? {
            GoEntry::Module(r) => Route::Go(Namespace::Instance, r),
            GoEntry::SumDb { name, rest } => Route::SumDb { name, rest },
        });
    }
    let Some(api) = path.strip_prefix("/api/v4/") else {
        return Err(RequestError::NoRoute.into());
    };
    if let Some(rest) = api.strip_prefix("packages/npm/") {
        return Ok(Route::Npm(
            Namespace::Instance,
            NpmRoute::parse(method, rest)?,
        ));
    }
    if let Some(after) = api.strip_prefix("projects/") {
        let (id, rest) = after.split_once('/').ok_or(RequestError::NoRoute)?;
        if let Some(rest) = rest.strip_prefix("packages/go/") {
            if !(*method == Method::GET || *method == Method::HEAD) {
                return Err(RequestError::MethodNotAllowed.into());
            }
            let id = Namespace::parse_id(id)
                .ok_or_else(|| Error::gitlab(StatusCode::NOT_FOUND, "404 Project Not Found"))?;
            return Ok(Route::Go(Namespace::Project(id), GoRoute::parse(rest)?));
        }
        if let Some(rest) = rest.strip_prefix("packages/npm/") {
            let id = Namespace::parse_id(id).ok_or_else(|| Error::npm_not_found("Project"))?;
            return Ok(Route::Npm(
                Namespace::Project(id),
                NpmRoute::parse(method, rest)?,
            ));
        }
        if let Some(below) = rest.strip_prefix("packages") {
            let id = Namespace::parse_id(id).ok_or_else(|| Error::npm_not_found("Project"))?;
            let target = Namespace::Project(id);
            if let Some(r) = PkgRoute::parse(method, &target, below) {
                return Ok(Route::Packages(target, r?));
            }
        }
    }
    if let Some(after) = api.strip_prefix("groups/") {
        let (id, rest) = after.split_once('/').ok_or(RequestError::NoRoute)?;
        if let Some(rest) = rest.strip_prefix("-/packages/npm/") {
            let id = Namespace::parse_id(id).ok_or_else(|| Error::npm_not_found("Group"))?;
            return Ok(Route::Npm(
                Namespace::Group(id),
                NpmRoute::parse(method, rest)?,
            ));
        }
        if let Some(below) = rest.strip_prefix("packages") {
            let id = Namespace::parse_id(id)
                .ok_or_else(|| Error::gitlab(StatusCode::NOT_FOUND, "404 Group Not Found"))?;
            let target = Namespace::Group(id);
            if let Some(r) = PkgRoute::parse(method, &target, below) {
                return Ok(Route::Packages(target, r?));
            }
        }
    }
    Err(RequestError::NoRoute.into())
}

pub async fn handle(core: Arc<Core>, ui: Arc<Ui>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", id, %method, path = %path);
    let mut subject = None;
    let (label, outcome, mut resp) = async {
        if core.is_offline() && is_write(&method, &path) {
            let e = Error::gitlab(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: this packrat is an offline mirror (cache.offline = true); writes cannot reach GitLab from here",
            );
            return ("offline_write", CacheOutcome::Bypass, respond::error_response(&e));
        }
        match parse(&method, &path) {
            Err(e) => (
                "unrouted",
                CacheOutcome::Bypass,
                respond::error_response(&e),
            ),
            Ok(route) => {
                let label = route.label();
                subject = route.subject();
                let (outcome, resp) = dispatch(&core, &ui, route, req).await;
                (label, outcome, resp)
            }
        }
    }
    .instrument(span.clone())
    .await;
    if let Ok(v) = HeaderValue::from_str(&format!("{id:x}")) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    core.metrics().request(label, status, outcome.as_str());
    if let Some((eco, name)) = subject {
        core.metrics().live().request(
            eco,
            name.as_deref(),
            served(outcome),
            status,
            outcome.as_str(),
        );
    }
    // Hits are the high-volume path (metrics count them); everything else is worth a line.
    let ms = started.elapsed().as_millis() as u64;
    if outcome == CacheOutcome::Hit && status < 400 {
        tracing::debug!(parent: &span, status, outcome = outcome.as_str(), ms, "served");
    } else {
        tracing::info!(parent: &span, status, outcome = outcome.as_str(), ms, "served");
    }
    resp
}

async fn dispatch(
    core: &Arc<Core>,
    ui: &Ui,
    route: Route,
    req: Request<Incoming>,
) -> (CacheOutcome, Response<Body>) {
    if core.is_offline() {
        if let Some(owner) = route.owner() {
            let credential = Credential::from_request(req.headers(), req.uri().query());
            if !offline_allows(core, &credential, &owner) {
                let e = Error::gitlab(StatusCode::UNAUTHORIZED, "401 Unauthorized");
                return (CacheOutcome::Refused, respond::error_response(&e));
            }
        }
    }
    match route {
        Route::Health => (CacheOutcome::Bypass, ops::health()),
        Route::Ready => (CacheOutcome::Bypass, ops::ready(core)),
        Route::Metrics => {
            let accept = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            (CacheOutcome::Bypass, ops::metrics(core, accept))
        }
        Route::Pins => match ops::pins(core, &Credential::from_headers(req.headers())) {
            Ok(r) => (CacheOutcome::Bypass, r),
            Err(e) => (CacheOutcome::Bypass, respond::error_response(&e)),
        },
        Route::Status => match ops::status(core, &Credential::from_headers(req.headers())).await {
            Ok(r) => (CacheOutcome::Bypass, r),
            Err(e) => (CacheOutcome::Bypass, respond::error_response(&e)),
        },
        Route::Ui(r) => match ui::handle(core, ui, r, req).await {
            Ok(r) => (CacheOutcome::Bypass, r),
            Err(e) => (CacheOutcome::Bypass, respond::error_response(&e)),
        },
        Route::Go(target, r) => {
            let credential = Credential::from_request(req.headers(), req.uri().query());
            let result = goproxy::handle(core, &target, r, &credential).await;
            reply_or_error(core, req.method(), req.headers(), result)
        }
        Route::SumDb { name, rest } => {
            let result = goproxy::sumdb::handle(core, &name, &rest).await;
            reply_or_error(core, req.method(), req.headers(), result)
        }
        Route::Packages(target, r) => {
            let credential = Credential::from_request(req.headers(), req.uri().query());
            let raw_path = req.uri().path().to_string();
            // Forwarded upstream as it came, minus any token (that goes as a header).
            let query = req.uri().query().and_then(strip_query_credentials);
            let result = packages_api::handle(
                core,
                &target,
                r,
                packages_api::PkgRequest {
                    method: req.method(),
                    credential: &credential,
                    headers: req.headers(),
                    raw_path: &raw_path,
                    query: query.as_deref(),
                },
            )
            .await;
            reply_or_error(core, req.method(), req.headers(), result)
        }
        Route::Npm(scope, r) => {
            let (parts, incoming) = req.into_parts();
            let credential = Credential::from_request(&parts.headers, parts.uri.query());
            // GitLab authenticates the audit POSTs before it reads them: an anonymous body is
            // never read at all.
            if matches!(r, NpmRoute::Audit(_)) && credential.is_anonymous() {
                let e = Error::gitlab(StatusCode::UNAUTHORIZED, "401 Unauthorized");
                return (CacheOutcome::Refused, respond::error_response(&e));
            }
            let body = if parts.method == Method::POST || parts.method == Method::PUT {
                // Publish bodies carry tarballs: up to server.max_body, spooled past 1 MiB.
                // Every other body is small JSON, refused as it arrives past a small limit.
                let (limit, spool_above) = match r {
                    NpmRoute::Publish(_) | NpmRoute::Unrouted(..) => {
                        (core.config().server.max_body, request_body::SPOOL_ABOVE)
                    }
                    NpmRoute::Audit(_) => (request_body::SMALL_BODY_AUDIT, u64::MAX),
                    _ => (request_body::SMALL_BODY, u64::MAX),
                };
                let limit = limit.min(core.config().server.max_body);
                match core
                    .receive_body(&parts.headers, incoming, limit, spool_above)
                    .await
                {
                    Ok(b) => Some(b),
                    Err(e) => return (CacheOutcome::Bypass, respond::error_response(&e)),
                }
            } else {
                None
            };
            let result = npm::handle(
                core,
                &scope,
                r,
                npm::NpmRequest {
                    credential: &credential,
                    headers: &parts.headers,
                    body,
                },
            )
            .await;
            reply_or_error(core, &parts.method, &parts.headers, result)
        }
    }
}

fn reply_or_error(
    core: &Arc<Core>,
    method: &Method,
    headers: &http::HeaderMap,
    result: Result<Reply, Error>,
) -> (CacheOutcome, Response<Body>) {
    match result {
        Ok(reply) => (reply.outcome, render(core, method, headers, reply)),
        Err(e) => {
            let outcome = error_outcome(&e);
            let mut resp = respond::error_response(&e);
            resp.headers_mut().insert(
                "x-packrat-cache",
                HeaderValue::from_static(outcome.as_str()),
            );
            (outcome, resp)
        }
    }
}

/// How an error answer was reached, for the metric label and `X-Packrat-Cache`.
fn error_outcome(e: &Error) -> CacheOutcome {
    let status = e.status();
    if status.is_server_error() {
        CacheOutcome::Bypass
    } else if status == StatusCode::NOT_FOUND && matches!(e, Error::Remembered(_)) {
        CacheOutcome::Negative
    } else if status == StatusCode::NOT_FOUND {
        CacheOutcome::NotFound
    } else {
        CacheOutcome::Refused
    }
}

/// A request that would change something upstream (the npm audit POSTs only read).
fn is_write(method: &Method, path: &str) -> bool {
    !(*method == Method::GET || *method == Method::HEAD)
        && path.starts_with("/api/v4/")
        && !path.contains("/-/npm/v1/security/")
}

/// Turn an adapter's reply into a response: validators, 304, HEAD, lengths, byte counting.
fn render(
    core: &Arc<Core>,
    method: &Method,
    req_headers: &http::HeaderMap,
    reply: Reply,
) -> Response<Body> {
    let mut builder = Response::builder().status(reply.status);
    if let Some(h) = builder.headers_mut() {
        *h = reply.headers;
        h.insert(
            "x-packrat-cache",
            HeaderValue::from_static(reply.outcome.as_str()),
        );
        if let Some(etag) = &reply.etag {
            if let Ok(v) = HeaderValue::from_str(etag) {
                h.insert(http::header::ETAG, v);
            }
        }
    }
    let not_modified = reply.status == StatusCode::OK
        && reply
            .etag
            .as_deref()
            .is_some_and(|etag| if_none_match(req_headers, etag));
    if not_modified {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(body::empty())
            .unwrap_or_else(|_| respond::fallback());
    }
    let head = *method == Method::HEAD;
    let metrics = core.metrics().clone();
    let from_cache = served(reply.outcome) == Served::Cache;
    let (len, body) = match reply.body {
        ReplyBody::Empty => (Some(0), body::empty()),
        ReplyBody::Bytes(b) => {
            let n = b.len() as u64;
            if !head {
                metrics.served(n, from_cache);
            }
            (Some(n), body::full(b))
        }
        ReplyBody::File(f, n) => {
            if !head {
                metrics.served(n, from_cache);
            }
            (Some(n), body::file(f, n))
        }
        ReplyBody::Stream(s, n) => {
            let counted = s.inspect_ok(move |chunk| metrics.served(chunk.len() as u64, from_cache));
            (n, body::stream(SyncStream::new(counted)))
        }
    };
    // No Content-Length on 204 (RFC 9110 §8.6).
    if let Some(n) = len.filter(|_| reply.status != StatusCode::NO_CONTENT) {
        builder = builder.header(http::header::CONTENT_LENGTH, n);
    }
    let body = if head { body::empty() } else { body };
    builder.body(body).unwrap_or_else(|_| respond::fallback())
}

fn if_none_match(headers: &http::HeaderMap, etag: &str) -> bool {
    headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Adapts a `Send` stream into a `Sync` one (hyper's boxed body needs `Sync`) by holding it
/// behind a mutex that is only ever locked by the single task polling it.
struct SyncStream<S> {
    inner: std::sync::Mutex<std::pin::Pin<Box<S>>>,
}

impl<S> SyncStream<S> {
    fn new(s: S) -> Self {
        SyncStream {
            inner: std::sync::Mutex::new(Box::pin(s)),
        }
    }
}

impl<S: futures_util::Stream> futures_util::Stream for SyncStream<S> {
    type Item = S::Item;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let this = self.get_mut();
        let inner = match this.inner.get_mut() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        };
        inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        let g = Method::GET;
        assert!(matches!(parse(&g, "/-/health"), Ok(Route::Health)));
        assert!(matches!(
            parse(&g, "/api/v4/projects/42/packages/npm/@acme%2fui"),
            Ok(Route::Npm(Namespace::Project(_), NpmRoute::Metadata(_)))
        ));
        assert!(matches!(
            parse(&g, "/api/v4/groups/acme%2Fsub/-/packages/npm/@acme/ui"),
            Ok(Route::Npm(Namespace::Group(_), NpmRoute::Metadata(_)))
        ));
        assert!(matches!(
            parse(&g, "/api/v4/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"),
            Ok(Route::Npm(Namespace::Instance, NpmRoute::Tarball(..)))
        ));
        assert!(matches!(
            parse(&g, "/api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/list"),
            Ok(Route::Go(Namespace::Project(ref id), GoRoute::List(_))) if id == "42"
        ));
        assert!(matches!(
            parse(&g, "/api/v4/projects/acme%2FUtils/packages/go/gitlab.example.com/acme/!utils/@v/v1.0.0.zip"),
            Ok(Route::Go(Namespace::Project(ref id), GoRoute::File(..))) if id == "acme/Utils"
        ));
        assert_eq!(
            parse(
                &g,
                "/api/v4/projects/..%2Fx/packages/go/gitlab.example.com/x/@v/list"
            )
            .unwrap_err()
            .status(),
            404
        );
        assert!(parse(&g, "/nope").is_err());
        assert!(parse(&g, "/api/v4/projects/..%2F..%2Fetc/packages/npm/x").is_err());
    }

    #[test]
    fn conditional_matching() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&h, "\"a\""));
        assert!(if_none_match(&h, "\"b\""));
        assert!(!if_none_match(&h, "\"c\""));
    }
}
