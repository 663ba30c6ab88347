//! A fake GitLab upstream that behaves like GitLab as `/work/shared/API.md` describes it,
//! with fault switches and counters for tests.
//!
//! Layout:
//! - `mod.rs` (this file): the server's lifecycle (`go_down` / `come_back`; the accept loop and
//!   [`Reply`] are `support/serve.rs`'s), the request type every route module uses,
//!   authentication (API.md §4), GitLab error bodies (§6), fault switches, counters and the
//!   fake object store.
//! - [`world`]: groups, projects, tokens, packages; tarball generation.
//! - [`npm`]: the npm routes (API.md §1).
//! - [`npm_writes`]: npm publish, deprecate and dist-tag writes (API.md §1.7, §1.8).
//! - [`packages`]: the Packages API (API.md §3): lists, package, files, pipelines, deletes.
//! - [`go`]: the Go module proxy routes (API.md §2), module repositories, zips, `h1:` hashes.
//!
//! Adding a protocol (`go.rs`, `packages.rs`): write `pub fn route(fake: &Shared, req:
//! &FakeRequest) -> Option<Reply>` that returns `None` for requests it does not claim, and add
//! it to [`ROUTES`]. Use [`Shared::authenticate`] with the right [`Family`], the error helpers on
//! [`Reply`], and [`Shared::with_world`] for reads and writes of the data model.
//!
//! Everything is bound to 127.0.0.1 and runs on the tokio runtime that called
//! [`FakeGitlab::start`].

pub mod go;
pub mod npm;
pub mod npm_writes;
pub mod packages;
pub mod world;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

// A sibling module: `support::serve` in the tests, `serve` in `examples/fake_gitlab.rs`.
pub use super::serve::Reply;
use super::serve::{self, lock, Body, Server, CREDENTIAL_HEADERS};
pub use world::*;

/// Where GitLab's npm request forwarding points (never resolvable).
pub const PUBLIC_REGISTRY: &str = "https://public-registry.invalid";

/// Route modules, tried in order; the first `Some` wins. Unclaimed requests get GitLab's
/// catch-all `404 {"error":"404 Not Found"}`.
const ROUTES: &[fn(&Shared, &FakeRequest) -> Option<Reply>] =
    &[npm_writes::route, packages::route, npm::route, go::route];

// ---- requests and replies -------------------------------------------------------------------

/// A request as the routes see it: the body is already collected.
#[derive(Clone, Debug)]
pub struct FakeRequest {
    pub method: Method,
    /// Raw (still percent-encoded) path.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl FakeRequest {
    /// A decoded query parameter.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == key).then(|| decode(v))
        })
    }

    /// GET, or HEAD (which GitLab answers like GET, without a body).
    pub fn is_read(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }
}

/// Percent-decodes a path segment or query component.
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// GitLab's error bodies, on the shared [`Reply`] (a complete response, before faults are
/// applied).
impl Reply {
    /// 401 `{"message":"401 Unauthorized"}`
    pub fn unauthorized() -> Reply {
        Reply::json(401, &json!({"message": "401 Unauthorized"}))
    }

    /// 403 `{"message":"403 Forbidden"}`
    pub fn forbidden() -> Reply {
        Reply::json(403, &json!({"message": "403 Forbidden"}))
    }

    /// 401 for an expired token, with GitLab's `WWW-Authenticate`.
    pub fn expired_token() -> Reply {
        let description = "Token is expired. You can either do re-authorization or token refresh.";
        Reply::json(
            401,
            &json!({"error": "invalid_token", "error_description": description}),
        )
        .header(
            "www-authenticate",
            &format!(
                "Bearer realm=\"The API\", error=\"invalid_token\", error_description=\"{description}\""
            ),
        )
    }

    /// The npm endpoints' structured 404: `thing` = `Project`, `Packages`, `Package`, `Group`
    /// → `{"message":"404 <thing> Not Found","error":"<Thing> not found"}`.
    pub fn npm_not_found(thing: &str) -> Reply {
        Reply::json(
            404,
            &json!({
                "message": format!("404 {thing} Not Found"),
                "error": format!("{thing} not found"),
            }),
        )
    }

