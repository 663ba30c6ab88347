//! The whole air-gap workflow with real clients: a lockfile made through a connected packrat,
//! `packrat sync` into a fresh data directory (npm lockfile + go.mod/go.sum, with checksum
//! database lookups and tiles), `export`, `import` into another fresh directory, then an
//! offline packrat on the same address with every upstream stopped: the real `npm ci` and the
//! real `go mod download` (GOSUMDB verifying through `/go/sumdb/`) succeed.

use std::path::Path;
use std::time::Instant;

use crate::go_proxy::{expected_go_sum, APP_GO_MOD, APP_MAIN_GO, APP_OUTPUT, GO_MODULES};
use crate::support::clients::{describe, require_tool, Go, Npm};
use crate::support::fake_gitlab::world::NpmPkg;
use crate::support::fake_gitlab::{FakeGitlab, World, ALICE_PAT};
use crate::support::fake_sumdb::{entries_for, FakeSumdb};
use crate::support::packrat::Packrat;

/// Extra packages so the lockfile has a few dozen entries.
const GENERATED: usize = 30;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, port: u16, upstream: &str, sumdb: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[storage]\ndir = {:?}\n\n[upstream]\nurl = \"{upstream}\"\ntoken_env = \"AIRGAP_SYNC_TOKEN\"\n\n{extra}\n[forwarding]\ngo_sumdb = \"{sumdb}\"\n\n{GO_MODULES}",
        dir.display().to_string()
    )
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

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn sync_export_import_then_npm_ci_and_go_mod_download_offline() {
    if !require_tool("npm") || !require_tool("go") {
        return;
    }
    let mut world = World::standard();
    let mut deps = vec![("@acme/ui".to_string(), "^1.0.0".to_string())];
    for i in 0..GENERATED {
        let name = format!("@acme/gen-{i:02}");
        world.add_npm(42, NpmPkg::new(&name, "1.0.0").size(8 * 1024));
        deps.push((name, "^1.0.0".into()));
    }
    let sumdb = FakeSumdb::start(&entries_for(&world)).await;
    let fake = FakeGitlab::start(world).await;
    let port = free_port();
    let scratch = tempfile::tempdir().unwrap();
    let registry = format!("http://127.0.0.1:{port}/api/v4/projects/42/packages/npm/");

    // 1. On the connected side, a developer's lockfile made through packrat.
    let edge_dir = scratch.path().join("edge-data");
    let mut edge =
        Packrat::start_with_config(&config(&edge_dir, port, &fake.url(), &sumdb.url(), "")).await;
    let npm = Npm::new().expect("npm");
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
    std::fs::write(gomod_dir.join("go.sum"), expected_go_sum(&fake)).unwrap();

    // 2. sync into a fresh data directory, then export.
    let sync_dir = scratch.path().join("sync-data");
    let sync_cfg = scratch.path().join("sync.toml");
    std::fs::write(
        &sync_cfg,
        config(&sync_dir, port, &fake.url(), &sumdb.url(), ""),
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
    let air = Packrat::start_with_config(&std::fs::read_to_string(&air_cfg).unwrap()).await;

    let npm2 = Npm::new().expect("npm");
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

    let mut go = Go::new().expect("go");
    go.env("GOPROXY", &format!("{}/go", air.url()))
        .env(
            "GOSUMDB",
            &sumdb.gosumdb(&format!("{}/go/sumdb/{}", air.url(), sumdb.name())),
        )
        .env("GONOSUMDB", "");
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
    // Every hash was checked against the checksum database served by the mirror.
    assert_eq!(
        go.go_sum().unwrap(),
        expected_go_sum(&fake),
        "verified through the mirror's sumdb"
    );
    assert_eq!(
        fake.connections(),
        connections,
        "the offline mirror never connected upstream"
    );

    eprintln!(
        "AIRGAP FIGURES: sync {sync_secs:.2}s into {} bytes; bundle {} bytes, export {export_secs:.2}s, import {import_secs:.2}s; offline npm ci ({} packages) {npm_ci_secs:.2}s; offline go mod download {go_secs:.2}s",
        dir_size(&sync_dir),
        std::fs::metadata(&bundle).unwrap().len(),
        GENERATED + 3,
    );
}
