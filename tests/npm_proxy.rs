//! packrat in front of the fake GitLab: the real npm client, single-flight, upstream faults,
//! metadata caching (TTL, 304 revalidation, stale-if-error, negative cache), bad input.

use std::time::Duration;

use futures_util::future::join_all;
use sha1::{Digest as _, Sha1};

use crate::support::clients::{describe, Npm};
use crate::support::fake_gitlab::world::{ALICE_PAT, BOB_PAT, JOB_RUNNING};
use crate::support::fake_gitlab::{FakeGitlab, NpmPkg, World};
use crate::support::files::walk;
use crate::support::packrat::Packrat;
use crate::support::poll;
use crate::support::require_tool;

const UI_META: &str = "/api/v4/projects/42/packages/npm/@acme%2fui";

/// Packrat with keys of its own in the sections `Packrat::start` writes itself.
async fn start_with(upstream: &str, server_keys: &str, upstream_keys: &str) -> Packrat {
    Packrat::builder()
        .upstream(upstream)
        .server_keys(server_keys)
        .upstream_keys(upstream_keys)
        .start()
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
    require_tool!("npm");
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let npm = Npm::new();
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
    let expected = tarball_bytes(&fake, "@acme/ui", "1.1.0");
    // Slow the upstream so every request arrives while the first download runs, and hold
    // its body half-way until all 100 are streaming: none can arrive after the commit.
    fake.delay_matching(".tgz", Duration::from_millis(500));
    let gate = fake.pause_body_after("@acme/ui-1.1.0.tgz", expected.len() / 2);
    let (streaming, bodies) = spawn_streaming_clients(&url, 100);
    first_bytes_from_all(streaming, 100, expected.len()).await;
    gate.release();
    let bodies = join_all(bodies).await;
    assert_eq!(
        fake.requests("@acme/ui-1.1.0.tgz"),
        1,
        "exactly one upstream request"
    );
    let sha = hex::encode(Sha1::digest(&expected));
    for b in bodies {
        let b = b.unwrap().expect("a complete body");
        assert_eq!(b.len(), expected.len());
        assert_eq!(hex::encode(Sha1::digest(&b)), sha);
    }
    // One more read: a hit from the store.
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(r.bytes().await.unwrap().len(), expected.len());

    let m = metrics_text(&packrat).await;
    // The first requester leads the download (a miss), the other 99 join it.
    assert_eq!(
        metric(&m, "packrat_singleflight_joins_total", &[]),
        99.0,
        "{m}"
    );
    let tarball = [("kind", "npm_tarball")];
    assert_eq!(
        metric(&m, "packrat_cache_misses_total", &tarball),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "packrat_cache_hits_total", &tarball), 1.0, "{m}");
    let route = |outcome| {
        metric(
            &m,
            "packrat_requests_total",
            &[
                ("route", "npm_tarball"),
                ("status", "200"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(route("miss"), 1.0, "{m}");
    assert_eq!(route("joined"), 99.0, "{m}");
    assert_eq!(route("hit"), 1.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "packrat_upstream_request_duration_seconds_count",
            &tarball
        ),
        1.0,
        "one upstream tarball request timed: {m}"
    );
    assert!(
        metric(
            &m,
            "packrat_upstream_request_duration_seconds_sum",
            &tarball
        ) >= 0.5,
        "the 500 ms upstream delay is in the histogram: {m}"
    );
    assert!(
        metric(&m, "packrat_bytes_served_total", &[]) >= (101 * expected.len()) as f64,
        "{m}"
    );
    assert!(
        metric(&m, "packrat_blob_bytes_on_disk", &[]) >= expected.len() as f64,
        "{m}"
    );

    // The download commits after the last client's last byte, so it may still count as in
    // flight for a moment after every client has its body.
    let ready_url = format!("{}/-/ready", packrat.url());
    let (status, ready) = poll::eventually(
        "the download is no longer in flight",
        poll::DEADLINE,
        || async {
            let r = get(&ready_url, None).await;
            (r.status(), r.text().await.unwrap())
        },
        |(_, ready)| ready.contains("in_flight_downloads 0"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(ready.starts_with("ready\n"), "{ready}");
    assert!(ready.contains("in_flight_downloads 0"), "{ready}");
}

const BIG_META: &str = "/api/v4/projects/42/packages/npm/@acme%2fbig";
const BIG_TGZ: &str = "@acme/big-1.0.0.tgz";

/// A world with a 300 kB tarball, so a pause half-way is well inside the body.
async fn big_tarball_setup() -> (FakeGitlab, Packrat, String, Vec<u8>) {
    let mut world = World::standard();
    world.add_npm(42, NpmPkg::new("@acme/big", "1.0.0").size(300_000));
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = tarball_url(&packrat, BIG_META, "1.0.0").await;
    let expected = tarball_bytes(&fake, "@acme/big", "1.0.0");
    (fake, packrat, url, expected)
}

type StreamedBody = Result<Vec<u8>, String>;

/// `n` clients, each in its own task: it reports how many bytes it had once its first bytes
/// arrived, then reads to the end (`Err` if the body broke).
fn spawn_streaming_clients(
    url: &str,
    n: usize,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<usize>,
    Vec<tokio::task::JoinHandle<StreamedBody>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks = (0..n)
        .map(|_| {
            let url = url.to_string();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = get(&url, Some(ALICE_PAT)).await;
                assert_eq!(r.status(), 200);
                let mut body = Vec::new();
                let mut reported = false;
                loop {
                    match r.chunk().await {
                        Ok(Some(c)) => {
                            body.extend_from_slice(&c);
                            if !reported && !body.is_empty() {
                                reported = true;
                                let _ = tx.send(body.len());
                            }
                        }
                        Ok(None) => return Ok(body),
                        Err(e) => return Err(format!("{e} after {} bytes", body.len())),
                    }
                }
            })
        })
        .collect();
    (rx, tasks)
}

/// Waits until all `n` clients got their first bytes, none of them the whole body.
async fn first_bytes_from_all(
    mut streaming: tokio::sync::mpsc::UnboundedReceiver<usize>,
    n: usize,
    total: usize,
) {
    for i in 0..n {
        let got = tokio::time::timeout(Duration::from_secs(30), streaming.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} of {n} clients got bytes while upstream paused"))
            .expect("a client task ended before its first bytes");
        assert!(
            got < total,
            "a client got the whole body before the upstream finished"
        );
    }
}

#[tokio::test]
async fn joined_clients_stream_while_the_upstream_is_paused() {
    let (fake, packrat, url, expected) = big_tarball_setup().await;
    let gate = fake.pause_body_after(BIG_TGZ, expected.len() / 2);
    let (streaming, bodies) = spawn_streaming_clients(&url, 20);
    // Every client is streaming while the upstream has sent only half the body.
    first_bytes_from_all(streaming, 20, expected.len()).await;
    gate.release();
    for b in join_all(bodies).await {
        let b = b.unwrap().expect("a complete body after the release");
        assert!(b == expected, "body differs from the upstream tarball");
    }
    assert_eq!(fake.requests(BIG_TGZ), 1, "exactly one upstream request");
    let m = metrics_text(&packrat).await;
    assert_eq!(
        metric(&m, "packrat_singleflight_joins_total", &[]),
        19.0,
        "{m}"
    );
}

#[tokio::test]
async fn an_upstream_cut_breaks_every_joined_client_and_caches_nothing() {
    let (fake, packrat, url, expected) = big_tarball_setup().await;
    let gate = fake.pause_body_after(BIG_TGZ, expected.len() / 2);
    let (streaming, bodies) = spawn_streaming_clients(&url, 20);
    first_bytes_from_all(streaming, 20, expected.len()).await;
    gate.cut();
    for b in join_all(bodies).await {
        let b = b.unwrap();
        assert!(
            b.is_err(),
            "a joined client's body ended cleanly after an upstream cut ({} bytes)",
            b.map(|b| b.len()).unwrap_or_default()
        );
    }
    assert_eq!(fake.requests(BIG_TGZ), 1, "one upstream fetch for all 20");
    assert_nothing_stored(&packrat, &expected);

    fake.clear_faults();
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        cache_header(&r),
        "miss",
        "the next request starts a new fetch"
    );
    assert!(r.bytes().await.unwrap() == expected);
    assert_eq!(fake.requests(BIG_TGZ), 2);
    let r = get(&url, Some(ALICE_PAT)).await;
    assert_eq!(cache_header(&r), "hit");
    health(&packrat).await;
}

/// Neither a blob that is a prefix of `expected` nor a temp file is left in the data dir.
fn assert_nothing_stored(packrat: &Packrat, expected: &[u8]) {
    let partial = walk(&packrat.data_dir().join("blobs-v1"))
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
        walk(&packrat.data_dir().join("tmp")).len(),
        0,
        "temp files cleaned up"
    );
}

