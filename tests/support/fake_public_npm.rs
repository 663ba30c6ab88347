//! A fake *public* npm registry (the role registry.npmjs.org plays), on its own 127.0.0.1
//! listener: what packrat's `[forwarding] npm_registry` points at in tests.
//!
//! Unlike GitLab it serves **full** packuments (`_id`, `_rev`, `time`, `readme`,
//! `maintainers`, per-version `scripts`, `dist.integrity` sha512 + `dist.shasum`, tarball
//! URLs pointing at itself) and the abbreviated ("corgi") document when the client sends
//! `Accept: application/vnd.npm.install-v1+json`. Tarballs are real gzip'd tars whose
//! `index.js` exports `"<name>@<version>"` followed by what its dependencies export, so
//! `require()` shows which tree was installed; [`PublicPkg::exports`] overrides that (the
//! attacker's `"EVIL"`).
//!
//! [`FakePublicNpm::start`] serves [`FakePublicNpm::standard`]: `left-pad` 1.0.0 and 1.3.0,
//! `is-thing` 1.0.0 and 1.1.0 (both depend on `left-pad ^1.0.0`). Packages can be added and
//! removed while it runs; every request is counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha1::Sha1;
use sha2::{Digest, Sha512};

use super::fake_gitlab::world::{semver_cmp, tgz};
use super::serve::{self, lock, Logged, Reply, RequestLog, Server};

/// The abbreviated-metadata media type npm sends in `Accept`.
pub const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

/// One package version to publish on the fake public registry.
///
/// ```ignore
/// PublicPkg::new("@acme/ui", "99.0.0").exports("EVIL")
/// ```
#[derive(Clone, Debug)]
pub struct PublicPkg {
    pub name: String,
    pub version: String,
    pub dependencies: BTreeMap<String, String>,
    pub scripts: BTreeMap<String, String>,
    /// What `index.js` exports; `None` = `"<name>@<version>"` plus the dependencies' exports.
    pub exports: Option<String>,
}

impl PublicPkg {
    pub fn new(name: &str, version: &str) -> PublicPkg {
        PublicPkg {
            name: name.to_string(),
            version: version.to_string(),
            dependencies: BTreeMap::new(),
            scripts: BTreeMap::new(),
            exports: None,
        }
    }

    pub fn dep(mut self, name: &str, range: &str) -> PublicPkg {
        self.dependencies
            .insert(name.to_string(), range.to_string());
        self
    }

    /// A `scripts` entry (full packument only; npm's abbreviated form drops `scripts`).
    pub fn script(mut self, key: &str, command: &str) -> PublicPkg {
        self.scripts.insert(key.to_string(), command.to_string());
        self
    }

    /// `index.js` exports exactly this string (and requires nothing).
    pub fn exports(mut self, value: &str) -> PublicPkg {
        self.exports = Some(value.to_string());
        self
    }
}

/// A published version: the package plus its tarball and checksums.
#[derive(Clone, Debug)]
struct Published {
    pkg: PublicPkg,
    tarball: Bytes,
    /// `sha512-<base64>`
    integrity: String,
    /// sha1 hex
    shasum: String,
    /// ISO 8601 publish time (deterministic: derived from the order of publication).
    time: String,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct PublicRequest {
    pub method: String,
    /// Raw path (no query).
    pub path: String,
    pub accept: Option<String>,
    /// Whether any credential header arrived (a public registry should never see one).
    pub had_credentials: bool,
}

impl Logged for PublicRequest {
    fn path(&self) -> &str {
        &self.path
    }
}

struct State {
    base_url: String,
    /// name → version → published
    packages: Mutex<BTreeMap<String, BTreeMap<String, Published>>>,
    published: Mutex<u64>,
    log: RequestLog<PublicRequest>,
}

/// A running fake public npm registry; dropping it stops the listener.
pub struct FakePublicNpm {
    addr: SocketAddr,
    state: Arc<State>,
    _server: Server,
}

impl FakePublicNpm {
    /// The default public world: `left-pad` 1.0.0, 1.3.0; `is-thing` 1.0.0, 1.1.0 (each
    /// depending on `left-pad ^1.0.0`, with a `test` script).
    pub fn standard() -> Vec<PublicPkg> {
        vec![
            PublicPkg::new("left-pad", "1.0.0"),
            PublicPkg::new("left-pad", "1.3.0"),
            PublicPkg::new("is-thing", "1.0.0")
                .dep("left-pad", "^1.0.0")
                .script("test", "node test.js"),
            PublicPkg::new("is-thing", "1.1.0")
                .dep("left-pad", "^1.0.0")
                .script("test", "node test.js"),
        ]
    }

