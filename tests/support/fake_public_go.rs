//! A fake *public* Go module proxy (the role proxy.golang.org plays), on its own 127.0.0.1
//! listener: what packrat's `[forwarding] go_proxy` points at in tests.
//!
//! It serves the GOPROXY protocol (`<module>/@v/list`, `@v/<v>.info`, `.mod`, `.zip`,
//! `<module>/@latest`) for the versions published on it, with `!`-escaped paths, zips built
//! by the fake GitLab's zip builder (so `h1:` hashes are real: [`FakePublicGo::sumdb_entries`]
//! feeds the fake checksum database) and a request log.
//!
//! [`FakePublicGo::start`] serves [`FakePublicGo::standard`]: `example.com/pub/greet` v1.0.0
//! and v1.1.0. [`FakePublicGo::publish_evil`] adds what an attacker would publish: a higher
//! version of a *private* module path whose code says "EVIL".

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::fake_gitlab::go::{h1_mod, h1_zip, info_time, module_zip, GoCommit};
use super::fake_sumdb::SumdbEntry;

/// The public module every Go test can use.
pub const GREET: &str = "example.com/pub/greet";

/// One published module version: its file tree (module root = tree root).
#[derive(Clone, Debug)]
pub struct GoPubVersion {
    pub module: String,
    pub version: String,
    /// Unix seconds (the `.info` `Time`).
    pub time: u64,
    pub files: BTreeMap<String, Bytes>,
}

impl GoPubVersion {
    /// `go.mod` is added (`module <module>\n\ngo 1.19\n`) unless `files` has one.
    pub fn new(module: &str, version: &str, time: u64, files: &[(&str, &str)]) -> GoPubVersion {
        let mut map: BTreeMap<String, Bytes> = files
            .iter()
            .map(|(p, c)| ((*p).to_string(), Bytes::from(c.to_string())))
            .collect();
        map.entry("go.mod".to_string())
            .or_insert_with(|| Bytes::from(format!("module {module}\n\ngo 1.19\n")));
        GoPubVersion {
            module: module.to_string(),
            version: version.to_string(),
            time,
            files: map,
        }
    }

    /// The same files published under another module path (its go.mod rewritten).
    pub fn renamed(mut self, module: &str) -> GoPubVersion {
        self.files.insert(
            "go.mod".to_string(),
            Bytes::from(format!("module {module}\n\ngo 1.19\n")),
        );
        self.module = module.to_string();
        self
    }

    fn commit(&self) -> GoCommit {
        GoCommit {
            sha: "0".repeat(40),
            time: self.time,
            files: self.files.clone(),
        }
    }

    pub fn zip(&self) -> Vec<u8> {
        module_zip(&self.commit(), "", &self.module, &self.version)
    }

    pub fn go_mod(&self) -> Bytes {
        self.files.get("go.mod").cloned().unwrap_or_default()
    }
}

