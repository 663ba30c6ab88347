//! The whole air-gap workflow with real clients: a lockfile made through a connected packrat,
//! `packrat sync` into a fresh data directory (npm lockfile + go.mod/go.sum, with checksum
//! database lookups and tiles), `export`, `import` into another fresh directory, then an
//! offline packrat on the same address with every upstream stopped: the real `npm ci` and the
//! real `go mod download` succeed. Private modules are the client's GONOSUMDB (packrat never
//! sends their names to a checksum database); a public module forwarded through `/go/` is
//! verified against the checksum database the mirror carries.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use std::time::Instant;

use crate::go_proxy::{expected_go_sum, APP_OUTPUT, GO_MODULES};
use crate::support::clients::{describe, Go, Npm};
use crate::support::fake_gitlab::go::{h1_mod, h1_zip};
use crate::support::fake_gitlab::world::NpmPkg;
use crate::support::fake_gitlab::{FakeGitlab, World, ALICE_PAT};
use crate::support::fake_public_go::{FakePublicGo, GREET};
use crate::support::fake_sumdb::FakeSumdb;
use crate::support::files;
use crate::support::packrat::Packrat;
use crate::support::poll;
use crate::support::require_tool;

/// Extra packages so the lockfile has a few dozen entries.
const GENERATED: usize = 30;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The app: three private modules (GitLab) and one public module (forwarded).
const APP_GO_MOD: &str = "module example.com/app\n\ngo 1.19\n\nrequire (\n\texample.com/pub/greet v1.1.0\n\tgitlab.example.com/acme/Utils v1.0.0\n\tgitlab.example.com/acme/web v1.1.0\n\tgitlab.example.com/acme/web/v2 v2.0.0\n)\n";
const APP_MAIN_GO: &str = r#"package main

import (
	"fmt"

	pub "example.com/pub/greet"
	"gitlab.example.com/acme/Utils/strutil"
	"gitlab.example.com/acme/web"
	"gitlab.example.com/acme/web/greet"
	"gitlab.example.com/acme/web/mathx"
	webv2 "gitlab.example.com/acme/web/v2"
)

func main() {
	fmt.Println(greet.Hello("packrat"), "|", mathx.Add(2, 3), "|", web.Version(), "|", webv2.Version(), "|", strutil.Shout("ok"))
	fmt.Println(pub.Hello("air"))
}
"#;

fn config(
    dir: &Path,
    port: u16,
    upstream: &str,
    go_proxy: &str,
    sumdb: &str,
    extra: &str,
) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[storage]\ndir = {:?}\n\n[upstream]\nurl = \"{upstream}\"\ntoken_env = \"AIRGAP_SYNC_TOKEN\"\n\n{extra}\n[forwarding]\ngo_proxy = \"{go_proxy}\"\ngo_sumdb = \"{sumdb}\"\n\n[[forwarding.rules]]\nmatch = \"gitlab.example.com/*\"\nforward = false\n\n[[forwarding.rules]]\nmatch = \"@acme/*\"\nforward = false\n\n[[forwarding.rules]]\nmatch = \"*\"\nforward = true\n\n{GO_MODULES}",
        dir.display().to_string()
    )
}

/// packrat on a complete config of the test's own (with its own data directory).
async fn start_config(full_toml: &str) -> Packrat {
    Packrat::builder().config(full_toml).start().await
}

/// go.sum of the whole app: the private modules and the public one.
fn app_go_sum(fake: &FakeGitlab, public: &FakePublicGo) -> String {
    let greet = public.version(GREET, "v1.1.0").unwrap();
    let mut lines: Vec<String> = expected_go_sum(fake).lines().map(str::to_string).collect();
    lines.push(format!("{GREET} v1.1.0 {}", h1_zip(&greet.zip())));
    lines.push(format!("{GREET} v1.1.0/go.mod {}", h1_mod(&greet.go_mod())));
    lines.sort();
    lines.join("\n") + "\n"
}

fn sorted(s: &str) -> String {
    let mut l: Vec<&str> = s.lines().collect();
    l.sort_unstable();
    l.join("\n") + "\n"
}

