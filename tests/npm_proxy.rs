//! packrat in front of the fake GitLab: the real npm client, single-flight, upstream faults,
//! metadata caching (TTL, 304 revalidation, stale-if-error, negative cache), bad input.

use std::time::Duration;

use futures_util::future::join_all;
use sha1::{Digest as _, Sha1};

use crate::support::clients::{describe, require_tool, Npm};
use crate::support::fake_gitlab::world::{ALICE_PAT, BOB_PAT};
use crate::support::fake_gitlab::{FakeGitlab, NpmPkg, World};
use crate::support::packrat::{Packrat, DATA_DIR_PLACEHOLDER};

const UI_META: &str = "/api/v4/projects/42/packages/npm/@acme%2fui";

/// A full config, for tests that set keys in the sections `Packrat::start` writes itself.
async fn start_with(upstream: &str, server_extra: &str, upstream_extra: &str) -> Packrat {
    Packrat::start_with_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n[storage]\ndir = \"{DATA_DIR_PLACEHOLDER}\"\n\n[upstream]\nurl = \"{upstream}\"\n{upstream_extra}\n"
    ))
    .await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut rb = client().get(url);
    if let Some(t) = token {
        rb = rb.header("PRIVATE-TOKEN", t);
    }
    rb.send().await.unwrap()
}

