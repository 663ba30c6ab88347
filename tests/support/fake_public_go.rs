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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::fake_gitlab::go::{h1_mod, h1_zip, info_time, module_zip, GoCommit};
use super::fake_sumdb::SumdbEntry;
use super::serve::{self, lock, Logged, Reply, RequestLog, Server};

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

impl Logged for GoPubRequest {
    fn path(&self) -> &str {
        &self.path
    }
}

struct State {
    /// module → version → published
    modules: Mutex<BTreeMap<String, BTreeMap<String, GoPubVersion>>>,
    log: RequestLog<GoPubRequest>,
}

/// A running fake public Go proxy; dropping it stops the listener.
pub struct FakePublicGo {
    addr: SocketAddr,
    state: Arc<State>,
    _server: Server,
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
        let (listener, addr) = serve::bind_any("fake public go");
        let state = Arc::new(State {
            modules: Mutex::new(BTreeMap::new()),
            log: RequestLog::default(),
        });
        let fake = FakePublicGo {
            addr,
            _server: serve::serve_replies(listener, state.clone(), handle),
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

    serve::request_counters!(state.log => GoPubRequest);
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

fn not_found() -> Reply {
    Reply::text(404, "not found\n")
}

fn info(v: &GoPubVersion) -> Reply {
    let body = serde_json::json!({"Version": v.version, "Time": info_time(v.time)});
    Reply::new(200, "application/json", body.to_string())
}

fn handle(state: &State, req: &hyper::Request<hyper::body::Incoming>) -> Reply {
    state.log.push(GoPubRequest {
        path: req.uri().path().to_string(),
        had_credentials: serve::has_credentials(req.headers()),
    });
    let path = serve::decoded_path(req);
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
        return Reply::text(200, list);
    }
    let Some((version, ext)) = file.rsplit_once('.') else {
        return not_found();
    };
    let Some(v) = versions.get(&unescape(version)) else {
        return not_found();
    };
    match ext {
        "info" => info(v),
        "mod" => Reply::text(200, v.go_mod()),
        "zip" => Reply::new(200, "application/zip", v.zip()),
        _ => not_found(),
    }
}
