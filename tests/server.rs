//! The server as an operator sees it: HTTPS, crash recovery, graceful shutdown, config errors,
//! GitLab's forwarding redirect.

use std::time::Duration;

use crate::support::fake_gitlab::{FakeGitlab, World};
use crate::support::fake_public_npm::{FakePublicNpm, PublicPkg};
use crate::support::http::get_as_alice as get;
use crate::support::packrat::{Packrat, TestCert, OPS_TOKEN};
use crate::support::poll;

const UI_META: &str = "/api/v4/projects/42/packages/npm/@acme%2fui";

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let fake = FakeGitlab::start(World::standard()).await;
    let cert = TestCert::new();
    let packrat = Packrat::builder()
        .upstream(&fake.url())
        .tls(&cert)
        .start()
        .await;
    assert!(packrat.url().starts_with("https://"), "{}", packrat.url());
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = get(&client, &format!("{}{UI_META}", packrat.url())).await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap();
    assert!(tarball.starts_with("https://127.0.0.1:"), "{tarball}");
    assert_eq!(get(&client, tarball).await.status(), 200);
}

#[tokio::test]
async fn a_killed_server_restarts_on_its_data_and_serves_from_cache() {
    let fake = FakeGitlab::start(World::standard()).await;
    let mut packrat = Packrat::start(
        &fake.url(),
        "[cache]\nauth_ttl = \"1h\"\nmetadata_ttl = \"1h\"\n",
    )
    .await;
    let client = reqwest::Client::new();
    let doc: serde_json::Value = get(&client, &format!("{}{UI_META}", packrat.url()))
        .await
        .json()
        .await
        .unwrap();
    let tarball = doc["versions"]["1.1.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    let first = get(&client, &tarball).await.bytes().await.unwrap();
    // Let the index's periodic flush run, then kill -9: no chance to clean up. The flush is
    // sled's own timer (every 500 ms, src/store/index.rs) and shows nowhere outside the
    // process, so this one waits out the timer with a margin rather than polling.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    packrat.kill_9().await;
    packrat.restart().await;
    fake.go_down().await;
    let tarball = tarball.replace(tarball.split("/api/").next().unwrap(), packrat.url());
    let r = get(&client, &tarball).await;
    assert_eq!(r.status(), 200, "{}", packrat.logs());
    assert_eq!(r.headers()["x-packrat-cache"], "hit");
    assert_eq!(r.bytes().await.unwrap(), first);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let fake = FakeGitlab::start(World::standard()).await;
    let mut packrat = Packrat::start(&fake.url(), "").await;
    fake.delay(Duration::from_millis(1500));
    let url = format!("{}{UI_META}", packrat.url());
    let before = fake.requests_total();
    let pending = tokio::spawn(async move { get(&reqwest::Client::new(), &url).await.status() });
    // In flight: GitLab has the request and holds its answer for 1.5 s.
    poll::until("the request reached GitLab", poll::DEADLINE, || {
        fake.requests_total() > before
    })
    .await;
    let exit = packrat.stop().await;
    assert_eq!(
        pending.await.unwrap(),
        200,
        "the in-flight request finished"
    );
    assert!(exit.is_some_and(|s| s.success()), "clean exit: {exit:?}");
    assert!(
        packrat.logs().contains("index flushed"),
        "{}",
        packrat.logs()
    );
}

#[tokio::test]
async fn gitlab_forwarding_to_a_public_registry_is_not_found() {
    let fake = FakeGitlab::start(World::standard()).await;
    fake.forward_to_public("@acme/ghost");
    let packrat = Packrat::start(&fake.url(), "").await;
    let r = get(
        &reqwest::Client::new(),
        &format!(
            "{}/api/v4/projects/42/packages/npm/@acme%2fghost",
            packrat.url()
        ),
    )
    .await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "404 Packages Not Found");
}

/// GitLab's forwarding under any path prefix, the scope encoded, and for tarballs: never
/// followed (no `[forwarding]` here, so only the path can tell), never cached, never pinned.
#[tokio::test]
async fn gitlab_forwarding_under_a_prefix_and_for_tarballs_is_not_found() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicNpm::start().await;
    public.publish(PublicPkg::new("@acme/x", "1.0.0").exports("EVIL"));
    fake.forward_to(&format!("{}/some/prefix", public.url()));
    fake.forward_to_public("@acme/x");
    let packrat = Packrat::start(&fake.url(), "").await;
    let client = reqwest::Client::new();
    let url = packrat.url();
    let r = get(
        &client,
        &format!("{url}/api/v4/projects/42/packages/npm/@acme%2fx"),
    )
    .await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "404 Packages Not Found");

    // A tarball GitLab forwards (its packument still fresh in packrat's cache).
    let doc: serde_json::Value = get(&client, &format!("{url}{UI_META}"))
        .await
        .json()
        .await
        .unwrap();
    let tgz = doc["versions"]["1.1.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    fake.forward_to_public("@acme/ui");
    assert_eq!(get(&client, &tgz).await.status(), 404);
    assert_eq!(public.requests_total(), 0, "{:?}", public.request_log());

    let (_, pins) =
        crate::support::http::get_json(&format!("{url}/-/pins"), &[("PRIVATE-TOKEN", OPS_TOKEN)])
            .await;
    assert!(
        !pins["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "@acme/x"),
        "{pins}"
    );
}

#[test]
fn config_errors_exit_2_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[cache]\nmetadata_ttl = \"5x\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_packrat"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cache.metadata_ttl") && err.contains("bad.toml"),
        "{err}"
    );

    std::fs::write(&cfg, "[server]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_packrat"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.lisen"));
}