/// Run a packrat command without blocking the runtime the fakes answer on.
async fn packrat(config_path: &Path, args: &[&str]) -> std::process::Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_packrat"))
        .args(args)
        .arg("--config")
        .arg(config_path)
        .env("AIRGAP_SYNC_TOKEN", ALICE_PAT)
        .output()
        .await
        .unwrap();
    eprintln!(
        "packrat {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch directory holding `list` as `packrat.list` and `sync.toml`, a config that syncs
/// from these upstreams into `data/` (listening on `port`): (scratch, list, config, data).
fn sync_setup(
    fake: &FakeGitlab,
    public: &FakePublicGo,
    sumdb: &FakeSumdb,
    list: &str,
    port: u16,
) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let list_path = scratch.path().join("packrat.list");
    std::fs::write(&list_path, list).unwrap();
    let cfg = scratch.path().join("sync.toml");
    let dir = scratch.path().join("data");
    std::fs::write(
        &cfg,
        config(&dir, port, &fake.url(), &public.url(), &sumdb.url(), ""),
    )
    .unwrap();
    (scratch, list_path, cfg, dir)
}

#[tokio::test]
async fn sync_export_import_then_npm_ci_and_go_mod_download_offline() {
    require_tool!("npm", "go");
    let mut world = World::standard();
    let mut deps = vec![("@acme/ui".to_string(), "^1.0.0".to_string())];
    for i in 0..GENERATED {
        let name = format!("@acme/gen-{i:02}");
        world.add_npm(42, NpmPkg::new(&name, "1.0.0").size(8 * 1024));
        deps.push((name, "^1.0.0".into()));
    }
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let fake = FakeGitlab::start(world).await;
    let gp = public.url();
    let port = free_port();
    let scratch = tempfile::tempdir().unwrap();
    let registry = format!("http://127.0.0.1:{port}/api/v4/projects/42/packages/npm/");

    // 1. On the connected side, a developer's lockfile made through packrat.
    let edge_dir = scratch.path().join("edge-data");
    let mut edge = start_config(&config(&edge_dir, port, &fake.url(), &gp, &sumdb.url(), "")).await;
    let npm = Npm::new();
    npm.scope_registry("@acme", &registry);
    npm.auth_token(&format!("http://127.0.0.1:{port}/"), ALICE_PAT);
    let deps_ref: Vec<(&str, &str)> = deps.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect();
    npm.write_package_json(&deps_ref);
    let out = npm.run(&["install", "--no-audit", "--no-fund"]).await;
    assert!(out.status.success(), "lockfile install: {}", describe(&out));
    edge.stop().await;
    let lockfile = npm.project_dir().join("package-lock.json");
    let lock_text = std::fs::read_to_string(&lockfile).unwrap();
    assert!(
        lock_text.contains(&format!("127.0.0.1:{port}/api/v4/projects/42")),
        "resolved through packrat"
    );
    let gomod_dir = scratch.path().join("app");
    std::fs::create_dir_all(&gomod_dir).unwrap();
    std::fs::write(gomod_dir.join("go.mod"), APP_GO_MOD).unwrap();
    std::fs::write(gomod_dir.join("go.sum"), app_go_sum(&fake, &public)).unwrap();

    // 2. sync into a fresh data directory, then export.
    let sync_dir = scratch.path().join("sync-data");
    let sync_cfg = scratch.path().join("sync.toml");
    std::fs::write(
        &sync_cfg,
        config(&sync_dir, port, &fake.url(), &gp, &sumdb.url(), ""),
    )
    .unwrap();
    let started = Instant::now();
    let out = packrat(
        &sync_cfg,
        &[
            "sync",
            lockfile.to_str().unwrap(),
            gomod_dir.join("go.mod").to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "sync failed");
    let sync_secs = started.elapsed().as_secs_f64();
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(summary.contains(" 0 failed"), "{summary}");
    // Resumable / idempotent: a second sync finds everything present.
    let out = packrat(
        &sync_cfg,
        &[
            "sync",
            lockfile.to_str().unwrap(),
            gomod_dir.join("go.mod").to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" 0 fetched"),
        "second sync fetched nothing new"
    );
    let bundle = scratch.path().join("mirror.tar");
    let started = Instant::now();
    assert!(
        packrat(&sync_cfg, &["export", "--out", bundle.to_str().unwrap()])
            .await
            .status
            .success()
    );
    let export_secs = started.elapsed().as_secs_f64();

    // 3. The air-gapped side: import into a fresh directory and serve offline.
    let air_dir = scratch.path().join("air-data");
    let air_cfg = scratch.path().join("air.toml");
    std::fs::write(
        &air_cfg,
        config(
            &air_dir,
            port,
            &fake.url(),
            &gp,
            &sumdb.url(),
            "[cache]\noffline = true\n",
        ),
    )
    .unwrap();
    let started = Instant::now();
    assert!(packrat(&air_cfg, &["import", bundle.to_str().unwrap()])
        .await
        .status
        .success());
    let import_secs = started.elapsed().as_secs_f64();
    fake.go_down().await;
    sumdb.go_down().await;
    let connections = fake.connections();
    let public_requests = public.requests_total();
    let air = start_config(&std::fs::read_to_string(&air_cfg).unwrap()).await;

    let npm2 = Npm::new();
    npm2.scope_registry("@acme", &registry);
    npm2.write_package_json(&deps_ref);
    std::fs::copy(&lockfile, npm2.project_dir().join("package-lock.json")).unwrap();
    let started = Instant::now();
    let out = npm2.run(&["ci", "--no-audit", "--no-fund"]).await;
    assert!(
        out.status.success(),
        "offline npm ci: {}\n{}",
        describe(&out),
        air.logs()
    );
    let npm_ci_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        npm2.installed_version("@acme/core").as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        npm2.installed_version("@acme/gen-29").as_deref(),
        Some("1.0.0")
    );

    let mut go = Go::new();
    go.env("GOPROXY", &format!("{}/go", air.url()))
        .env(
            "GOSUMDB",
            &sumdb.gosumdb(&format!("{}/go/sumdb/{}", air.url(), sumdb.name())),
        )
        .env("GONOSUMDB", "gitlab.example.com");
    go.write_module(APP_GO_MOD, APP_MAIN_GO);
    let started = Instant::now();
    let out = go.run(&["mod", "download"]).await;
    assert!(
        out.status.success(),
        "offline go mod download: {}\n{}",
        describe(&out),
        air.logs()
    );
    let go_secs = started.elapsed().as_secs_f64();
    let out = go.run(&["run", "."]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(APP_OUTPUT),
        "{}\n{}",
        describe(&out),
        air.logs()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello air from public greet v1.1.0"));
    // The public module's hashes were checked against the checksum database the mirror
    // carries; the private ones are the client's GONOSUMDB.
    assert_eq!(sorted(&go.go_sum().unwrap()), app_go_sum(&fake, &public));
    assert_eq!(
        public.requests_total(),
        public_requests,
        "no request to the public Go proxy"
    );
    assert_eq!(
        fake.connections(),
        connections,
        "the offline mirror never connected upstream"
    );

    eprintln!(
        "AIRGAP FIGURES: sync {sync_secs:.2}s into {} bytes; bundle {} bytes, export {export_secs:.2}s, import {import_secs:.2}s; offline npm ci ({} packages) {npm_ci_secs:.2}s; offline go mod download {go_secs:.2}s",
        files::size(&sync_dir),
        std::fs::metadata(&bundle).unwrap().len(),
        GENERATED + 3,
    );
}

#[tokio::test]
async fn a_manifest_syncs_ranges_go_and_the_packages_index_and_via_warms_a_running_packrat() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let port = free_port();
    let (scratch, list, cfg, dir) = sync_setup(
        &fake,
        &public,
        &sumdb,
        "# what the air-gapped site needs\nnpm @acme/ui@^1 project=42\nnpm @acme/core@2.0.0 project=42\n\
         go gitlab.example.com/acme/web@v1.1.0 project=42\npackages project=42\n",
        port,
    );
    let out = packrat(&cfg, &["sync", list.to_str().unwrap()]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("4 items: 4 fetched"), "{text}");

    // Served offline: the packument, the range's tarball, the Go files, the Packages API list.
    std::fs::write(
        &cfg,
        config(
            &dir,
            port,
            &fake.url(),
            &public.url(),
            &sumdb.url(),
            "[cache]\noffline = true\n",
        ),
    )
    .unwrap();
    let air = start_config(&std::fs::read_to_string(&cfg).unwrap()).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", air.url())).send();
    let r = get("/api/v4/projects/42/packages/npm/@acme%2fui")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    let tarball = doc["versions"]["1.1.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        client.get(&tarball).send().await.unwrap().status(),
        200,
        "the highest ^1 version"
    );
    let r = get("/api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/v1.1.0.zip")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/api/v4/projects/42/packages?package_type=npm")
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the Packages API index was mirrored");
    let items: Vec<serde_json::Value> = r.json().await.unwrap();
    assert!(items.iter().any(|i| i["name"] == "@acme/ui"), "{items:?}");
    drop(air);

    // --via: warm a running packrat over HTTP (its data directory is locked).
    let online = Packrat::start(&fake.url(), "").await;
    let via_cfg = scratch.path().join("via.toml");
    std::fs::write(&via_cfg, "[upstream]\ntoken_env = \"AIRGAP_SYNC_TOKEN\"\n").unwrap();
    let npm_only = scratch.path().join("npm.list");
    std::fs::write(
        &npm_only,
        "npm @acme/ui@^1 project=42\nnpm @acme/core@2.0.0 project=42\n",
    )
    .unwrap();
    let before = fake.requests(".tgz");
    let out = packrat(
        &via_cfg,
        &["sync", "--via", online.url(), npm_only.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        fake.requests(".tgz"),
        before + 2,
        "both tarballs pulled into the running packrat"
    );
    let out = packrat(
        &via_cfg,
        &["sync", "--via", online.url(), npm_only.to_str().unwrap()],
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 fetched, 2 already present"));
}

/// A package-lock.json (v3) naming project 42's packages as the fake GitLab serves them.
fn lockfile(fake: &FakeGitlab, entries: &[(&str, &str, Option<&str>)]) -> String {
    let mut packages = serde_json::Map::new();
    let deps: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(n, v, _)| (n.to_string(), serde_json::json!(format!("^{v}"))))
        .collect();
    packages.insert(
        String::new(),
        serde_json::json!({"name": "app", "version": "1.0.0", "dependencies": deps}),
    );
    for (name, version, integrity) in entries {
        let mut e = serde_json::json!({
            "version": version,
            "resolved": format!(
                "{}/api/v4/projects/42/packages/npm/{name}/-/{name}-{version}.tgz",
                fake.url()
            ),
        });
        if let Some(i) = integrity {
            e["integrity"] = serde_json::json!(i);
        }
        packages.insert(format!("node_modules/{name}"), e);
    }
    serde_json::json!({
        "name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
        "packages": packages,
    })
    .to_string()
}

/// Every failure is named and makes sync exit 1: a public Go module whose checksum database
/// lookup fails (the sumdb is down: offline `go mod download` could not verify it), a
/// lockfile entry the upstream does not have, and a tarball that does not match the
/// lockfile's `integrity` (offline `npm ci` would fail with EINTEGRITY). What did work is
/// still synced.
#[tokio::test]
async fn sync_exits_1_naming_each_failure() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    sumdb.go_down().await;
    let (scratch, list, cfg, _dir) = sync_setup(
        &fake,
        &public,
        &sumdb,
        &format!("go {GREET}@v1.1.0\n"),
        free_port(),
    );
    // The real integrity of @acme/core 2.0.0, as npm writes it from GitLab's `shasum`.
    let (_, doc) = crate::support::http::get_json(
        &format!(
            "{}/api/v4/projects/42/packages/npm/@acme%2fcore",
            fake.url()
        ),
        &[("PRIVATE-TOKEN", ALICE_PAT)],
    )
    .await;
    let shasum = doc["versions"]["2.0.0"]["dist"]["shasum"].as_str().unwrap();
    let core_integrity = format!(
        "sha1-{}",
        base64::engine::general_purpose::STANDARD.encode(hex::decode(shasum).unwrap())
    );
    let wrong = format!("sha512-{}==", "A".repeat(86));
    let lock = scratch.path().join("package-lock.json");
    std::fs::write(
        &lock,
        lockfile(
            &fake,
            &[
                ("@acme/core", "2.0.0", Some(&core_integrity)),
                ("@acme/ui", "1.0.0", Some(&wrong)),
                ("@acme/gone", "1.0.0", None),
            ],
        ),
    )
    .unwrap();
    let out = packrat(
        &cfg,
        &["sync", lock.to_str().unwrap(), list.to_str().unwrap()],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let failed = |label: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("failed: {label}: ")))
    };
    assert!(failed(&format!("go {GREET}@v1.1.0")), "{text}");
    assert!(failed("npm @acme/gone@1.0.0"), "{text}");
    assert!(failed("npm @acme/ui@1.0.0"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("failed: npm @acme/ui@1.0.0: ") && l.contains("integrity")),
        "{text}"
    );
    assert!(
        text.contains("4 items: 1 fetched, 0 already present, 3 failed"),
        "{text}"
    );
}

