//! Offline mode: an offline mirror serves what its index holds and never contacts any
//! upstream (the fake counts connections); access by offline.tokens; misses are 404, writes 503.

use sha2::{Digest as _, Sha256};

use crate::support::clients::{describe, Npm};
use crate::support::fake_gitlab::world::ALICE_PAT;
use crate::support::fake_gitlab::{FakeGitlab, World};
use crate::support::packrat::Packrat;
use crate::support::require_tool;

const MIRROR_TOKEN: &str = "mirror-reader-token";

#[tokio::test]
async fn an_offline_mirror_serves_npm_from_its_index_without_any_connection() {
    require_tool!("npm");
    let fake = FakeGitlab::start(World::standard()).await;
    let mut packrat = Packrat::start(&fake.url(), "").await;
    let npm = Npm::new();
    let registry = format!("{}/api/v4/projects/42/packages/npm/", packrat.url());
    npm.scope_registry("@acme", &registry);
    npm.auth_token(&format!("{}/", packrat.url()), ALICE_PAT);
    npm.write_package_json(&[("@acme/ui", "^1.0.0")]);
    let out = npm.run(&["install", "--no-audit", "--no-fund"]).await;
    assert!(out.status.success(), "warm-up install: {}", describe(&out));

    // Same data, offline, one reader token for everything.
    let sha = hex::encode(Sha256::digest(MIRROR_TOKEN.as_bytes()));
    packrat
        .restart_with(&format!(
            "[cache]\noffline = true\n\n[[offline.tokens]]\nsha256 = \"{sha}\"\nscopes = [\"*\"]\n"
        ))
        .await;
    let connections_before = fake.connections();

    let npm = Npm::new();
    npm.scope_registry("@acme", &registry);
    npm.auth_token(&format!("{}/", packrat.url()), MIRROR_TOKEN);
    npm.write_package_json(&[("@acme/ui", "^1.0.0")]);
    let out = npm.run(&["install", "--no-audit", "--no-fund"]).await;
    assert!(
        out.status.success(),
        "offline install: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    assert_eq!(
        npm.installed_version("@acme/core").as_deref(),
        Some("2.0.0")
    );

    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut rb = client.get(format!("{}{path}", packrat.url()));
        if let Some(t) = token {
            rb = rb.header("PRIVATE-TOKEN", t);
        }
        rb.send()
    };
    // Not synced: a fast 404 saying so.
    let r = get(
        "/api/v4/projects/42/packages/npm/@acme%2fnever",
        Some(MIRROR_TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("offline mirror does not hold"),
        "{body}"
    );
    // Wrong or no token: refused.
    assert_eq!(
        get("/api/v4/projects/42/packages/npm/@acme%2fui", None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get(
            "/api/v4/projects/42/packages/npm/@acme%2fui",
            Some(ALICE_PAT)
        )
        .await
        .unwrap()
        .status(),
        401
    );
    // Writes: 503.
    let r = client
        .put(format!(
            "{}/api/v4/projects/42/packages/npm/@acme%2fui",
            packrat.url()
        ))
        .header("PRIVATE-TOKEN", MIRROR_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    assert_eq!(
        fake.connections(),
        connections_before,
        "an offline mirror never connects upstream"
    );
}