    /// Generic helpers' 404: `{"message":"404 <thing> Not Found"}` (Go proxy, group lists).
    pub fn not_found(thing: &str) -> Reply {
        let message = if thing.is_empty() {
            "404 Not Found".to_string()
        } else {
            format!("404 {thing} Not Found")
        };
        Reply::json(404, &json!({ "message": message }))
    }

    /// Grape's unknown-route 404: `{"error":"404 Not Found"}`.
    pub fn route_not_found() -> Reply {
        Reply::json(404, &json!({"error": "404 Not Found"}))
    }

    /// A Grape validation error: 400 `{"error":"<text>"}`.
    pub fn bad_param(text: &str) -> Reply {
        Reply::json(400, &json!({ "error": text }))
    }

    /// What an injected failure answers: `{"message":"<code> <reason>"}`.
    fn injected(status: u16) -> Reply {
        let code = StatusCode::from_u16(status).expect("valid status");
        Reply::json(
            status,
            &json!({"message": format!("{} {}", status, code.canonical_reason().unwrap_or("Error"))}),
        )
    }
}

/// A strong ETag for a body.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(body))[..32])
}

/// Whether `If-None-Match` (a list, `*`, weak or strong) matches `etag`.
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    headers
        .get_all(hyper::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == bare)
}

// ---- authentication (API.md §4) -------------------------------------------------------------

/// Which credential carriers a request had (header names are matched case-insensitively).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// `PRIVATE-TOKEN` header
    PrivateToken,
    /// `JOB-TOKEN` header
    JobToken,
    /// `Deploy-Token` header
    DeployToken,
    /// `Authorization: Bearer`
    Bearer,
    /// `Authorization: Basic`
    Basic,
    /// `?private_token=`
    PrivateTokenQuery,
    /// `?job_token=`
    JobTokenQuery,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::PrivateToken => "private-token",
            CredentialKind::JobToken => "job-token",
            CredentialKind::DeployToken => "deploy-token",
            CredentialKind::Bearer => "bearer",
            CredentialKind::Basic => "basic",
            CredentialKind::PrivateTokenQuery => "private_token-query",
            CredentialKind::JobTokenQuery => "job_token-query",
        }
    }
}

/// Credentials found on a request, in the order GitLab consults them.
pub fn credentials(req: &FakeRequest) -> Vec<(CredentialKind, String)> {
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let mut found = Vec::new();
    if let Some(t) = header("deploy-token") {
        found.push((CredentialKind::DeployToken, t));
    }
    if let Some(auth) = header("authorization") {
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth.as_str(), ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            found.push((CredentialKind::Bearer, rest.trim().to_string()));
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let password = decoded.split_once(':').map_or("", |(_, p)| p);
            found.push((CredentialKind::Basic, password.to_string()));
        }
    }
    if let Some(t) = header("private-token") {
        found.push((CredentialKind::PrivateToken, t));
    }
    if let Some(t) = req.query_param("private_token") {
        found.push((CredentialKind::PrivateTokenQuery, t));
    }
    if let Some(t) = header("job-token") {
        found.push((CredentialKind::JobToken, t));
    }
    if let Some(t) = req.query_param("job_token") {
        found.push((CredentialKind::JobTokenQuery, t));
    }
    found
}

/// The route families of API.md §4: they accept different credential carriers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// npm: PAT, job token, deploy token (also as Bearer, and as Basic password).
    Npm,
    /// Go proxy: PAT (also as Basic password), job token; no deploy tokens.
    GoProxy,
    /// Project Packages API: PAT, job token; no deploy tokens, no Basic.
    PackagesApi,
}

impl Family {
    fn accepts(self, carrier: CredentialKind, token: &Token) -> bool {
        use CredentialKind as C;
        match (carrier, token) {
            (C::PrivateToken | C::PrivateTokenQuery, Token::Pat { .. }) => true,
            (C::JobToken | C::JobTokenQuery, Token::Job { .. }) => true,
            (C::DeployToken, Token::Deploy { .. }) => self == Family::Npm,
            (C::Bearer, Token::Pat { .. } | Token::Job { .. }) => true,
            (C::Bearer, Token::Deploy { .. }) => self == Family::Npm,
            (C::Basic, Token::Pat { .. }) => self == Family::GoProxy,
            (C::Basic, Token::Deploy { .. }) => self == Family::Npm,
            _ => false,
        }
    }