/// The checksum database lookups and tiles sync caches are pinned like the modules
/// themselves: `gc` down to nothing keeps them, and the offline mirror still answers them.
#[tokio::test]
async fn synced_checksum_database_entries_survive_gc() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let port = free_port();
    let (_scratch, list, cfg, dir) = sync_setup(
        &fake,
        &public,
        &sumdb,
        &format!("go {GREET}@v1.1.0\n"),
        port,
    );
    let out = packrat(&cfg, &["sync", list.to_str().unwrap()]).await;
    assert!(out.status.success());
    assert!(packrat(&cfg, &["gc", "--max-size", "0"])
        .await
        .status
        .success());
    sumdb.go_down().await;
    std::fs::write(
        &cfg,
        config(
            &dir,
            port,
            &fake.url(),
            &public.url(),
            &sumdb.url(),
            "[cache]\noffline = true\n",
        ),
    )
    .unwrap();
    let air = start_config(&std::fs::read_to_string(&cfg).unwrap()).await;
    let base = format!("{}/go/sumdb/{}", air.url(), sumdb.name());
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/lookup/{GREET}@v1.1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", air.logs());
    // The record is past the filler: the right-edge tiles of both levels prove it.
    let size = sumdb.size();
    assert!((257..512).contains(&size));
    for tile in [
        format!("tile/8/0/001.p/{}", size - 256),
        "tile/8/1/000.p/1".to_string(),
    ] {
        let r = client.get(format!("{base}/{tile}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{tile}: {}", air.logs());
    }
}