    /// Binds 127.0.0.1:0 and serves [`FakePublicNpm::standard`].
    pub async fn start() -> FakePublicNpm {
        FakePublicNpm::start_with(FakePublicNpm::standard()).await
    }

    /// Binds 127.0.0.1:0 and serves exactly `packages`.
    pub async fn start_with(packages: Vec<PublicPkg>) -> FakePublicNpm {
        let (listener, addr) = serve::bind_any("fake public npm");
        let state = Arc::new(State {
            base_url: format!("http://{addr}"),
            packages: Mutex::new(BTreeMap::new()),
            published: Mutex::new(0),
            log: RequestLog::default(),
        });
        let fake = FakePublicNpm {
            addr,
            _server: serve::serve_replies(listener, state.clone(), handle),
            state,
        };
        for pkg in packages {
            fake.publish(pkg);
        }
        fake
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.state.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes a version (replacing one with the same name and version).
    pub fn publish(&self, pkg: PublicPkg) {
        let tarball = Bytes::from(tarball(&pkg));
        let integrity = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tarball))
        );
        let shasum = hex::encode(Sha1::digest(&tarball));
        let n = {
            let mut n = lock(&self.state.published);
            *n += 1;
            *n
        };
        let time = format!("2024-01-{:02}T00:00:{:02}.000Z", 1 + n / 60 % 28, n % 60);
        lock(&self.state.packages)
            .entry(pkg.name.clone())
            .or_default()
            .insert(
                pkg.version.clone(),
                Published {
                    pkg,
                    tarball,
                    integrity,
                    shasum,
                    time,
                },
            );
    }

    /// Unpublishes every version of `name`; returns whether it existed.
    pub fn unpublish(&self, name: &str) -> bool {
        lock(&self.state.packages).remove(name).is_some()
    }

    /// The tarball bytes of a published version.
    pub fn tarball(&self, name: &str, version: &str) -> Option<Bytes> {
        lock(&self.state.packages)
            .get(name)?
            .get(version)
            .map(|p| p.tarball.clone())
    }

    /// The `sha512-...` integrity of a published version.
    pub fn integrity(&self, name: &str, version: &str) -> Option<String> {
        lock(&self.state.packages)
            .get(name)?
            .get(version)
            .map(|p| p.integrity.clone())
    }

    serve::request_counters!(state.log => PublicRequest);

    pub fn reset_counters(&self) {
        self.state.log.clear();
    }
}

/// `package/package.json` + `package/index.js` (+ `package/README.md`).
fn tarball(pkg: &PublicPkg) -> Vec<u8> {
    let mut manifest = json!({
        "name": pkg.name,
        "version": pkg.version,
        "description": format!("{} (from packrat's fake public npm registry)", pkg.name),
        "main": "index.js",
        "license": "MIT",
    });
    if !pkg.dependencies.is_empty() {
        manifest["dependencies"] = json!(pkg.dependencies);
    }
    if !pkg.scripts.is_empty() {
        manifest["scripts"] = json!(pkg.scripts);
    }
    let index = match &pkg.exports {
        Some(value) => format!("module.exports = {value:?};\n"),
        None => {
            let deps: Vec<&String> = pkg.dependencies.keys().collect();
            format!(
                "const deps = {};\nconst inner = deps.map((d) => require(d));\n\
                 module.exports = {:?} + (inner.length ? \" (\" + inner.join(\", \") + \")\" : \"\");\n",
                serde_json::to_string(&deps).expect("deps"),
                format!("{}@{}", pkg.name, pkg.version),
            )
        }
    };
    tgz(&[
        (
            "package/package.json",
            serde_json::to_vec_pretty(&manifest).expect("manifest"),
        ),
        ("package/index.js", index.into_bytes()),
        (
            "package/README.md",
            format!("# {}\n\nA public package.\n", pkg.name).into_bytes(),
        ),
    ])
}

/// `https://registry.npmjs.org/@scope/name/-/name-1.0.0.tgz`: the file name drops the scope.
fn tarball_url(base: &str, name: &str, version: &str) -> String {
    let basename = name.rsplit('/').next().unwrap_or(name);
    format!("{base}/{name}/-/{basename}-{version}.tgz")
}

