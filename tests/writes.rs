//! Writes through packrat: npm publish, deprecate and dist-tags, package and file deletes.
//! They reach GitLab with the client's credential, GitLab's answer comes back unchanged, and
//! only its success changes packrat's state, at once (no TTL wait).

use base64::Engine as _;
use serde_json::{json, Value};
use sha1::{Digest as _, Sha1};

use crate::support::clients::{describe, Npm};
use crate::support::fake_gitlab::world::{ALICE_PAT, GUEST_PAT, MAINT_PAT};
use crate::support::fake_gitlab::{FakeGitlab, PkgSpec, World};
use crate::support::packrat::Packrat;
use crate::support::require_tool;

const PROJECT_NPM: &str = "/api/v4/projects/42/packages/npm";
const UI_META: &str = "/api/v4/projects/42/packages/npm/@acme%2fui";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn send(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> reqwest::Response {
    let mut rb = client().request(method, url);
    if let Some(t) = token {
        rb = rb.header("PRIVATE-TOKEN", t);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b);
    }
    rb.send().await.unwrap()
}

async fn get_json(url: &str, token: &str) -> (u16, Value, String) {
    let r = send(reqwest::Method::GET, url, Some(token), None).await;
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-packrat-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, r.json().await.unwrap_or(Value::Null), cache)
}