/// A bundle carries no credential, not even a hash (the Packages API index keeps its lists
/// per caller class and per credential hash), yet the offline mirror made from it still
/// answers the synced Packages API listing, to a caller named by `offline.tokens`.
#[tokio::test]
async fn bundles_carry_no_credential_hash_and_still_serve_the_packages_index() {
    use sha2::{Digest as _, Sha256};
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let port = free_port();
    let (scratch, list, cfg, _dir) = sync_setup(
        &fake,
        &public,
        &sumdb,
        "packages project=42\nnpm @acme/ui@1.0.0 project=42\n",
        port,
    );
    assert!(packrat(&cfg, &["sync", list.to_str().unwrap()])
        .await
        .status
        .success());
    let bundle = scratch.path().join("mirror.tar");
    assert!(
        packrat(&cfg, &["export", "--out", bundle.to_str().unwrap()])
            .await
            .status
            .success()
    );
    let bytes = std::fs::read(&bundle).unwrap();
    let contains = |needle: &str| {
        bytes
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    // packrat keys credentials by sha256 over the header name and the secret.
    let mut keyed = Sha256::new();
    keyed.update(b"PRIVATE-TOKEN\0");
    keyed.update(ALICE_PAT.as_bytes());
    keyed.update(b"\0");
    for (what, needle) in [
        ("the sync token", ALICE_PAT.to_string()),
        ("its sha256", hex::encode(Sha256::digest(ALICE_PAT))),
        ("its credential hash", hex::encode(keyed.finalize())),
    ] {
        assert!(!contains(&needle), "the bundle holds {what}");
    }

    let air_dir = scratch.path().join("air");
    let air_cfg = scratch.path().join("air.toml");
    let reader = "offline-reader-token";
    std::fs::write(
        &air_cfg,
        config(
            &air_dir,
            port,
            &fake.url(),
            &public.url(),
            &sumdb.url(),
            &format!(
                "[cache]\noffline = true\n\n[[offline.tokens]]\nsha256 = \"{}\"\nscopes = [\"*\"]\n",
                hex::encode(Sha256::digest(reader))
            ),
        ),
    )
    .unwrap();
    assert!(packrat(&air_cfg, &["import", bundle.to_str().unwrap()])
        .await
        .status
        .success());
    fake.go_down().await;
    let air = start_config(&std::fs::read_to_string(&air_cfg).unwrap()).await;
    let r = reqwest::Client::new()
        .get(format!("{}/api/v4/projects/42/packages", air.url()))
        .header("PRIVATE-TOKEN", reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", air.logs());
    let items: Vec<serde_json::Value> = r.json().await.unwrap();
    assert!(items.iter().any(|i| i["name"] == "@acme/ui"), "{items:?}");
}

/// A sync killed mid-way (`kill -9`, one download still in flight) resumes on the next run:
/// what completed is found present, the rest is fetched, and the run completes.
#[tokio::test]
async fn an_interrupted_sync_resumes_and_completes() {
    const N: usize = 10;
    let mut world = World::standard();
    let mut list = String::new();
    for i in 0..N {
        let name = format!("@acme/resume-{i:02}");
        world.add_npm(42, NpmPkg::new(&name, "1.0.0").size(4 * 1024));
        list.push_str(&format!("npm {name}@1.0.0 project=42\n"));
    }
    let fake = FakeGitlab::start(world).await;
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let slow = format!("resume-{:02}-1.0.0.tgz", N - 1);
    fake.delay_matching(&slow, std::time::Duration::from_secs(3));
    let (_scratch, list_path, cfg, _dir) = sync_setup(&fake, &public, &sumdb, &list, free_port());
    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_packrat"))
        .args(["sync", list_path.to_str().unwrap(), "--config"])
        .arg(&cfg)
        .env("AIRGAP_SYNC_TOKEN", ALICE_PAT)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Every tarball asked for; the fast ones done, the slow one still in flight: kill -9.
    poll::until(
        "sync asked for every tarball",
        std::time::Duration::from_secs(20),
        || fake.requests(".tgz") >= N,
    )
    .await;
    // What completed is durable only once sled's periodic flush (every 500 ms,
    // src/store/index.rs) ran; that timer shows nowhere outside the process, so wait it out.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    first.start_kill().unwrap();
    let status = first.wait().await.unwrap();
    assert!(!status.success(), "killed before it finished");

    let out = packrat(&cfg, &["sync", list_path.to_str().unwrap()]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let counts = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("sync: {N} items: ")))
        .unwrap_or_else(|| panic!("{text}"));
    let number = |after: &str| -> usize {
        counts
            .split(", ")
            .find_map(|part| part.strip_suffix(after))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{text}"))
    };
    let (fetched, present) = (number(" fetched"), number(" already present"));
    assert!(
        present >= 1,
        "what completed before the kill is kept: {text}"
    );
    assert!(
        fetched >= 1,
        "the interrupted download is fetched again: {text}"
    );
    assert_eq!(fetched + present, N, "{text}");
    assert_eq!(number(" failed"), 0, "{text}");
    let out = packrat(&cfg, &["sync", list_path.to_str().unwrap()]).await;
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&format!("{N} items: 0 fetched, {N} already present")));
}