    /// Carriers a route of this family looks at at all; others are ignored (anonymous).
    fn reads(self, carrier: CredentialKind) -> bool {
        match carrier {
            CredentialKind::DeployToken => self == Family::Npm,
            CredentialKind::Basic => self != Family::PackagesApi,
            _ => true,
        }
    }
}

/// Resolves the caller of a request: `Err` is the 401 GitLab would answer (unknown token,
/// expired PAT, finished job).
pub fn authenticate(world: &World, req: &FakeRequest, family: Family) -> Result<Caller, Reply> {
    let Some((carrier, value)) = credentials(req)
        .into_iter()
        .find(|(carrier, _)| family.reads(*carrier))
    else {
        return Ok(Caller::Anonymous);
    };
    let token = match world.tokens.get(&value) {
        Some(token) if family.accepts(carrier, token) => token,
        // Basic with something that isn't a usable token is not a credential source here.
        _ if carrier == CredentialKind::Basic => return Ok(Caller::Anonymous),
        _ => return Err(Reply::unauthorized()),
    };
    match token {
        Token::Pat { expired: true, .. } => Err(Reply::expired_token()),
        Token::Pat { user, .. } => Ok(Caller::User(user.clone())),
        Token::Job {
            state: JobState::Finished,
            ..
        } => Err(Reply::unauthorized()),
        Token::Job { project_id, .. } => Ok(Caller::Job {
            project_id: *project_id,
        }),
        Token::Deploy { project_id, access } => Ok(Caller::Deploy {
            project_id: *project_id,
            access: *access,
        }),
    }
}

// ---- faults and counters --------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Rule<T> {
    /// Matches requests whose raw path contains this ("" = every request).
    path_contains: String,
    what: T,
    /// How many more matching requests this rule applies to (`None` = forever).
    remaining: Option<usize>,
}

#[derive(Debug, Default)]
struct Faults {
    delays: Vec<Rule<Duration>>,
    failures: Vec<Rule<u16>>,
    cuts: Vec<Rule<usize>>,
    pauses: Vec<Rule<Pause>>,
}

/// Where a paused body stands: held, let go, or to be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateState {
    Held,
    Released,
    Cut,
}

#[derive(Clone, Debug)]
struct Pause {
    after: usize,
    gate: tokio::sync::watch::Receiver<GateState>,
}

/// The test's handle on [`FakeGitlab::pause_body_after`]: every matching body waits after
/// its first bytes until [`BodyGate::release`] (the rest follows) or [`BodyGate::cut`] (the
/// connection drops). Dropping the handle releases.
pub struct BodyGate {
    tx: tokio::sync::watch::Sender<GateState>,
}

impl BodyGate {
    /// Lets every paused (and future) matching body continue to its end.
    pub fn release(&self) {
        self.tx.send_replace(GateState::Released);
    }

    /// Drops every paused (and future) matching body's connection at the pause point.
    pub fn cut(&self) {
        self.tx.send_replace(GateState::Cut);
    }
}

impl Drop for BodyGate {
    fn drop(&mut self) {
        self.tx.send_if_modified(|s| {
            let held = *s == GateState::Held;
            if held {
                *s = GateState::Released;
            }
            held
        });
    }
}

/// What happens to a response body on the way out.
enum BodyFault {
    /// Send this many bytes, then drop the connection.
    Cut(usize),
    /// Send `after` bytes, then wait for the gate.
    Pause(Pause),
}

/// Finds the first rule matching `path`, consuming one use of it.
fn take_rule<T: Clone>(rules: &mut [Rule<T>], path: &str) -> Option<T> {
    let rule = rules
        .iter_mut()
        .find(|r| path.contains(&r.path_contains) && r.remaining != Some(0))?;
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.what.clone())
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    /// Raw path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Which credential carriers were present (valid or not).
    pub credentials: Vec<CredentialKind>,
    pub headers: HeaderMap,
}