fn versions(doc: &Value) -> Vec<String> {
    doc["versions"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// An npm publish body for `@acme/ui@<version>` with a tarball of `tarball` bytes.
fn publish_body(version: &str, tarball: &[u8]) -> Vec<u8> {
    let file = format!("@acme/ui-{version}.tgz");
    serde_json::to_vec(&json!({
        "_id": "@acme/ui",
        "name": "@acme/ui",
        "dist-tags": {"latest": version},
        "versions": {version: {
            "name": "@acme/ui",
            "version": version,
            "dist": {"shasum": hex::encode(Sha1::digest(tarball)), "tarball": format!("http://x/{file}")},
        }},
        "_attachments": {file: {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tarball),
            "length": tarball.len(),
        }},
    }))
    .unwrap()
}

fn npm_for(packrat: &Packrat, token: &str) -> Npm {
    let npm = Npm::new();
    npm.scope_registry("@acme", &format!("{}{PROJECT_NPM}/", packrat.url()));
    npm.auth_token(&format!("{}/", packrat.url()), token);
    // `npm publish` wants the credential of the exact registry URL.
    npm.auth_token(&format!("{}{PROJECT_NPM}/", packrat.url()), token);
    npm
}

#[tokio::test]
async fn npm_publish_through_packrat_is_installable_at_once() {
    require_tool!("npm");
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let npm = npm_for(&packrat, ALICE_PAT);
    // Prime the cache: the packument is fresh for metadata_ttl (5 minutes).
    let out = npm
        .run_ok(&["view", "@acme/ui", "versions", "--json"])
        .await;
    assert!(!String::from_utf8_lossy(&out.stdout).contains("1.2.0"));

    let dir = npm.root().join("publish-me");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("package.json"),
        r#"{"name":"@acme/ui","version":"1.2.0","main":"index.js","license":"MIT"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("index.js"), "module.exports = '@acme/ui@1.2.0';\n").unwrap();
    let out = npm.run(&["publish", dir.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "publish: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    let calls: Vec<String> = fake
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/packages/npm/@acme%2fui"))
        .map(|r| r.method.clone())
        .collect();
    // npm view, the publish, and packrat's refetch that learns the new tarball's URL.
    assert_eq!(calls, ["GET", "PUT", "GET"]);
    assert!(fake.with_world(|w| w
        .npm
        .iter()
        .any(|r| r.name == "@acme/ui" && r.version == "1.2.0")));

    // No TTL wait: view and install see it now.
    let out = npm.run_ok(&["view", "@acme/ui", "dist-tags.latest"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.2.0");
    npm.write_package_json(&[("@acme/ui", "1.2.0")]);
    let out = npm.run(&["install", "--no-audit", "--no-fund"]).await;
    assert!(
        out.status.success(),
        "install: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    assert_eq!(npm.installed_version("@acme/ui").as_deref(), Some("1.2.0"));
    assert!(npm.require("@acme/ui").await.contains("@acme/ui@1.2.0"));
    // The tarball came from the publish body: GitLab was never asked for it.
    assert_eq!(
        fake.requests("@acme/ui-1.2.0.tgz"),
        0,
        "{:#?}",
        fake.request_log()
    );
    let (_, doc, _) = get_json(&format!("{}{UI_META}", packrat.url()), ALICE_PAT).await;
    let tarball = doc["versions"]["1.2.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(reqwest::Method::GET, &tarball, Some(ALICE_PAT), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-packrat-cache"], "hit");
    let expected = fake.with_world(|w| {
        w.npm
            .iter()
            .find(|r| r.name == "@acme/ui" && r.version == "1.2.0")
            .unwrap()
            .tarball
            .clone()
    });
    assert_eq!(r.bytes().await.unwrap(), expected);
    assert!(
        !packrat.logs().contains(ALICE_PAT),
        "the token never reaches the logs"
    );
}

#[tokio::test]
async fn npm_dist_tag_add_ls_rm_through_packrat() {
    require_tool!("npm");
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let npm = npm_for(&packrat, MAINT_PAT);
    let ls = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();
    let before = ls(npm.run_ok(&["dist-tag", "ls", "@acme/ui"]).await);
    assert_eq!(before.trim(), "latest: 1.1.0");

    let out = npm
        .run(&["dist-tag", "add", "@acme/ui@1.0.0", "stable"])
        .await;
    assert!(
        out.status.success(),
        "add: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    let after_add = ls(npm.run_ok(&["dist-tag", "ls", "@acme/ui"]).await);
    assert!(after_add.contains("stable: 1.0.0"), "{after_add}");
    assert!(after_add.contains("latest: 1.1.0"), "{after_add}");
    let out = npm.run_ok(&["view", "@acme/ui", "dist-tags.stable"]).await;
    assert_eq!(ls(out).trim(), "1.0.0");

    let out = npm.run(&["dist-tag", "rm", "@acme/ui", "stable"]).await;
    assert!(
        out.status.success(),
        "rm: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    let after_rm = ls(npm.run_ok(&["dist-tag", "ls", "@acme/ui"]).await);
    assert_eq!(after_rm.trim(), "latest: 1.1.0");
    assert_eq!(
        fake.with_world(|w| w.npm_dist_tags(42, "@acme/ui").len()),
        1
    );
}

#[tokio::test]
async fn dist_tag_writes_at_the_group_and_instance_prefixes() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    for (prefix, tag) in [
        ("/api/v4/groups/acme/-/packages/npm", "beta"),
        ("/api/v4/packages/npm", "next"),
    ] {
        let tags_url = format!("{}{prefix}/-/package/@acme%2fui/dist-tags", packrat.url());
        let (status, tags, _) = get_json(&tags_url, MAINT_PAT).await;
        assert_eq!(status, 200);
        assert!(tags.get(tag).is_none());
        let r = send(
            reqwest::Method::PUT,
            &format!("{tags_url}/{tag}"),
            Some(ALICE_PAT),
            Some(b"\"1.0.0\"".to_vec()),
        )
        .await;
        assert_eq!(r.status(), 204, "{prefix}");
        let (_, tags, _) = get_json(&tags_url, MAINT_PAT).await;
        assert_eq!(tags[tag], "1.0.0", "{prefix}: seen at once");
        // A developer may not delete tags: GitLab's 403 comes back, nothing changes.
        let r = send(
            reqwest::Method::DELETE,
            &format!("{tags_url}/{tag}"),
            Some(ALICE_PAT),
            None,
        )
        .await;
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().await.unwrap(), r#"{"message":"403 Forbidden"}"#);
        let r = send(
            reqwest::Method::DELETE,
            &format!("{tags_url}/{tag}"),
            Some(MAINT_PAT),
            None,
        )
        .await;
        assert_eq!(r.status(), 204);
        let (_, tags, _) = get_json(&tags_url, MAINT_PAT).await;
        assert!(tags.get(tag).is_none(), "{prefix}: removed at once");
    }
    // Unknown tag: GitLab's 404 body, unchanged.
    let r = send(
        reqwest::Method::DELETE,
        &format!(
            "{}{PROJECT_NPM}/-/package/@acme%2fui/dist-tags/nope",
            packrat.url()
        ),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"404 Package Tag Not Found","error":"Package tag not found"}"#
    );
}

#[tokio::test]
async fn npm_deprecate_passes_through_and_invalidates() {
    require_tool!("npm");
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let npm = npm_for(&packrat, MAINT_PAT);
    npm.run_ok(&["view", "@acme/ui", "versions"]).await;
    let out = npm.run(&["deprecate", "@acme/ui@1.0.0", "use 1.1.0"]).await;
    assert!(
        out.status.success(),
        "deprecate: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    let (_, doc, _) = get_json(&format!("{}{UI_META}", packrat.url()), MAINT_PAT).await;
    assert_eq!(doc["versions"]["1.0.0"]["deprecated"], "use 1.1.0");
}

#[tokio::test]
async fn publish_bodies_are_checked_before_anything_is_forwarded() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = format!("{}{UI_META}", packrat.url());
    let bad_base64 = br#"{"name":"@acme/ui","versions":{"9.0.0":{}},"_attachments":{"@acme/ui-9.0.0.tgz":{"data":"!!! not base64 !!!"}}}"#;
    for (body, text) in [
        (b"this is not json".to_vec(), "Invalid json"),
        (
            br#"{"name":"@acme/ui"}"#.to_vec(),
            "Versions key is missing from the JSON upload",
        ),
        // GitLab's message for an attachment it cannot use (it has none for bad base64).
        (bad_base64.to_vec(), "Attachment data is empty."),
        (
            br#"{"name":"@acme/ui","versions":{"9.0.0":{}}}"#.to_vec(),
            "Attachment data is empty.",
        ),
    ] {
        let r = send(reqwest::Method::PUT, &url, Some(ALICE_PAT), Some(body)).await;
        assert_eq!(r.status(), 400);
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc, json!({"message": text, "error": text}));
    }
    assert_eq!(fake.requests_total(), 0, "nothing reached GitLab");
    // GitLab's own refusals come back unchanged: a guest may not publish, a duplicate is 403.
    let r = send(
        reqwest::Method::PUT,
        &url,
        Some(GUEST_PAT),
        Some(publish_body("9.0.0", b"x")),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), r#"{"message":"403 Forbidden"}"#);
    let r = send(
        reqwest::Method::PUT,
        &url,
        None,
        Some(publish_body("9.0.0", b"x")),
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = send(
        reqwest::Method::PUT,
        &url,
        Some(ALICE_PAT),
        Some(publish_body("1.0.0", b"x")),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"Package already exists.","error":"Package already exists."}"#
    );
}

#[tokio::test]
async fn publish_over_max_body_is_413_and_never_reaches_gitlab() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::builder()
        .upstream(&fake.url())
        .server_keys("max_body = \"1KiB\"")
        .start()
        .await;
    let body = publish_body("9.9.9", &vec![7u8; 4096]);
    let r = send(
        reqwest::Method::PUT,
        &format!("{}{UI_META}", packrat.url()),
        Some(ALICE_PAT),
        Some(body),
    )
    .await;
    assert_eq!(r.status(), 413);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["message"].as_str().unwrap().contains("max_body"),
        "{doc}"
    );
    assert_eq!(fake.requests_total(), 0, "the upstream was never contacted");
    // Within the limit, the same route works.
    let r = send(
        reqwest::Method::PUT,
        &format!("{}{UI_META}", packrat.url()),
        Some(ALICE_PAT),
        Some(publish_body("9.9.9", b"small")),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_chunked_publish_over_max_body_is_413_and_never_reaches_gitlab() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::builder()
        .upstream(&fake.url())
        .server_keys("max_body = \"2MiB\"")
        .start()
        .await;
    // A streamed body has no Content-Length: the limit must hold while it arrives.
    let body = publish_body("9.9.8", &vec![7u8; 3 << 20]);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = client()
        .put(format!("{}{UI_META}", packrat.url()))
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    // packrat may answer and close before the whole body is sent.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    assert!(
        packrat
            .wait_for_log(&["status=413"], std::time::Duration::from_secs(5))
            .await,
        "{}",
        packrat.logs()
    );
    assert_eq!(fake.requests_total(), 0, "the upstream was never contacted");
    // A streamed body within the limit goes through.
    let small = publish_body("9.9.8", b"small");
    let r = client()
        .put(format!("{}{UI_META}", packrat.url()))
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter([
            Ok::<_, std::io::Error>(small),
        ])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        std::fs::read_dir(packrat.data_dir().join("tmp"))
            .unwrap()
            .count(),
        0,
        "the spool is gone"
    );
}

/// A tarball of `n` bytes that does not compress (so the publish body is really that big).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn a_multi_mib_publish_is_spooled_forwarded_and_a_cache_hit() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let tarball = noise(6 << 20);
    let body = publish_body("4.0.0", &tarball);
    let r = send(
        reqwest::Method::PUT,
        &format!("{}{UI_META}", packrat.url()),
        Some(ALICE_PAT),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", packrat.logs());
    let put = fake
        .request_log()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(
        put.headers["content-length"].to_str().unwrap(),
        body.len().to_string(),
        "forwarded with its length, not chunked"
    );
    let stored = fake.with_world(|w| {
        w.npm
            .iter()
            .find(|r| r.name == "@acme/ui" && r.version == "4.0.0")
            .map(|r| r.tarball.clone())
    });
    assert!(
        stored == Some(tarball.clone().into()),
        "GitLab got the tarball"
    );

    let (_, doc, _) = get_json(&format!("{}{UI_META}", packrat.url()), ALICE_PAT).await;
    let url = doc["versions"]["4.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(reqwest::Method::GET, &url, Some(ALICE_PAT), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-packrat-cache"], "hit");
    assert_eq!(r.bytes().await.unwrap(), tarball);
    assert_eq!(
        fake.requests("@acme/ui-4.0.0.tgz"),
        0,
        "no upstream tarball request"
    );
    assert_eq!(
        std::fs::read_dir(packrat.data_dir().join("tmp"))
            .unwrap()
            .count(),
        0,
        "the spool is gone"
    );
}