fn cache_header(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-packrat-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn tarball_url(packrat: &Packrat, meta_path: &str, version: &str) -> String {
    let r = get(&format!("{}{meta_path}", packrat.url()), Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    doc["versions"][version]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn health(packrat: &Packrat) {
    let r = get(&format!("{}/-/health", packrat.url()), None).await;
    assert_eq!(r.status(), 200, "server must stay healthy");
}

/// The real npm client installs a scoped tree through packrat, then again with a fresh npm
/// cache and the upstream stopped.
async fn npm_install_tree(prefix: &str) {
    if !require_tool("npm") {
        return;
    }
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let npm = Npm::new().expect("npm");
    let registry = format!("{}{prefix}", packrat.url());
    npm.scope_registry("@acme", &registry);
    npm.auth_token(&format!("{}/", packrat.url()), ALICE_PAT);
    npm.write_package_json(&[("@acme/ui", "^1.0.0")]);

    let out = npm.run(&["install", "--no-audit", "--no-fund"]).await;
    assert!(
        out.status.success(),
        "first install: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    assert_eq!(npm.installed_version("@acme/ui").as_deref(), Some("1.1.0"));
    assert_eq!(
        npm.installed_version("@acme/utils").as_deref(),
        Some("1.2.0")
    );
    assert_eq!(
        npm.installed_version("@acme/core").as_deref(),
        Some("2.0.0")
    );
    assert!(npm.require("@acme/ui").await.contains("@acme/ui@1.1.0"));
    let tarballs_upstream = fake.requests(".tgz");
    assert_eq!(tarballs_upstream, 3, "one upstream fetch per tarball");

    // Fresh npm cache, no node_modules, upstream gone: everything comes from packrat.
    npm.clear_cache();
    npm.clear_install();
    fake.go_down().await;
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
    assert_eq!(
        fake.requests(".tgz"),
        tarballs_upstream,
        "no tarball request reached GitLab"
    );
}

#[tokio::test]
async fn npm_installs_a_scoped_tree_at_the_project_prefix() {
    npm_install_tree("/api/v4/projects/42/packages/npm/").await;
}

#[tokio::test]
async fn npm_installs_a_scoped_tree_at_the_instance_prefix() {
    npm_install_tree("/api/v4/packages/npm/").await;
}

#[tokio::test]
async fn tarball_urls_keep_the_prefix_the_client_used() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    for (meta, prefix) in [
        (UI_META.to_string(), "/api/v4/projects/42/packages/npm/"),
        (
            "/api/v4/projects/acme%2Fweb/packages/npm/@acme/ui".to_string(),
            "/api/v4/projects/acme%2Fweb/packages/npm/",
        ),
        (
            "/api/v4/groups/acme/-/packages/npm/@acme%2Fui".to_string(),
            "/api/v4/groups/acme/-/packages/npm/",
        ),
        (
            "/api/v4/packages/npm/@acme%2fui".to_string(),
            "/api/v4/packages/npm/",
        ),
    ] {
        let url = tarball_url(&packrat, &meta, "1.0.0").await;
        assert_eq!(
            url,
            format!("{}{prefix}@acme/ui/-/@acme/ui-1.0.0.tgz", packrat.url()),
            "via {meta}"
        );
        let r = get(&url, Some(ALICE_PAT)).await;
        assert_eq!(r.status(), 200, "tarball via {prefix}");
        assert_eq!(
            r.headers()["cache-control"],
            "private, max-age=31536000, immutable"
        );
    }
    // Four prefixes, one blob: the same upstream file was fetched once.
    assert_eq!(fake.requests("@acme/ui-1.0.0.tgz"), 1);
}

#[tokio::test]
async fn hundred_concurrent_misses_make_one_upstream_request() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = tarball_url(&packrat, UI_META, "1.1.0").await;
    // Slow the upstream so every request arrives while the first download runs.
    fake.delay_matching(".tgz", Duration::from_millis(500));
    let bodies = join_all((0..100).map(|_| {
        let url = url.clone();
        async move {
            let r = get(&url, Some(ALICE_PAT)).await;
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    }))
    .await;
    assert_eq!(
        fake.requests("@acme/ui-1.1.0.tgz"),
        1,
        "exactly one upstream request"
    );
    let expected = tarball_bytes(&fake, "@acme/ui", "1.1.0");
    let sha = hex::encode(Sha1::digest(&expected));
    for b in &bodies {
        assert_eq!(b.len(), expected.len());
        assert_eq!(hex::encode(Sha1::digest(b)), sha);
    }
    let metrics = get(&format!("{}/-/metrics", packrat.url()), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("packrat_singleflight_joins_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_cut_upstream_body_fails_the_client_and_caches_nothing() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = tarball_url(&packrat, UI_META, "1.0.0").await;
    fake.cut_body_after("@acme/ui-1.0.0.tgz", 100);
    let r = get(&url, Some(ALICE_PAT)).await;
    // Either the status line already went out (then the body must break), or not at all.
    if r.status() == 200 {
        assert!(
            r.bytes().await.is_err(),
            "a broken download must not end cleanly"
        );
    } else {
        assert!(r.status().is_server_error());
    }
    let expected = tarball_bytes(&fake, "@acme/ui", "1.0.0");
    let partial = walk_files(&packrat.data_dir().join("blobs-v1"))
        .into_iter()
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            expected.starts_with(&b)
        })
        .collect::<Vec<_>>();
    assert!(
        partial.is_empty(),
        "no (partial) tarball stored: {partial:?}"
    );
    assert_eq!(
        walk_files(&packrat.data_dir().join("tmp")).len(),
        0,
        "temp files cleaned up"
    );

    fake.clear_faults();
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_header(&r), "miss");
    let b = r.bytes().await.unwrap();
    assert!(b.starts_with(&[0x1f, 0x8b]));
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(r.bytes().await.unwrap(), b);
    assert_eq!(fake.requests("@acme/ui-1.0.0.tgz"), 2);
    health(&packrat).await;
}

/// A tarball whose bytes do not match the packument's shasum is refused at commit; the
/// client must never have received it whole (its last byte waits for the commit).
#[tokio::test]
async fn a_tarball_failing_verification_is_never_delivered_whole() {
    let mut world = World::standard();
    world.add_npm(42, NpmPkg::new("@acme/big", "1.0.0").size(2_000_000));
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = tarball_url(
        &packrat,
        "/api/v4/projects/42/packages/npm/@acme%2fbig",
        "1.0.0",
    )
    .await;
    fake.with_world(|w| {
        let r = w.npm.iter_mut().find(|r| r.name == "@acme/big").unwrap();
        let mut b = r.tarball.to_vec();
        let middle = b.len() / 2;
        b[middle] ^= 0xff;
        r.tarball = b.into();
    });
    for attempt in 1..=2 {
        let sent = client()
            .get(&url)
            .header("PRIVATE-TOKEN", ALICE_PAT)
            .send()
            .await;
        let whole = match sent {
            Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        assert!(
            !whole,
            "attempt {attempt}: a tarball failing its shasum was served whole"
        );
    }
    assert_eq!(
        fake.requests("@acme/big-1.0.0.tgz"),
        2,
        "nothing was cached"
    );
    health(&packrat).await;
}

#[tokio::test]
async fn a_tarball_that_fails_verification_is_never_served_whole_nor_cached() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    // packrat now holds the packument, and with it the tarball's shasum.
    let url = tarball_url(&packrat, UI_META, "1.0.0").await;
    // The upstream starts sending different bytes of the same length.
    fake.with_world(|w| {
        let rec = w
            .npm
            .iter_mut()
            .find(|r| r.name == "@acme/ui" && r.version == "1.0.0")
            .unwrap();
        let mut bytes = rec.tarball.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        rec.tarball = bytes.into();
    });
    for _ in 0..2 {
        // The connection may be cut before the head arrives, during the body, or the error
        // may come as a 502: never a complete 200.
        match client()
            .get(&url)
            .header("PRIVATE-TOKEN", ALICE_PAT)
            .send()
            .await
        {
            Err(_) => {}
            Ok(r) if r.status() == 200 => {
                assert!(
                    r.bytes().await.is_err(),
                    "an unverified body must end broken"
                );
            }
            Ok(r) => assert_eq!(r.status(), 502),
        }
    }
    assert_eq!(fake.requests("@acme/ui-1.0.0.tgz"), 2, "nothing was cached");
    health(&packrat).await;
}

#[tokio::test]
async fn metadata_is_revalidated_with_etags_and_served_stale_on_errors() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(
        &fake.url(),
        "[cache]\nmetadata_ttl = \"0s\"\nauth_ttl = \"1h\"\n",
    )
    .await;
    let url = format!("{}{UI_META}", packrat.url());
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(cache_header(&r), "miss");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["vary"], "Accept, Accept-Encoding");

    // TTL 0: the next read revalidates; the fake answers 304.
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(cache_header(&r), "revalidated");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    let log = fake.request_log();
    assert!(
        log.iter()
            .any(|rec| rec.path.contains("@acme%2fui") && rec.headers.contains_key("if-none-match")),
        "packrat revalidated with If-None-Match"
    );

    // The client's own conditional request: 304 from packrat.
    let r = client()
        .get(&url)
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Upstream 5xx, then down: stale content with a Warning.
    fake.fail_with(503);
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_header(&r), "stale");
    assert_eq!(r.headers()["warning"], "110 - \"Response is Stale\"");
    fake.clear_faults();
    fake.go_down().await;
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["warning"], "110 - \"Response is Stale\"");

    // Never seen while down: nobody's access to that name was checked, so the same clear
    // 503 a cached name would get from an unchecked caller (issue 5: no existence oracle).
    let r = get(
        &format!(
            "{}/api/v4/projects/42/packages/npm/@acme%2fnever",
            packrat.url()
        ),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach GitLab to check this credential's access"),
        "{body}"
    );
}