/// Runtime switches that change how GitLab answers.
#[derive(Debug, Default)]
pub struct Switches {
    /// Instance npm forwarding (`npm_package_requests_forwarding`): unknown names → 302 to
    /// [`PUBLIC_REGISTRY`], audits → 307.
    pub npm_forwarding: bool,
    /// Names whose metadata and tarballs are always forwarded (as if they had been deleted
    /// locally).
    pub forwarded_names: Vec<String>,
    /// Where forwarding redirects go instead of [`PUBLIC_REGISTRY`] (a URL with any path
    /// prefix); names then appear with the scope's `/` encoded (`@acme%2fx`).
    pub forward_base: Option<String>,
    /// Tarballs answer 302 to the fake object store.
    pub tarballs_in_object_storage: bool,
    /// Project-level metadata answers 302 to the fake object store (GitLab's metadata cache).
    pub metadata_in_object_storage: bool,
    /// (module path, version) → what that version's zip or go.mod is replaced with.
    pub go_faults: HashMap<(String, String), go::GoFault>,
    /// GitLab's `npm_allow_packages_in_multiple_projects` (API.md §1.3): group and instance
    /// metadata merge the versions of every project in the namespace the caller may read
    /// (403 authenticated / 401 anonymous when packages exist but none are readable).
    pub npm_multiple_projects: bool,
}

// ---- the server -----------------------------------------------------------------------------

/// A rendered document: (world generation it was rendered from, body, etag).
type Rendered = (u64, Bytes, String);

/// State shared by the server tasks and the test's handle.
pub struct Shared {
    base_url: String,
    object_store_url: String,
    world: Mutex<World>,
    switches: Mutex<Switches>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<RequestRecord>>,
    log_enabled: AtomicBool,
    requests_total: AtomicUsize,
    connections: Arc<AtomicUsize>,
    /// key → (bytes, content type); filled when a redirect to it is issued.
    objects: Mutex<HashMap<String, (Bytes, &'static str)>>,
    object_store_requests: AtomicUsize,
    object_store_auth_seen: Mutex<Vec<String>>,
    packuments: Mutex<HashMap<(u64, String), Rendered>>,
}

impl Shared {
    /// `http://127.0.0.1:PORT` of the GitLab listener (used in generated tarball URLs).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut lock(&self.world))
    }

    pub fn with_switches<R>(&self, f: impl FnOnce(&mut Switches) -> R) -> R {
        f(&mut lock(&self.switches))
    }

    /// Memoizes a rendered document per (project, name) until the world changes.
    pub fn cached_render(
        &self,
        world: &World,
        key: (u64, String),
        render: impl FnOnce() -> Bytes,
    ) -> (Bytes, String) {
        if let Some((generation, body, etag)) = lock(&self.packuments).get(&key) {
            if *generation == world.generation() {
                return (body.clone(), etag.clone());
            }
        }
        let body = render();
        let etag = etag_of(&body);
        lock(&self.packuments).insert(key, (world.generation(), body.clone(), etag.clone()));
        (body, etag)
    }

    /// Stores `body` in the fake object store and returns a 302 to its signed URL.
    pub fn object_storage_redirect(&self, body: Bytes, content_type: &'static str) -> Reply {
        let key = hex::encode(Sha256::digest(&body));
        let signature = hex::encode(Sha256::digest(format!("{key}:signature")));
        lock(&self.objects).insert(key.clone(), (body, content_type));
        Reply::redirect(
            302,
            &format!(
                "{}/bucket/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=fake%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}",
                self.object_store_url
            ),
        )
    }
}

/// A running fake GitLab. Dropping it stops both listeners and drops their connections.
pub struct FakeGitlab {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<Server>>,
    _object_store: Server,
}

impl FakeGitlab {
    /// Binds `127.0.0.1:0` (and a second port for the object store) and starts serving
    /// `world` on the current tokio runtime.
    pub async fn start(world: World) -> FakeGitlab {
        FakeGitlab::start_on(world, serve::any_loopback_port()).await
    }