#[tokio::test]
async fn a_published_tarball_that_does_not_match_its_shasum_is_not_cached() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let mut doc: Value = serde_json::from_slice(&publish_body("4.1.0", b"the real bytes")).unwrap();
    doc["versions"]["4.1.0"]["dist"]["shasum"] = json!(hex::encode(Sha1::digest(b"other bytes")));
    let r = send(
        reqwest::Method::PUT,
        &format!("{}{UI_META}", packrat.url()),
        Some(ALICE_PAT),
        Some(serde_json::to_vec(&doc).unwrap()),
    )
    .await;
    assert_eq!(r.status(), 200, "GitLab takes the shasum as sent");
    let (_, meta, _) = get_json(&format!("{}{UI_META}", packrat.url()), ALICE_PAT).await;
    let url = meta["versions"]["4.1.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    // The fetched bytes fail the shasum: a 502, a 200 whose body ends broken, or (when the
    // failure lands before hyper flushed the head of this small body) a dropped connection.
    match client()
        .get(&url)
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .send()
        .await
    {
        Ok(r) => {
            assert_ne!(
                r.headers()
                    .get("x-packrat-cache")
                    .map(|v| v.to_str().unwrap()),
                Some("hit"),
                "not served from the cache"
            );
            if r.status() == 200 {
                assert!(r.bytes().await.is_err(), "an unverified body ends broken");
            } else {
                assert_eq!(r.status(), 502);
            }
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    assert_eq!(
        fake.requests("@acme/ui-4.1.0.tgz"),
        1,
        "the tarball was not cached, so it is asked for"
    );
}

#[tokio::test]
async fn a_failed_publish_changes_nothing() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let meta = format!("{}{UI_META}", packrat.url());
    let (_, before, _) = get_json(&meta, ALICE_PAT).await;
    fake.fail_next("/packages/npm/@acme%2fui", 500, 1);
    let r = send(
        reqwest::Method::PUT,
        &meta,
        Some(ALICE_PAT),
        Some(publish_body("3.0.0", b"t")),
    )
    .await;
    assert_eq!(r.status(), 500, "GitLab's answer");
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"500 Internal Server Error"}"#
    );
    let (_, after, cache) = get_json(&meta, ALICE_PAT).await;
    assert_eq!(after, before);
    assert_eq!(cache, "hit", "the packument was not invalidated");
    fake.go_down().await;
    let r = send(
        reqwest::Method::PUT,
        &meta,
        Some(ALICE_PAT),
        Some(publish_body("3.0.0", b"t")),
    )
    .await;
    assert_eq!(r.status(), 502);
    let (_, after, cache) = get_json(&meta, ALICE_PAT).await;
    assert_eq!((after, cache.as_str()), (before, "hit"));
}