/// `example.com/pub/greet` at `version`: `greet.Hello(name)` returns
/// `"hello <name> from public greet <version>"`.
pub fn greet(version: &str, time: u64) -> GoPubVersion {
    GoPubVersion::new(
        GREET,
        version,
        time,
        &[
            (
                "greet.go",
                &format!(
                    "// Package greet is a public module.\npackage greet\n\n\
                     // Hello greets name.\nfunc Hello(name string) string {{ return \"hello \" + name + \" from public greet {version}\" }}\n"
                ),
            ),
            ("LICENSE", "MIT License\n"),
        ],
    )
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct GoPubRequest {
    /// Raw path (no query).
    pub path: String,
    /// Whether any credential header arrived (a public proxy should never see one).
    pub had_credentials: bool,
}

struct State {
    /// module → version → published
    modules: Mutex<BTreeMap<String, BTreeMap<String, GoPubVersion>>>,
    log: Mutex<Vec<GoPubRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake public Go proxy; dropping it stops the listener.
pub struct FakePublicGo {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

const T0: u64 = 1_672_531_200; // 2023-01-01T00:00:00Z

impl FakePublicGo {
    /// `example.com/pub/greet` v1.0.0 and v1.1.0.
    pub fn standard() -> Vec<GoPubVersion> {
        vec![greet("v1.0.0", T0), greet("v1.1.0", T0 + 86_400)]
    }

    pub async fn start() -> FakePublicGo {
        FakePublicGo::start_with(FakePublicGo::standard()).await
    }

    pub async fn start_with(versions: Vec<GoPubVersion>) -> FakePublicGo {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake public go: bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            modules: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let fake = FakePublicGo {
            addr,
            task: tokio::spawn(serve(listener, state.clone())),
            state,
        };
        for v in versions {
            fake.publish(v);
        }
        fake
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn publish(&self, v: GoPubVersion) {
        lock(&self.state.modules)
            .entry(v.module.clone())
            .or_default()
            .insert(v.version.clone(), v);
    }

    /// The attack: `module@version` published publicly, every `.go` file it would normally
    /// have replaced by code whose strings say "EVIL". `packages` lists the package
    /// directories to fill (relative to the module root, "" = root), with their package name.
    pub fn publish_evil(&self, module: &str, version: &str, packages: &[(&str, &str)]) {
        let files: Vec<(String, String)> = packages
            .iter()
            .map(|(dir, pkg)| {
                let path = if dir.is_empty() {
                    "evil.go".to_string()
                } else {
                    format!("{dir}/evil.go")
                };
                (
                    path,
                    format!(
                        "package {pkg}\n\nfunc Hello(name string) string {{ return \"EVIL\" }}\n\n\
                         func Version() string {{ return \"EVIL\" }}\n"
                    ),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        self.publish(GoPubVersion::new(module, version, T0 + 365 * 86_400, &refs));
    }

    /// The published version, if any.
    pub fn version(&self, module: &str, version: &str) -> Option<GoPubVersion> {
        lock(&self.state.modules).get(module)?.get(version).cloned()
    }

    /// What a checksum database holds for every version published here.
    pub fn sumdb_entries(&self) -> Vec<SumdbEntry> {
        lock(&self.state.modules)
            .values()
            .flat_map(|vs| vs.values())
            .map(|v| SumdbEntry {
                module: v.module.clone(),
                version: v.version.clone(),
                zip_h1: h1_zip(&v.zip()),
                mod_h1: h1_mod(&v.go_mod()),
            })
            .collect()
    }

    /// Requests whose raw path contains `path_contains`.
    pub fn requests(&self, path_contains: &str) -> usize {
        lock(&self.state.log)
            .iter()
            .filter(|r| r.path.contains(path_contains))
            .count()
    }

    pub fn requests_total(&self) -> usize {
        lock(&self.state.log).len()
    }

    pub fn request_log(&self) -> Vec<GoPubRequest> {
        lock(&self.state.log).clone()
    }
}

impl Drop for FakePublicGo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `!x` → `X` (the GOPROXY protocol's case encoding).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut bang = false;
    for c in s.chars() {
        if bang {
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// Highest release, else highest pre-release; a crude semver order that is enough here.
fn latest(versions: &BTreeMap<String, GoPubVersion>) -> Option<&GoPubVersion> {
    let key = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|n| n.parse().unwrap_or(0))
            .collect()
    };
    let best = |pre: bool| {
        versions
            .values()
            .filter(|v| v.version.contains('-') == pre)
            .max_by_key(|v| key(&v.version))
    };
    best(false).or_else(|| best(true))
}

type Body = BoxBody<Bytes, io::Error>;

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    let len = body.len();
    let mut r = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("content type"),
    );
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn not_found() -> Response<Body> {
    reply(404, "text/plain; charset=utf-8", "not found\n")
}

fn info(v: &GoPubVersion) -> Response<Body> {
    let body = serde_json::json!({"Version": v.version, "Time": info_time(v.time)});
    reply(200, "application/json", body.to_string())
}

fn handle(state: &State, req: &hyper::Request<hyper::body::Incoming>) -> Response<Body> {
    let had_credentials = [
        "authorization",
        "private-token",
        "job-token",
        "deploy-token",
    ]
    .iter()
    .any(|h| req.headers().contains_key(*h));
    let raw = req.uri().path().to_string();
    lock(&state.log).push(GoPubRequest {
        path: raw.clone(),
        had_credentials,
    });
    let path = percent_encoding::percent_decode_str(&raw)
        .decode_utf8_lossy()
        .into_owned();
    let Some(path) = path.strip_prefix('/') else {
        return not_found();
    };
    let modules = lock(&state.modules);
    if let Some(module) = path.strip_suffix("/@latest") {
        return modules
            .get(&unescape(module))
            .and_then(latest)
            .map_or_else(not_found, info);
    }
    let Some((module, file)) = path.rsplit_once("/@v/") else {
        return not_found();
    };
    let Some(versions) = modules.get(&unescape(module)) else {
        return not_found();
    };
    if file == "list" {
        let list: String = versions.keys().map(|v| format!("{v}\n")).collect();
        return reply(200, "text/plain; charset=utf-8", list);
    }
    let Some((version, ext)) = file.rsplit_once('.') else {
        return not_found();
    };
    let Some(v) = versions.get(&unescape(version)) else {
        return not_found();
    };
    match ext {
        "info" => info(v),
        "mod" => reply(200, "text/plain; charset=utf-8", v.go_mod()),
        "zip" => reply(200, "application/zip", v.zip()),
        _ => not_found(),
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}