#[tokio::test]
async fn upstream_404_is_remembered_for_negative_ttl() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "[cache]\nnegative_ttl = \"1h\"\n").await;
    let url = format!(
        "{}/api/v4/projects/42/packages/npm/@acme%2fmissing",
        packrat.url()
    );
    for _ in 0..3 {
        let r = get(&url, Some(ALICE_PAT)).await;
        assert_eq!(r.status(), 404);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["message"], "404 Packages Not Found");
    }
    assert_eq!(fake.requests("@acme%2fmissing"), 1);
}

#[tokio::test]
async fn upstream_timeout_is_a_504() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_with(&fake.url(), "", "timeout = \"1s\"").await;
    // Alice's access to @acme/ui is decided while GitLab answers; then GitLab stalls and
    // the tarball she may read, never fetched, times out.
    let tgz = tarball_url(&packrat, UI_META, "1.1.0").await;
    fake.delay(Duration::from_secs(3));
    let r = get(&tgz, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1s"),
        "{body}"
    );
    // A name nobody's access was checked for: the outage refusal (issue 5), not a 504
    // that would differ from the answer for a cached name.
    let r = get(
        &format!(
            "{}/api/v4/projects/42/packages/npm/@acme%2fcore",
            packrat.url()
        ),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn cached_private_content_is_not_served_to_others() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(
        &fake.url(),
        "[cache]\nauth_ttl = \"1h\"\nmetadata_ttl = \"1h\"\n",
    )
    .await;
    let url = tarball_url(&packrat, UI_META, "1.0.0").await;
    assert_eq!(get(&url, Some(ALICE_PAT)).await.status(), 200);
    let meta = format!("{}{UI_META}", packrat.url());

    // Bob: the upstream is asked, and its refusal is passed on.
    let r = get(&meta, Some(BOB_PAT)).await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "404 Project Not Found");
    assert_eq!(get(&url, Some(BOB_PAT)).await.status(), 404);
    // Anonymous: 401 on metadata, 404 on the tarball (GitLab's asymmetry).
    assert_eq!(get(&meta, None).await.status(), 401);
    let r = get(&url, None).await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "Project not found");
}