/// The id of `@acme/ui@<version>` in the fake.
fn ui_id(fake: &FakeGitlab, version: &str) -> u64 {
    fake.with_world(|w| {
        w.npm
            .iter()
            .find(|r| r.name == "@acme/ui" && r.version == version)
            .unwrap()
            .id
    })
}

fn ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_delete_through_packrat_is_gone_from_list_and_packument_at_once() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let list = format!("{}/api/v4/projects/42/packages?per_page=100", packrat.url());
    let meta = format!("{}{UI_META}", packrat.url());
    let id = ui_id(&fake, "1.0.0");
    let (_, before, _) = get_json(&list, MAINT_PAT).await;
    assert!(ids(&before).contains(&id));
    let (_, doc, _) = get_json(&meta, MAINT_PAT).await;
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(reqwest::Method::GET, &tarball, Some(MAINT_PAT), None).await;
    assert_eq!(r.status(), 200, "the tarball is cached");

    fake.reset_counters();
    let r = send(
        reqwest::Method::DELETE,
        &format!("{}/api/v4/projects/42/packages/{id}", packrat.url()),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(
        fake.requests(&format!("/packages/{id}")),
        1,
        "exactly the DELETE"
    );

    let (_, after, _) = get_json(&list, MAINT_PAT).await;
    assert!(!ids(&after).contains(&id));
    let (_, upstream, _) = get_json(
        &format!("{}/api/v4/projects/42/packages?per_page=100", fake.url()),
        MAINT_PAT,
    )
    .await;
    assert_eq!(ids(&after), ids(&upstream));
    let (_, doc, _) = get_json(&meta, MAINT_PAT).await;
    assert_eq!(versions(&doc), ["1.1.0"]);
    let r = send(reqwest::Method::GET, &tarball, Some(MAINT_PAT), None).await;
    assert_eq!(
        r.status(),
        404,
        "a deleted version's tarball is not served from the cache"
    );
    let r = send(
        reqwest::Method::GET,
        &format!("{}/api/v4/projects/42/packages/{id}", packrat.url()),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    // And the pending-destruction slice shows it, like GitLab's.
    let (_, pending, _) = get_json(&format!("{list}&status=pending_destruction"), MAINT_PAT).await;
    assert_eq!(ids(&pending), [id]);
}

#[tokio::test]
async fn an_upstream_refusal_or_failure_leaves_the_index_untouched() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let list = format!("{}/api/v4/projects/42/packages?per_page=100", packrat.url());
    let id = ui_id(&fake, "1.0.0");
    let delete = format!("{}/api/v4/projects/42/packages/{id}", packrat.url());
    let (_, before, _) = get_json(&list, ALICE_PAT).await;
    fake.reset_counters();
    // A developer may not delete: GitLab's 403, unchanged.
    let r = send(reqwest::Method::DELETE, &delete, Some(ALICE_PAT), None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), r#"{"message":"403 Forbidden"}"#);
    let (_, after, cache) = get_json(&list, ALICE_PAT).await;
    assert_eq!(after, before);
    assert_eq!(cache, "hit");
    assert_eq!(
        fake.requests("/packages"),
        1,
        "only the DELETE went upstream"
    );
    // GitLab failing or gone: 5xx/502, still nothing changes.
    fake.fail_next(&format!("/packages/{id}"), 503, 1);
    let r = send(reqwest::Method::DELETE, &delete, Some(MAINT_PAT), None).await;
    assert_eq!(r.status(), 503);
    fake.go_down().await;
    let r = send(reqwest::Method::DELETE, &delete, Some(MAINT_PAT), None).await;
    assert_eq!(r.status(), 502);
    let (_, after, cache) = get_json(&list, ALICE_PAT).await;
    assert_eq!((after, cache.as_str()), (before, "hit"));
    assert!(fake.with_world(|w| w.npm.iter().any(|r| r.id == id)));
}