async fn metrics_text(packrat: &Packrat) -> String {
    let r = get(&format!("{}/-/metrics", packrat.url()), None).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The sum of the samples of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
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
    assert_nothing_stored(&packrat, &expected);

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
    // 502 a cached name would get from an unchecked caller (issue 5: no existence oracle).
    let r = get(
        &format!(
            "{}/api/v4/projects/42/packages/npm/@acme%2fnever",
            packrat.url()
        ),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(r.status(), 502);
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

/// negative_ttl is not capped at auth_ttl for a package GitLab does not have; a 404 that
/// hides the whole project from the credential is an access refusal and stays bounded by
/// auth_ttl.
#[tokio::test]
async fn negative_ttl_longer_than_auth_ttl_is_honoured() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(
        &fake.url(),
        "[cache]\nauth_ttl = \"1s\"\nnegative_ttl = \"1h\"\n",
    )
    .await;
    let missing = format!(
        "{}/api/v4/projects/42/packages/npm/@acme%2fmissing",
        packrat.url()
    );
    let hidden = format!("{}{UI_META}", packrat.url());
    assert_eq!(get(&missing, Some(ALICE_PAT)).await.status(), 404);
    assert_eq!(get(&hidden, Some(BOB_PAT)).await.status(), 404);
    let ui_before = fake.requests("@acme%2fui");

    // Within auth_ttl bob's refusal is answered from the cache; the request that asks GitLab
    // again is the sign that auth_ttl has passed (for alice's older decision too).
    let (status, body) = poll::eventually(
        "bob's refusal is asked again once auth_ttl passed",
        poll::DEADLINE,
        || async {
            let r = get(&hidden, Some(BOB_PAT)).await;
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        },
        |_| fake.requests("@acme%2fui") > ui_before,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "404 Project Not Found");
    assert_eq!(
        fake.requests("@acme%2fui"),
        ui_before + 1,
        "a refusal is asked again after auth_ttl"
    );

    let r = get(&missing, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "404 Packages Not Found");
    assert_eq!(
        fake.requests("@acme%2fmissing"),
        1,
        "the 404 is remembered past auth_ttl"
    );
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
    // A name nobody's access was checked for: the outage refusal (issue 5), the same 504
    // a cached name gets from an unchecked caller.
    let r = get(
        &format!(
            "{}/api/v4/projects/42/packages/npm/@acme%2fcore",
            packrat.url()
        ),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(r.status(), 504);
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

/// The audit POSTs at the three prefixes, as GitLab answers them with forwarding off
/// (API.md 1.9): anonymous 401 everywhere; a reader gets `[]` at the project prefix and
/// 404 Project Not Found at the group and instance prefixes; a non-member 404 at the
/// project. packrat does no forwarding here, so the same holds when GitLab's own forwarding
/// is on (GitLab would answer 307 to the public registry).
#[tokio::test]
async fn audit_posts_answer_as_gitlab_does_with_forwarding_off() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let project_not_found = serde_json::json!({
        "message": "404 Project Not Found",
        "error": "Project not found"
    });
    let unauthorized = serde_json::json!({"message": "401 Unauthorized"});
    let empty = serde_json::json!([]);
    for gitlab_forwarding in [false, true] {
        fake.set_npm_forwarding(gitlab_forwarding);
        for (prefix, reader) in [
            ("/api/v4/projects/42/packages/npm", (200, &empty)),
            (
                "/api/v4/groups/acme/-/packages/npm",
                (404, &project_not_found),
            ),
            ("/api/v4/packages/npm", (404, &project_not_found)),
        ] {
            for endpoint in ["advisories/bulk", "audits/quick"] {
                let url = format!("{}{prefix}/-/npm/v1/security/{endpoint}", packrat.url());
                let project = prefix.contains("/projects/");
                let cases = [
                    ("anonymous", None, (401, &unauthorized)),
                    ("reader", Some(ALICE_PAT), reader),
                    (
                        "non-member",
                        Some(BOB_PAT),
                        if project {
                            (404, &project_not_found)
                        } else {
                            reader
                        },
                    ),
                ];
                for (who, token, (status, body)) in cases {
                    let mut rb = client()
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"@acme/ui":["1.0.0"]}"#);
                    if let Some(t) = token {
                        rb = rb.header("PRIVATE-TOKEN", t);
                    }
                    let r = rb.send().await.unwrap();
                    let what = format!(
                        "{who} POST {prefix} {endpoint} (GitLab forwarding {gitlab_forwarding})"
                    );
                    assert_eq!(r.status().as_u16(), status, "{what}");
                    assert!(r.headers().get("location").is_none(), "{what}: no redirect");
                    let got: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(&got, body, "{what}");
                }
            }
        }
    }
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

/// GitLab accepts `?private_token=` and `?job_token=` (API.md section 4): packrat reads
/// them as credentials, sends them upstream as headers (never in a URL), and logs neither
/// the token nor the query.
#[tokio::test]
async fn query_string_tokens_work_and_never_reach_urls_or_logs() {
    let fake = FakeGitlab::start(World::standard()).await;
    fake.set_request_log(true);
    let packrat = Packrat::builder()
        .upstream(&fake.url())
        .rust_log("trace")
        .start()
        .await;
    let base = packrat.url();
    // Without a credential the private project is refused; with one in the query it is read.
    assert_eq!(get(&format!("{base}{UI_META}"), None).await.status(), 401);
    let r = get(&format!("{base}{UI_META}?private_token={ALICE_PAT}"), None).await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!tarball.contains(ALICE_PAT), "{tarball}");
    let r = get(&format!("{tarball}?job_token={JOB_RUNNING}"), None).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().starts_with(&[0x1f, 0x8b]));
    // An id packrat does not list is asked upstream with the client's query, minus the token.
    let r = get(
        &format!("{base}/api/v4/projects/42/packages/999999?private_token={ALICE_PAT}&x=1"),
        None,
    )
    .await;
    assert!(
        r.status().is_success() || r.status() == 404,
        "{}",
        r.status()
    );

    let log = fake.request_log();
    assert!(
        log.iter().any(
            |rec| rec.path.ends_with("/packages/999999") && rec.query.as_deref() == Some("x=1")
        ),
        "the Packages API query went upstream without its token: {log:?}"
    );
    for rec in &log {
        let query = rec.query.clone().unwrap_or_default();
        assert!(
            !query.contains("token") && !query.contains(ALICE_PAT) && !query.contains(JOB_RUNNING),
            "a token went upstream in a URL: {} ?{query}",
            rec.path
        );
    }
    assert!(
        log.iter().any(|rec| rec.path.contains("@acme%2fui")
            && rec
                .headers
                .get("private-token")
                .is_some_and(|v| v == ALICE_PAT)),
        "the query token went upstream as PRIVATE-TOKEN"
    );
    assert!(
        log.iter().any(|rec| rec.path.ends_with(".tgz")
            && rec
                .headers
                .get("job-token")
                .is_some_and(|v| v == JOB_RUNNING)),
        "the query job token went upstream as JOB-TOKEN"
    );
    assert!(
        packrat
            .wait_for_log(&["served"], Duration::from_secs(5))
            .await
    );
    let logs = packrat.logs();
    for secret in [ALICE_PAT, JOB_RUNNING, "private_token", "job_token"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
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
