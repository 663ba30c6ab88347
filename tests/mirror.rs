//! The offline maintenance commands on a real data directory: export (full and --since),
//! import (verified; corrupt and truncated bundles rejected cleanly), verify (quarantine),
//! gc (LRU, pinned blobs kept), and the data-directory lock against a running serve.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fake_gitlab::world::ALICE_PAT;
use crate::support::fake_gitlab::{FakeGitlab, World};
use crate::support::files::walk;
use crate::support::http::get_as_alice;
use crate::support::packrat::Packrat;
use crate::support::poll;

fn packrat_cmd(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_packrat"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A config for an offline command on `dir`.
fn config_for(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.with_extension("toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\ndir = {:?}\n[upstream]\nurl = \"http://127.0.0.1:9\"\n{extra}",
            dir.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else if e.file_name() != "packrat.lock" {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Warm a packrat with npm metadata and tarballs, stop it, return its data directory copy.
async fn warmed(versions: &[&str], scratch: &Path) -> PathBuf {
    let fake = FakeGitlab::start(World::standard()).await;
    let mut packrat = Packrat::start(&fake.url(), "").await;
    let client = reqwest::Client::new();
    let packument = format!(
        "{}/api/v4/projects/42/packages/npm/@acme%2fui",
        packrat.url()
    );
    let meta: serde_json::Value = get_as_alice(&client, packument).await.json().await.unwrap();
    for v in versions {
        let url = meta["versions"][v]["dist"]["tarball"].as_str().unwrap();
        let r = get_as_alice(&client, url).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    packrat.stop().await;
    let dir = scratch.join("source");
    copy_dir(packrat.data_dir(), &dir);
    dir
}

#[tokio::test]
async fn export_import_round_trip_and_damaged_bundles_are_rejected() {
    let scratch = tempfile::tempdir().unwrap();
    let src = warmed(&["1.0.0"], scratch.path()).await;
    let src_cfg = config_for(&src, "");
    let full = scratch.path().join("full.tar");
    let out = packrat_cmd(&src_cfg, &["export", "--out", full.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // A fresh data dir takes the bundle; a second import is harmless; verify is clean.
    let dst = scratch.path().join("dst");
    let dst_cfg = config_for(&dst, "");
    for _ in 0..2 {
        let out = packrat_cmd(&dst_cfg, &["import", full.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = packrat_cmd(&dst_cfg, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 faults"), "{}", text(&out));

    // One flipped byte, or a truncated file: rejected, and the target is left as it was.
    let bytes = std::fs::read(&full).unwrap();
    let mut flipped = bytes.clone();
    let at = flipped.len() - 2048; // inside the last blob
    flipped[at] ^= 0x01;
    let bad = scratch.path().join("flipped.tar");
    std::fs::write(&bad, &flipped).unwrap();
    let truncated = scratch.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let fresh = scratch.path().join("fresh");
    let fresh_cfg = config_for(&fresh, "");
    for b in [&bad, &truncated] {
        let out = packrat_cmd(&fresh_cfg, &["import", b.to_str().unwrap()]);
        assert!(!out.status.success(), "{} must be rejected", b.display());
        let t = text(&out);
        assert!(t.contains("damaged") || t.contains("truncated"), "{t}");
        let blobs: Vec<_> = walk(&fresh.join("blobs-v1"));
        assert!(blobs.is_empty(), "nothing became visible: {blobs:?}");
        assert!(walk(&fresh.join("tmp")).is_empty(), "staging cleaned up");
    }
}

#[tokio::test]
async fn incremental_export_holds_only_new_blobs() {
    let scratch = tempfile::tempdir().unwrap();
    let one = warmed(&["1.0.0"], &scratch.path().join("a")).await;
    let both = warmed(&["1.0.0", "1.1.0"], &scratch.path().join("b")).await;
    let first = scratch.path().join("first.tar");
    let second = scratch.path().join("second.tar");
    assert!(packrat_cmd(
        &config_for(&one, ""),
        &["export", "--out", first.to_str().unwrap()]
    )
    .status
    .success());
    let out = packrat_cmd(
        &config_for(&both, ""),
        &[
            "export",
            "--out",
            second.to_str().unwrap(),
            "--since",
            first.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let m1 = packrat::bundle::read_manifest(&first).unwrap();
    let m2 = packrat::bundle::read_manifest(&second).unwrap();
    let in_first: std::collections::HashSet<_> =
        m1.blobs.iter().map(|b| b.sha256.clone()).collect();
    assert!(m2.incremental);
    assert!(
        m2.blobs.iter().all(|b| !in_first.contains(&b.sha256)),
        "only new blobs"
    );
    assert!(
        m2.blobs.iter().any(|b| b.size > 100),
        "the new tarball is in it"
    );

    // The increment alone is refused on an empty mirror; after the base it imports.
    let dst = scratch.path().join("dst");
    let cfg = config_for(&dst, "");
    let out = packrat_cmd(&cfg, &["import", second.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("import the bundle it was made --since first"),
        "{}",
        text(&out)
    );
    assert!(packrat_cmd(&cfg, &["import", first.to_str().unwrap()])
        .status
        .success());
    let out = packrat_cmd(&cfg, &["import", second.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(packrat_cmd(&cfg, &["verify"]).status.success());
}

#[tokio::test]
async fn verify_quarantines_a_corrupted_blob_and_gc_evicts_lru() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = warmed(&["1.0.0", "1.1.0"], scratch.path()).await;
    let cfg = config_for(&dir, "");
    // Corrupt the largest blob (a tarball or metadata variant).
    let mut blobs = walk(&dir.join("blobs-v1"));
    blobs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = blobs.last().unwrap().clone();
    let mut b = std::fs::read(&victim).unwrap();
    b[0] ^= 0xff;
    std::fs::write(&victim, b).unwrap();
    let out = packrat_cmd(&cfg, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bad blob"), "{}", text(&out));
    assert!(!victim.exists(), "moved out of the store");
    assert_eq!(walk(&dir.join("quarantine")).len(), 1);
    let out = packrat_cmd(&cfg, &["verify"]);
    assert!(out.status.success(), "clean after repair: {}", text(&out));

    let out = packrat_cmd(&cfg, &["gc", "--max-size", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("evicted"), "{}", text(&out));
    assert!(
        packrat_cmd(&cfg, &["verify"]).status.success(),
        "gc leaves a consistent index"
    );
}

/// Every command that owns the data directory (sync, export, import, gc, verify) fails fast
/// with one clear sentence while a running serve holds it.
#[tokio::test]
async fn offline_commands_refuse_a_data_dir_held_by_serve() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let scratch = tempfile::tempdir().unwrap();
    let cfg = config_for(packrat.data_dir(), "");
    let list = scratch.path().join("packrat.list");
    std::fs::write(&list, "npm @acme/ui@1.0.0 project=42\n").unwrap();
    let bundle = scratch.path().join("mirror.tar");
    let (list, bundle) = (list.to_str().unwrap(), bundle.to_str().unwrap());
    for args in [
        vec!["sync", list],
        vec!["export", "--out", bundle],
        vec!["import", bundle],
        vec!["gc", "--max-size", "1"],
        vec!["verify"],
        vec!["pins"],
    ] {
        let out = packrat_cmd(&cfg, &args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("in use by another packrat process"),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert!(
        !Path::new(bundle).exists(),
        "no bundle written from a held directory"
    );
}

/// Access times, not fetch times, decide what goes: three tarballs fetched in order a, b, c,
/// then `a` read again, then gc to a size that fits two: `b` (fetched after `a`, but now the
/// least recently used) is evicted. A blob `sync` pinned stays unless `--include-pinned`.
#[tokio::test]
async fn gc_evicts_least_recently_used_and_keeps_pinned() {
    let fake = FakeGitlab::start(World::standard()).await;
    let mut packrat = Packrat::start(&fake.url(), "").await;
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let r = get_as_alice(&client, &url).await;
            assert_eq!(r.status(), 200, "{url}");
            r.bytes().await.unwrap().len() as u64
        }
    };
    let base = format!("{}/api/v4/projects/42/packages/npm", packrat.url());
    let tarball = |name: &str, v: &str| format!("{base}/{name}/-/{name}-{v}.tgz");
    for meta in ["@acme%2fui", "@acme%2fcore"] {
        get(format!("{base}/{meta}")).await;
    }
    let order = [
        ("@acme/ui", "1.0.0"),
        ("@acme/ui", "1.1.0"),
        ("@acme/core", "2.0.0"),
    ];
    let mut sizes = Vec::new();
    for (n, v) in order {
        sizes.push(get(tarball(n, v)).await);
        // Each fetch gets an access time of its own (unix ms).
        poll::next_millisecond().await;
    }
    // A cache hit on the oldest fetch makes it the most recently used.
    get(tarball(order[0].0, order[0].1)).await;
    packrat.stop().await; // flushes the batched access times
    let dir = packrat.data_dir().to_path_buf();
    let cfg = config_for(&dir, "");
    let blobs_size: u64 = walk(&dir.join("blobs-v1"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // Room for everything but one tarball: the least recently used one.
    let target = blobs_size - sizes[1];
    let out = packrat_cmd(&cfg, &["gc", "--max-size", &target.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("evicted 1 blobs"), "{}", text(&out));
    packrat.restart().await;
    let lru = get_as_alice(&client, tarball(order[1].0, order[1].1)).await;
    assert_eq!(
        lru.headers()["x-packrat-cache"],
        "miss",
        "the least recently used was evicted"
    );
    for (n, v) in [order[0], order[2]] {
        let r = get_as_alice(&client, tarball(n, v)).await;
        assert_eq!(r.headers()["x-packrat-cache"], "hit", "{n}@{v} kept");
    }
    packrat.stop().await;
    // A sync pin keeps a blob through gc, unless --include-pinned.
    let list = dir.with_extension("list");
    std::fs::write(&list, "npm @acme/core@2.0.0 project=42\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[storage]\ndir = {:?}\n[upstream]\nurl = \"{}\"\n",
            dir.display().to_string(),
            fake.url()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_packrat"))
        .args([
            "sync",
            list.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env("PACKRAT_UPSTREAM_TOKEN", ALICE_PAT)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = packrat_cmd(&cfg, &["gc", "--max-size", "1"]);
    assert!(text(&out).contains("kept 1 pinned"), "{}", text(&out));
    let out = packrat_cmd(&cfg, &["gc", "--max-size", "1", "--include-pinned"]);
    assert!(text(&out).contains("kept 0 pinned"), "{}", text(&out));
    assert!(packrat_cmd(&cfg, &["verify"]).status.success());
}

/// `serve` runs the same eviction in the background (at start-up, then every 30 s) once the
/// store has grown past `storage.max_size`: the least recently used tarball goes.
#[tokio::test]
async fn serve_evicts_in_the_background_past_max_size() {
    let fake = FakeGitlab::start(World::standard()).await;
    let mut packrat = Packrat::start(&fake.url(), "").await;
    let client = reqwest::Client::new();
    let base = format!("{}/api/v4/projects/42/packages/npm", packrat.url());
    let tarball = |name: &str, v: &str| format!("{base}/{name}/-/{name}-{v}.tgz");
    let get = |url: String| {
        let client = client.clone();
        async move {
            let r = get_as_alice(&client, &url).await;
            assert_eq!(r.status(), 200, "{url}");
            let cache = r.headers()["x-packrat-cache"].to_str().unwrap().to_string();
            r.bytes().await.unwrap();
            cache
        }
    };
    for meta in ["@acme%2fui", "@acme%2fcore"] {
        get(format!("{base}/{meta}")).await;
    }
    let order = [
        ("@acme/ui", "1.0.0"),
        ("@acme/ui", "1.1.0"),
        ("@acme/core", "2.0.0"),
    ];
    for (n, v) in order {
        get(tarball(n, v)).await;
        // Each fetch gets an access time of its own (unix ms).
        poll::next_millisecond().await;
    }
    packrat.stop().await; // flushes the batched access times
    let blobs_size: u64 = walk(&packrat.data_dir().join("blobs-v1"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // One byte too many: the background eviction removes one tarball.
    packrat
        .restart_replacing(
            "[storage]\n",
            &format!("[storage]\nmax_size = \"{}\"\n", blobs_size - 1),
        )
        .await;
    assert!(
        packrat
            .wait_for_log(&["evicted least-recently-used blobs"], poll::DEADLINE)
            .await,
        "no background eviction: {}",
        packrat.logs()
    );
    let after: u64 = walk(&packrat.data_dir().join("blobs-v1"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(after < blobs_size, "{after} bytes left of {blobs_size}");
    for (n, v) in [order[1], order[2]] {
        assert_eq!(get(tarball(n, v)).await, "hit", "{n}@{v} kept");
    }
    assert_eq!(
        get(tarball(order[0].0, order[0].1)).await,
        "miss",
        "the least recently used was evicted"
    );
}

/// `kill -9` while downloads are in flight, then `verify`: nothing is wrong (partial
/// downloads only ever lived in tmp/, and the store cleans tmp/ when it opens).
#[tokio::test]
async fn verify_after_kill_9_during_downloads_finds_nothing_wrong() {
    let fake = FakeGitlab::start(World::standard()).await;
    let mut packrat = Packrat::start(&fake.url(), "").await;
    let client = reqwest::Client::new();
    let base = format!("{}/api/v4/projects/42/packages/npm", packrat.url());
    for meta in ["@acme%2fui", "@acme%2futils", "@acme%2fcore"] {
        get_as_alice(&client, format!("{base}/{meta}")).await;
    }
    fake.delay_matching(".tgz", std::time::Duration::from_millis(300));
    for (n, v) in [
        ("@acme/ui", "1.0.0"),
        ("@acme/ui", "1.1.0"),
        ("@acme/utils", "1.0.0"),
        ("@acme/core", "2.0.0"),
    ] {
        let url = format!("{base}/{n}/-/{n}-{v}.tgz");
        let c = client.clone();
        tokio::spawn(async move {
            let _ = c.get(url).header("PRIVATE-TOKEN", ALICE_PAT).send().await;
        });
    }
    // Every download in flight: GitLab holds each answer for 300 ms.
    poll::until("GitLab was asked for every tarball", poll::DEADLINE, || {
        fake.requests(".tgz") >= 4
    })
    .await;
    packrat.kill_9().await;
    let cfg = config_for(packrat.data_dir(), "");
    let out = packrat_cmd(&cfg, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 faults"), "{}", text(&out));
}

/// A tarball whose bytes are self-consistent (stored under their own sha256) but are not what
/// the packument's shasum says — what a forged bundle imported by an older packrat, or a
/// forger with disk access, leaves — is found by `verify`, quarantined and unindexed.
#[tokio::test]
async fn verify_checks_tarballs_against_their_packument() {
    use packrat::store::{BlobEntry, Store, Tree};
    let scratch = tempfile::tempdir().unwrap();
    let dir = warmed(&["1.0.0"], scratch.path()).await;
    let cfg = config_for(&dir, "");
    assert!(packrat_cmd(&cfg, &["verify"]).status.success());
    {
        let store = Store::open(&dir).unwrap();
        let (entries, _) = store.index.scan_all::<BlobEntry>(Tree::Blobs).unwrap();
        let (key, mut entry) = entries
            .into_iter()
            .find(|(k, _)| k.starts_with("npm-tgz:") && k.ends_with("ui-1.0.0.tgz"))
            .expect("the tarball's index entry");
        let forged = store.blobs.put_bytes(b"not the package").await.unwrap();
        entry.digest = forged.digest;
        entry.size = forged.len;
        store.index.put(Tree::Blobs, &key, &entry).unwrap();
        store.index.flush().await.unwrap();
    }
    let out = packrat_cmd(&cfg, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("disagrees with the shasum/integrity of its packument"),
        "{}",
        text(&out)
    );
    assert_eq!(walk(&dir.join("quarantine")).len(), 1);
    let out = packrat_cmd(&cfg, &["verify"]);
    assert!(out.status.success(), "clean after repair: {}", text(&out));
}