fn full_packument(base: &str, name: &str, versions: &BTreeMap<String, Published>) -> Value {
    let latest = versions
        .keys()
        .max_by(|a, b| semver_cmp(a, b))
        .cloned()
        .unwrap_or_default();
    let maintainers = json!([{"name": "someone", "email": "someone@example.com"}]);
    let mut vs = Map::new();
    let mut time = Map::new();
    let mut first: Option<String> = None;
    let mut last: Option<String> = None;
    for (v, p) in versions {
        let mut doc = json!({
            "name": name,
            "version": v,
            "description": format!("{name} (from packrat's fake public npm registry)"),
            "main": "index.js",
            "license": "MIT",
            "_id": format!("{name}@{v}"),
            "_nodeVersion": "20.11.0",
            "_npmVersion": "10.2.4",
            "maintainers": maintainers,
            "dist": {
                "integrity": p.integrity,
                "shasum": p.shasum,
                "tarball": tarball_url(base, name, v),
                "fileCount": 3,
                "unpackedSize": p.tarball.len() * 3,
            },
        });
        if !p.pkg.dependencies.is_empty() {
            doc["dependencies"] = json!(p.pkg.dependencies);
        }
        if !p.pkg.scripts.is_empty() {
            doc["scripts"] = json!(p.pkg.scripts);
        }
        vs.insert(v.clone(), doc);
        time.insert(v.clone(), json!(p.time));
        if first.as_ref().is_none_or(|f| p.time < *f) {
            first = Some(p.time.clone());
        }
        if last.as_ref().is_none_or(|l| p.time > *l) {
            last = Some(p.time.clone());
        }
    }
    time.insert("created".into(), json!(first));
    time.insert("modified".into(), json!(last));
    json!({
        "_id": name,
        "_rev": format!("{}-0123456789abcdef", versions.len()),
        "name": name,
        "description": format!("{name} (from packrat's fake public npm registry)"),
        "dist-tags": {"latest": latest},
        "versions": vs,
        "time": time,
        "maintainers": maintainers,
        "license": "MIT",
        "readme": format!("# {name}\n\nA public package.\n"),
        "readmeFilename": "README.md",
    })
}

/// npm's abbreviated ("corgi") document: `name`, `modified`, `dist-tags`, and per version
/// only what an install needs.
fn abbreviated_packument(full: &Value) -> Value {
    let mut versions = Map::new();
    if let Some(vs) = full["versions"].as_object() {
        for (v, doc) in vs {
            let mut small = Map::new();
            for key in ["name", "version", "dependencies", "engines", "bin"] {
                if let Some(value) = doc.get(key) {
                    small.insert(key.into(), value.clone());
                }
            }
            small.insert(
                "dist".into(),
                json!({
                    "integrity": doc["dist"]["integrity"],
                    "shasum": doc["dist"]["shasum"],
                    "tarball": doc["dist"]["tarball"],
                }),
            );
            if doc["scripts"].as_object().is_some_and(|s| {
                ["preinstall", "install", "postinstall"]
                    .iter()
                    .any(|k| s.contains_key(*k))
            }) {
                small.insert("hasInstallScript".into(), json!(true));
            }
            versions.insert(v.clone(), Value::Object(small));
        }
    }
    json!({
        "name": full["name"],
        "modified": full["time"]["modified"],
        "dist-tags": full["dist-tags"],
        "versions": versions,
    })
}

fn not_found() -> Reply {
    Reply::new(404, "application/json", r#"{"error":"Not found"}"#)
}

fn handle(state: &State, req: &hyper::Request<hyper::body::Incoming>) -> Reply {
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.log.push(PublicRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        accept: accept.clone(),
        had_credentials: serve::has_credentials(req.headers()),
    });
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return Reply::new(405, "application/json", r#"{"error":"Method not allowed"}"#);
    }
    let path = serve::decoded_path(req);
    let Some(path) = path.strip_prefix('/') else {
        return not_found();
    };
    let packages = lock(&state.packages);
    if let Some((name, file)) = path.split_once("/-/") {
        let Some(versions) = packages.get(name) else {
            return not_found();
        };
        return versions
            .iter()
            .find(|(v, _)| tarball_url("", name, v).ends_with(&format!("/-/{file}")))
            .map_or_else(not_found, |(_, p)| {
                Reply::new(200, "application/octet-stream", p.tarball.clone())
            });
    }
    let Some(versions) = packages.get(path) else {
        return not_found();
    };
    let full = full_packument(&state.base_url, path, versions);
    if accept.as_deref().is_some_and(|a| a.contains(ABBREVIATED)) {
        let doc = abbreviated_packument(&full);
        return Reply::new(
            200,
            ABBREVIATED,
            serde_json::to_vec(&doc).expect("abbreviated"),
        );
    }
    Reply::json(200, &full)
}