    /// Like [`FakeGitlab::start`] on a chosen address (must be 127.0.0.1).
    pub async fn start_on(world: World, addr: SocketAddr) -> FakeGitlab {
        let listener =
            serve::bind(addr).unwrap_or_else(|e| panic!("fake gitlab: bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let (os_listener, os_addr) = serve::bind_any("fake object store");
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            object_store_url: format!("http://{os_addr}"),
            world: Mutex::new(world),
            switches: Mutex::new(Switches::default()),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            log_enabled: AtomicBool::new(true),
            requests_total: AtomicUsize::new(0),
            connections: Arc::new(AtomicUsize::new(0)),
            objects: Mutex::new(HashMap::new()),
            object_store_requests: AtomicUsize::new(0),
            object_store_auth_seen: Mutex::new(Vec::new()),
            packuments: Mutex::new(HashMap::new()),
        });
        FakeGitlab {
            addr,
            server: Mutex::new(Some(serve_gitlab(listener, &shared))),
            _object_store: serve_object_store(os_listener, &shared),
            shared,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:OTHERPORT` of the fake object store.
    pub fn object_store_url(&self) -> String {
        self.shared.object_store_url.clone()
    }

    /// The state shared with the server tasks (for route-level helpers).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Reads or changes the world while the fake runs (e.g. publish a new version).
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        self.shared.with_world(f)
    }

    // ---- modes ----

    /// Instance-wide npm forwarding: unknown names → 302 to [`PUBLIC_REGISTRY`], audits → 307.
    pub fn set_npm_forwarding(&self, on: bool) {
        self.shared.with_switches(|s| s.npm_forwarding = on);
    }

    /// GitLab's `npm_allow_packages_in_multiple_projects`: group and instance metadata merge
    /// the versions of every project in the namespace the caller may read (API.md §1.3).
    pub fn set_npm_multiple_projects(&self, on: bool) {
        self.shared.with_switches(|s| s.npm_multiple_projects = on);
    }

    /// Metadata for `name` (any prefix) answers `302 Location: https://public-registry.invalid/<name>`.
    pub fn forward_to_public(&self, name: &str) {
        self.shared
            .with_switches(|s| s.forwarded_names.push(name.to_string()));
    }

    /// Forwarding redirects go to `base` (any path prefix) with the scope's `/` encoded.
    pub fn forward_to(&self, base: &str) {
        self.shared
            .with_switches(|s| s.forward_base = Some(base.trim_end_matches('/').to_string()));
    }

    /// Tarballs answer 302 to a signed URL on the fake object store.
    pub fn set_object_storage(&self, on: bool) {
        self.shared
            .with_switches(|s| s.tarballs_in_object_storage = on);
    }

    /// Project-level metadata answers 302 to the object store (GitLab's npm metadata cache),
    /// served there as `application/octet-stream`.
    pub fn set_metadata_in_object_storage(&self, on: bool) {
        self.shared
            .with_switches(|s| s.metadata_in_object_storage = on);
    }

    // ---- faults ----

    /// `module@version` (decoded, e.g. `gitlab.example.com/acme/Utils`, `v1.0.0`) serves an
    /// ill-formed zip or go.mod until [`FakeGitlab::clear_go_faults`].
    pub fn go_fault(&self, module: &str, version: &str, fault: go::GoFault) {
        self.shared.with_switches(|s| {
            s.go_faults
                .insert((module.to_string(), version.to_string()), fault)
        });
    }

    pub fn clear_go_faults(&self) {
        self.shared.with_switches(|s| s.go_faults.clear());
    }

    /// Waits `d` before answering every request.
    pub fn delay(&self, d: Duration) {
        self.delay_matching("", d);
    }

    /// Waits `d` before answering requests whose raw path contains `path_contains`.
    pub fn delay_matching(&self, path_contains: &str, d: Duration) {
        self.add_rule(|f| &mut f.delays, path_contains, d, None);
    }

    /// Answers every request with `status` and `{"message":"<status> <reason>"}`.
    pub fn fail_with(&self, status: u16) {
        self.fail_matching("", status);
    }

    /// Answers requests whose raw path contains `path_contains` with `status`.
    pub fn fail_matching(&self, path_contains: &str, status: u16) {
        self.add_rule(|f| &mut f.failures, path_contains, status, None);
    }

    /// Answers only the next `times` matching requests with `status`, then behaves again.
    pub fn fail_next(&self, path_contains: &str, status: u16, times: usize) {
        self.add_rule(|f| &mut f.failures, path_contains, status, Some(times));
    }

    /// For matching requests: sends the real `Content-Length`, writes `n_bytes` of the body,
    /// then drops the connection.
    pub fn cut_body_after(&self, path_contains: &str, n_bytes: usize) {
        self.add_rule(|f| &mut f.cuts, path_contains, n_bytes, None);
    }

    /// For matching requests: sends the real `Content-Length` and `n_bytes` of the body, then
    /// holds the rest until the returned gate is released or cut.
    pub fn pause_body_after(&self, path_contains: &str, n_bytes: usize) -> BodyGate {
        let (tx, gate) = tokio::sync::watch::channel(GateState::Held);
        let pause = Pause {
            after: n_bytes,
            gate,
        };
        self.add_rule(|f| &mut f.pauses, path_contains, pause, None);
        BodyGate { tx }
    }

    /// Removes every delay, failure, cut and pause (modes and counters stay).
    pub fn clear_faults(&self) {
        *lock(&self.shared.faults) = Faults::default();
    }

    fn add_rule<T>(
        &self,
        field: impl FnOnce(&mut Faults) -> &mut Vec<Rule<T>>,
        path_contains: &str,
        what: T,
        remaining: Option<usize>,
    ) {
        field(&mut lock(&self.shared.faults)).push(Rule {
            path_contains: path_contains.to_string(),
            what,
            remaining,
        });
    }

    /// Stops accepting: closes the listener and drops every open connection, so connects are
    /// refused until [`FakeGitlab::come_back`]. Returns once that is true.
    pub async fn go_down(&self) {
        let server = lock(&self.server).take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }

    /// Re-binds the same port (SO_REUSEADDR) and serves again.
    pub async fn come_back(&self) {
        let mut slot = lock(&self.server);
        if slot.is_some() {
            return;
        }
        let listener = serve::bind(self.addr)
            .unwrap_or_else(|e| panic!("fake gitlab: re-bind {}: {e}", self.addr));
        *slot = Some(serve_gitlab(listener, &self.shared));
    }

    // ---- counters ----

    /// Requests whose raw path (no query) contains `path_contains`.
    pub fn requests(&self, path_contains: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path.contains(path_contains))
            .count()
    }

    /// Every request the GitLab listener answered (object store excluded).
    pub fn requests_total(&self) -> usize {
        self.shared.requests_total.load(Ordering::SeqCst)
    }

    /// TCP connections accepted by the GitLab listener.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The request log, oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// Stops (or resumes) recording requests in the log; totals are still counted. For
    /// long-running benchmark processes.
    pub fn set_request_log(&self, on: bool) {
        self.shared.log_enabled.store(on, Ordering::SeqCst);
    }

    /// Zeroes every counter and clears the log and the object-store records.
    pub fn reset_counters(&self) {
        lock(&self.shared.log).clear();
        self.shared.requests_total.store(0, Ordering::SeqCst);
        self.shared.connections.store(0, Ordering::SeqCst);
        self.shared.object_store_requests.store(0, Ordering::SeqCst);
        lock(&self.shared.object_store_auth_seen).clear();
    }

    /// Requests the object store answered.
    pub fn object_store_requests(&self) -> usize {
        self.shared.object_store_requests.load(Ordering::SeqCst)
    }

    /// Names (lowercase) of credential-bearing headers the object store received, one entry
    /// per header per request: `authorization`, `private-token`, `job-token`, `deploy-token`,
    /// `cookie`, `proxy-authorization`. Should stay empty.
    pub fn object_store_auth_headers_seen(&self) -> Vec<String> {
        lock(&self.shared.object_store_auth_seen).clone()
    }
}

fn serve_gitlab(listener: tokio::net::TcpListener, shared: &Arc<Shared>) -> Server {
    let shared = shared.clone();
    serve::serve_counting(listener, Some(shared.connections.clone()), move |req| {
        let shared = shared.clone();
        async move { handle(&shared, req).await }
    })
}

fn serve_object_store(listener: tokio::net::TcpListener, shared: &Arc<Shared>) -> Server {
    let shared = shared.clone();
    serve::serve(listener, move |req| {
        let shared = shared.clone();
        async move { handle_object_store(&shared, req).await }
    })
}

async fn collect(req: hyper::Request<hyper::body::Incoming>) -> FakeRequest {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    FakeRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    }
}