#[tokio::test]
async fn object_storage_redirects_get_no_credentials() {
    let fake = FakeGitlab::start(World::standard()).await;
    fake.set_object_storage(true);
    fake.set_metadata_in_object_storage(true);
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = tarball_url(&packrat, UI_META, "1.1.0").await;
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().starts_with(&[0x1f, 0x8b]));
    assert!(fake.object_store_requests() >= 1);
    assert_eq!(fake.object_store_auth_headers_seen(), Vec::<String>::new());
}

#[tokio::test]
async fn head_gzip_and_lengths() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = tarball_url(&packrat, UI_META, "1.0.0").await;
    let full = get(&url, Some(ALICE_PAT)).await.bytes().await.unwrap();
    let r = client()
        .head(&url)
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        full.len().to_string().as_str()
    );

    let r = client()
        .get(format!("{}{UI_META}", packrat.url()))
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(doc["name"], "@acme/ui");

    let r = get(
        &format!(
            "{}/api/v4/projects/42/packages/npm/-/package/@acme%2fui/dist-tags",
            packrat.url()
        ),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(r.status(), 200);
    let tags: serde_json::Value = r.json().await.unwrap();
    assert_eq!(tags["latest"], "1.1.0");
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_server_stays_up() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_with(&fake.url(), "max_body = \"1KiB\"", "").await;
    let base = format!("{}/api/v4/projects/42/packages/npm", packrat.url());
    let long = "a".repeat(2000);
    for (path, status) in [
        ("..".to_string(), 400),
        ("%2e%2e".to_string(), 400),
        ("@acme/../../x".to_string(), 400),
        ("%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_string(), 400),
        ("a%00b".to_string(), 400),
        ("%0d%0ahttp:%2f%2fexample.com".to_string(), 400),
        (long, 400),
        ("@acme%2fui/-/..%2f..%2fsecret.tgz".to_string(), 404),
    ] {
        let (got, body) = raw_get(
            &packrat,
            &format!("/api/v4/projects/42/packages/npm/{path}"),
        )
        .await;
        assert_eq!(got, status, "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(body.is_object(), "{path}: JSON error body");
    }
    // A body over server.max_body: 413 before anything reaches the upstream.
    let before = fake.requests_total();
    let r = client()
        .post(format!("{base}/-/npm/v1/security/advisories/bulk"))
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(fake.requests_total(), before);
    // The audit endpoint as GitLab answers it with forwarding off.
    let r = client()
        .post(format!("{base}/-/npm/v1/security/advisories/bulk"))
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "[]");
    health(&packrat).await;
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = tarball_url(&packrat, UI_META, "1.0.0").await;
    get(&url, Some(ALICE_PAT)).await.bytes().await.unwrap();
    get(&url, Some(BOB_PAT)).await.bytes().await.unwrap();
    let logs = packrat.logs();
    assert!(logs.contains("served"), "logs are captured");
    assert!(
        !logs.contains(ALICE_PAT) && !logs.contains(BOB_PAT),
        "a token was logged"
    );
}

fn tarball_bytes(fake: &FakeGitlab, name: &str, version: &str) -> Vec<u8> {
    fake.with_world(|w| {
        let v = w.npm_versions(42, name);
        v.iter()
            .find(|r| r.version == version)
            .unwrap()
            .tarball
            .to_vec()
    })
}

/// Send a request line exactly as given (no client-side path normalisation) and return the
/// status code and body.
async fn raw_get(packrat: &Packrat, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = packrat.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nPRIVATE-TOKEN: {ALICE_PAT}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