#[tokio::test]
async fn deleting_a_file_through_packrat() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let id = ui_id(&fake, "1.1.0");
    let files = format!(
        "{}/api/v4/projects/42/packages/{id}/package_files",
        packrat.url()
    );
    let meta = format!("{}{UI_META}", packrat.url());
    let (_, list, _) = get_json(&files, MAINT_PAT).await;
    let file_id = list[0]["id"].as_u64().unwrap();
    assert_eq!(list[0]["file_name"], "@acme/ui-1.1.0.tgz");
    let (_, doc, _) = get_json(&meta, MAINT_PAT).await;
    assert_eq!(versions(&doc), ["1.0.0", "1.1.0"]);
    let r = send(
        reqwest::Method::DELETE,
        &format!("{files}/{file_id}"),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let (_, list, _) = get_json(&files, MAINT_PAT).await;
    assert_eq!(list, json!([]));
    let (_, doc, _) = get_json(&meta, MAINT_PAT).await;
    assert_eq!(
        versions(&doc),
        ["1.0.0"],
        "a version without files leaves the packument"
    );
    let r = send(
        reqwest::Method::DELETE,
        &format!("{files}/{file_id}"),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = send(
        reqwest::Method::DELETE,
        &format!("{files}/x"),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"package_file_id is invalid"}"#
    );
}