async fn handle(shared: &Shared, req: hyper::Request<hyper::body::Incoming>) -> Response<Body> {
    let req = collect(req).await;
    shared.requests_total.fetch_add(1, Ordering::SeqCst);
    if shared.log_enabled.load(Ordering::SeqCst) {
        let record = RequestRecord {
            method: req.method.to_string(),
            path: req.path.clone(),
            query: req.query.clone(),
            credentials: credentials(&req).into_iter().map(|(k, _)| k).collect(),
            headers: req.headers.clone(),
        };
        lock(&shared.log).push(record);
    }
    let (delay, failure, body_fault) = {
        let mut faults = lock(&shared.faults);
        let delay = take_rule(&mut faults.delays, &req.path);
        let failure = take_rule(&mut faults.failures, &req.path);
        let body_fault = match take_rule(&mut faults.cuts, &req.path) {
            Some(n) => Some(BodyFault::Cut(n)),
            None => take_rule(&mut faults.pauses, &req.path).map(BodyFault::Pause),
        };
        (delay, failure, body_fault)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let reply = match failure {
        Some(status) => Reply::injected(status),
        None => ROUTES
            .iter()
            .find_map(|route| route(shared, &req))
            .unwrap_or_else(Reply::route_not_found),
    };
    into_response(reply, body_fault)
}

fn cut_on_purpose() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "fake gitlab: body cut on purpose",
    )
}