/// An offline.tokens scope names a project by id or by path, and covers it under either
/// name once a synced Packages API listing told packrat that project 42 is `acme/web`.
#[tokio::test]
async fn offline_scopes_match_a_project_by_id_or_path() {
    use sha2::{Digest as _, Sha256};
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let port = free_port();
    let (_scratch, list, cfg, dir) = sync_setup(
        &fake,
        &public,
        &sumdb,
        "packages project=42\nnpm @acme/ui@1.0.0 project=acme/web\n",
        port,
    );
    assert!(packrat(&cfg, &["sync", list.to_str().unwrap()])
        .await
        .status
        .success());
    let tokens: String = [("by-id", "42"), ("by-path", "acme/web"), ("other", "7")]
        .iter()
        .map(|(t, scope)| {
            format!(
                "[[offline.tokens]]\nsha256 = \"{}\"\nscopes = [\"{scope}\"]\n\n",
                hex::encode(Sha256::digest(t))
            )
        })
        .collect();
    std::fs::write(
        &cfg,
        config(
            &dir,
            port,
            &fake.url(),
            &public.url(),
            &sumdb.url(),
            &format!("[cache]\noffline = true\n\n{tokens}"),
        ),
    )
    .unwrap();
    fake.go_down().await;
    let air = start_config(&std::fs::read_to_string(&cfg).unwrap()).await;
    let client = reqwest::Client::new();
    let status = |path: &'static str, token: &'static str| {
        let req = client
            .get(format!("{}{path}", air.url()))
            .header("PRIVATE-TOKEN", token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let by_id = "/api/v4/projects/42/packages";
    let by_path = "/api/v4/projects/acme%2Fweb/packages/npm/@acme%2fui";
    assert_eq!(status(by_id, "by-id").await, 200, "{}", air.logs());
    assert_eq!(status(by_path, "by-path").await, 200, "{}", air.logs());
    assert_eq!(
        status(by_id, "by-path").await,
        200,
        "a path scope covers the id"
    );
    assert_eq!(
        status(by_path, "by-id").await,
        200,
        "an id scope covers the path"
    );
    assert_eq!(status(by_id, "other").await, 401);
    assert_eq!(status(by_path, "other").await, 401);
}