#[tokio::test]
async fn deleting_a_go_package_revalidates_the_go_list() {
    let mut world = World::standard();
    world.add_standard_go_modules();
    let id = world.add_package(
        42,
        PkgSpec::new("golang", "gitlab.example.com/acme/web", "v1.0.0"),
    );
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let list = format!(
        "{}/api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/list",
        packrat.url()
    );
    let cache =
        |r: &reqwest::Response| r.headers()["x-packrat-cache"].to_str().unwrap().to_string();
    let r = send(reqwest::Method::GET, &list, Some(MAINT_PAT), None).await;
    assert_eq!(r.status(), 200);
    let r = send(reqwest::Method::GET, &list, Some(MAINT_PAT), None).await;
    assert_eq!(cache(&r), "hit");
    let r = send(
        reqwest::Method::DELETE,
        &format!("{}/api/v4/projects/42/packages/{id}", packrat.url()),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = send(reqwest::Method::GET, &list, Some(MAINT_PAT), None).await;
    assert_eq!(r.status(), 200);
    assert_ne!(cache(&r), "hit", "the list was asked of GitLab again");
}

#[tokio::test]
async fn a_write_that_times_out_is_a_504_and_changes_nothing() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::builder()
        .upstream(&fake.url())
        .upstream_keys("timeout = \"1s\"")
        .start()
        .await;
    let list = format!("{}/api/v4/projects/42/packages?per_page=100", packrat.url());
    let id = ui_id(&fake, "1.0.0");
    let (_, before, _) = get_json(&list, MAINT_PAT).await;
    fake.delay_matching(
        &format!("/packages/{id}"),
        std::time::Duration::from_secs(3),
    );
    let r = send(
        reqwest::Method::DELETE,
        &format!("{}/api/v4/projects/42/packages/{id}", packrat.url()),
        Some(MAINT_PAT),
        None,
    )
    .await;
    assert_eq!(r.status(), 504);
    let (_, after, cache) = get_json(&list, MAINT_PAT).await;
    assert_eq!((after, cache.as_str()), (before, "hit"));
}