fn into_response(reply: Reply, fault: Option<BodyFault>) -> Response<Body> {
    reply.into_response_with(|body| faulty_body(body, fault))
}

/// The body as a fault leaves it: cut or held after its first bytes, else whole.
fn faulty_body(body: Bytes, fault: Option<BodyFault>) -> Body {
    let len = body.len();
    match fault {
        Some(BodyFault::Cut(n)) if n < len => {
            let head = body.slice(..n);
            // Give hyper a moment to flush the head before the error aborts the connection.
            let stream = futures_util::stream::iter([Ok(Frame::data(head))]).chain(
                futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(cut_on_purpose())
                }),
            );
            BodyExt::boxed(StreamBody::new(stream))
        }
        Some(BodyFault::Pause(Pause { after, mut gate })) if after < len => {
            let head = body.slice(..after);
            let rest = body.slice(after..);
            let stream = futures_util::stream::iter([Ok(Frame::data(head))]).chain(
                futures_util::stream::once(async move {
                    let state = gate
                        .wait_for(|s| *s != GateState::Held)
                        .await
                        .map(|s| *s)
                        .unwrap_or(GateState::Released);
                    match state {
                        GateState::Cut => Err(cut_on_purpose()),
                        _ => Ok(Frame::data(rest)),
                    }
                }),
            );
            BodyExt::boxed(StreamBody::new(stream))
        }
        _ => serve::full(body),
    }
}

/// The fake object store: `GET /bucket/<key>?...X-Amz-Signature=...` serves what a redirect
/// put there, and records any credential header it receives.
async fn handle_object_store(
    shared: &Shared,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response<Body> {
    let req = collect(req).await;
    shared.object_store_requests.fetch_add(1, Ordering::SeqCst);
    {
        let mut seen = lock(&shared.object_store_auth_seen);
        for name in CREDENTIAL_HEADERS {
            if req.headers.contains_key(*name) {
                seen.push((*name).to_string());
            }
        }
    }
    let object = req
        .path
        .strip_prefix("/bucket/")
        .and_then(|key| lock(&shared.objects).get(key).cloned());
    let reply = match object {
        _ if !req.is_read() => Reply::new(
            405,
            "application/xml",
            "<Error><Code>MethodNotAllowed</Code></Error>",
        ),
        _ if req.query_param("X-Amz-Signature").is_none() => Reply::new(
            403,
            "application/xml",
            "<Error><Code>AccessDenied</Code></Error>",
        ),
        None => Reply::new(
            404,
            "application/xml",
            "<Error><Code>NoSuchKey</Code></Error>",
        ),
        Some((body, content_type)) => {
            let etag = etag_of(&body);
            if if_none_match(&req.headers, &etag) {
                Reply::new(304, content_type, Bytes::new()).header("etag", &etag)
            } else {
                Reply::new(200, content_type, body).header("etag", &etag)
            }
        }
    };
    reply.into_response()
}
