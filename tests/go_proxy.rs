//! packrat as a Go module proxy in front of the fake GitLab and the fake checksum database:
//! the real go command over HTTPS with `.netrc` (project route, `/go/`, upstream stopped),
//! GOSUMDB verification through `/go/sumdb/`, bad input, ill-formed zips, fall-through,
//! `@latest`.

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::clients::{describe, Go};
use crate::support::fake_gitlab::go::{h1_mod, h1_zip, GoFault, GO_HOST};
use crate::support::fake_gitlab::{FakeGitlab, World, ALICE_PAT, BOB_PAT, JOB_RUNNING};
use crate::support::fake_sumdb::{entries_for, FakeSumdb};
use crate::support::packrat::{Packrat, TestCert};
use crate::support::poll;
use crate::support::require_tool;

const WEB: &str = "gitlab.example.com/acme/web";

/// The program every go-command test builds: three private modules (one of them a `/v2`
/// major, one upper-case: `!utils` on the wire), one of them also a dependency of another.
pub(crate) const APP_GO_MOD: &str = "module example.com/app

go 1.19

require (
\tgitlab.example.com/acme/Utils v1.0.0
\tgitlab.example.com/acme/web v1.1.0
\tgitlab.example.com/acme/web/v2 v2.0.0
)
";

pub(crate) const APP_MAIN_GO: &str = r#"package main

import (
	"fmt"

	"gitlab.example.com/acme/Utils/strutil"
	"gitlab.example.com/acme/web"
	"gitlab.example.com/acme/web/greet"
	"gitlab.example.com/acme/web/mathx"
	webv2 "gitlab.example.com/acme/web/v2"
)

func main() {
	fmt.Println(greet.Hello("packrat"), "|", mathx.Add(2, 3), "|", web.Version(), "|", webv2.Version(), "|", strutil.Shout("ok"))
}
"#;

/// What the built program prints when every module resolved to the right version.
pub(crate) const APP_OUTPUT: &str = "HELLO PACKRAT! from web v1.1.0 | 5 | v1.1.0 | v2.0.0 | OK!";

/// (module, version) of the program's module graph.
const GRAPH: &[(&str, &str)] = &[
    ("gitlab.example.com/acme/Utils", "v1.0.0"),
    ("gitlab.example.com/acme/web", "v1.1.0"),
    ("gitlab.example.com/acme/web/v2", "v2.0.0"),
];

/// `[[go.modules]]`: everything under acme/ lives in project 42, except acme/Utils (by path).
pub(crate) const GO_MODULES: &str =
    "[[go.modules]]\nprefix = \"gitlab.example.com/acme\"\nproject = 42\n\n\
     [[go.modules]]\nprefix = \"gitlab.example.com/acme/Utils\"\nproject = \"acme/Utils\"\n";

/// packrat with `[[go.modules]]`, the fake sumdb (if any) as `forwarding.go_sumdb`, and TLS
/// when a certificate is given.
async fn start_packrat(
    fake: &FakeGitlab,
    sumdb: Option<&FakeSumdb>,
    tls: Option<&TestCert>,
) -> Packrat {
    start_packrat_with(fake, sumdb, tls, "").await
}

/// [`start_packrat`] with more `[forwarding]` keys (e.g. `go_proxy`) and rules after it.
async fn start_packrat_with(
    fake: &FakeGitlab,
    sumdb: Option<&FakeSumdb>,
    tls: Option<&TestCert>,
    forwarding_extra: &str,
) -> Packrat {
    let forwarding = sumdb.map_or(String::new(), |s| {
        format!(
            "[forwarding]\ngo_sumdb = \"{}\"\n{forwarding_extra}\n",
            s.url()
        )
    });
    let mut packrat = Packrat::builder().upstream(&fake.url());
    if let Some(cert) = tls {
        packrat = packrat.tls(cert);
    }
    packrat
        .toml(&format!("{forwarding}\n{GO_MODULES}"))
        .start()
        .await
}

/// A go command that talks to packrat over HTTPS with alice's PAT in `.netrc`.
fn go_client(cert: &TestCert, goproxy: &str) -> Go {
    let mut go = Go::new();
    go.netrc("127.0.0.1", "alice", ALICE_PAT);
    go.env("SSL_CERT_FILE", &cert.cert_path().display().to_string())
        .env("GOPROXY", goproxy)
        // Private modules are not in the public checksum database (which is unreachable
        // here: any attempt to ask it would fail the test).
        .env("GOSUMDB", "sum.golang.org")
        .env("GONOSUMDB", GO_HOST);
    go.write_module(APP_GO_MOD, APP_MAIN_GO);
    go
}

/// `go mod download`, `go build`, run the program: it must print [`APP_OUTPUT`].
async fn download_build_run(go: &Go, packrat: &Packrat, what: &str) {
    let out = go.run(&["mod", "download"]).await;
    assert!(
        out.status.success(),
        "{what}: go mod download\n{}\n--- packrat ---\n{}",
        describe(&out),
        packrat.logs()
    );
    let out = go.run(&["build", "-o", "app", "."]).await;
    assert!(
        out.status.success(),
        "{what}: go build\n{}\n--- packrat ---\n{}",
        describe(&out),
        packrat.logs()
    );
    let out = go.exec(&go.project_dir().join("app"), &[]).await;
    assert!(out.status.success(), "{what}: ./app\n{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        APP_OUTPUT,
        "{what}"
    );
}

/// The go.sum lines of the program's graph, from the fake's own zips and go.mod files.
pub(crate) fn expected_go_sum(fake: &FakeGitlab) -> String {
    fake.with_world(|w| {
        GRAPH
            .iter()
            .map(|(m, v)| {
                format!(
                    "{m} {v} {}\n{m} {v}/go.mod {}\n",
                    h1_zip(&w.go_zip(m, v).unwrap()),
                    h1_mod(&w.go_mod(m, v).unwrap())
                )
            })
            .collect()
    })
}

// ---- the real go command ---------------------------------------------------------------------

/// GitLab's setup (GOPROXY = a project route, `.netrc`), then packrat's `/go/`, then both
/// again with the upstream stopped and a fresh module cache.
#[tokio::test]
async fn go_builds_through_the_project_route_and_go_endpoint_then_from_cache() {
    require_tool!("go");
    let cert = TestCert::new();
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_packrat(&fake, None, Some(&cert)).await;
    let base = packrat.url().to_string();
    assert!(base.starts_with("https://"), "{base}");
    // acme/Utils is not in project 42: the go command gets a 404 there and falls through to
    // the next entry (a path-style project id, %2F and all).
    let project_route = format!(
        "{base}/api/v4/projects/42/packages/go,{base}/api/v4/projects/acme%2FUtils/packages/go"
    );
    let go = go_client(&cert, &project_route);
    download_build_run(&go, &packrat, "project route").await;
    assert_eq!(go.go_sum().unwrap(), expected_go_sum(&fake));
    // Basic auth from .netrc reached GitLab; each zip was fetched once.
    let log = fake.request_log();
    assert!(log.iter().any(|r| r.path.contains("/packages/go/")));
    assert!(log
        .iter()
        .filter(|r| r.path.contains("/packages/go/"))
        .all(|r| r.credentials == [crate::support::fake_gitlab::CredentialKind::Basic]));
    for (m, v) in GRAPH {
        let escaped = m.replace("Utils", "!utils");
        assert_eq!(fake.requests(&format!("{escaped}/@v/{v}.zip")), 1, "{m}");
    }
    assert!(
        fake.requests("/projects/42/packages/go/gitlab.example.com/acme/!utils/") >= 1,
        "the 404 that sent the go command on to the next proxy"
    );

    // packrat's one endpoint for every module: same project caches, no new zip downloads.
    let zips_before = fake.requests(".zip");
    let go = go_client(&cert, &format!("{base}/go"));
    download_build_run(&go, &packrat, "/go/").await;
    assert_eq!(fake.requests(".zip"), zips_before);

    // Upstream stopped, fresh module caches: everything from packrat's cache, including the
    // 404 for acme/Utils in project 42 that the fall-through depends on.
    fake.go_down().await;
    for goproxy in [project_route, format!("{base}/go")] {
        let go = go_client(&cert, &goproxy);
        download_build_run(&go, &packrat, &format!("upstream down, {goproxy}")).await;
    }
}

/// GOSUMDB verification through packrat's `/go/sumdb/`: a public module is checked against
/// the checksum database, asked once per lookup and tile, then packrat answers alone (also
/// with the database stopped). Private modules are never looked up there (issue 5), even
/// though this database would know them: the client lists them in GONOSUMDB, and a client
/// that does not is refused by packrat rather than have their paths leak.
#[tokio::test]
async fn go_verifies_modules_against_the_checksum_database_through_packrat() {
    require_tool!("go");
    use crate::support::fake_public_go::{FakePublicGo, GREET};
    let cert = TestCert::new();
    let world = World::standard();
    let public = FakePublicGo::start().await;
    let mut entries = entries_for(&world);
    entries.extend(public.sumdb_entries());
    let sumdb = FakeSumdb::start(&entries).await;
    let fake = FakeGitlab::start(world).await;
    let packrat = start_packrat_with(
        &fake,
        Some(&sumdb),
        Some(&cert),
        &format!(
            "go_proxy = \"{}\"\n\n[[forwarding.rules]]\nmatch = \"example.com/pub/*\"\nforward = true\n",
            public.url()
        ),
    )
    .await;
    let base = packrat.url().to_string();
    let sumdb_url = format!("{base}/go/sumdb/{}", sumdb.name());
    let mut go = go_client(&cert, &format!("{base}/go"));
    go.env("GOSUMDB", &sumdb.gosumdb(&sumdb_url));
    let go_mod = APP_GO_MOD.replace("require (\n", &format!("require (\n\t{GREET} v1.1.0\n"));
    let main_go = APP_MAIN_GO
        .replace("import (\n", &format!("import (\n\tpub \"{GREET}\"\n"))
        .replace(
            "strutil.Shout(\"ok\"))",
            "strutil.Shout(\"ok\"), \"|\", pub.Hello(\"go\"))",
        );
    let output = format!("{APP_OUTPUT} | hello go from public greet v1.1.0");
    let run = |what: &'static str| {
        let (go, packrat, output) = (&go, &packrat, &output);
        async move {
            let out = go.run(&["build", "-o", "app", "."]).await;
            assert!(
                out.status.success(),
                "{what}: go build\n{}\n--- packrat ---\n{}",
                describe(&out),
                packrat.logs()
            );
            let out = go.exec(&go.project_dir().join("app"), &[]).await;
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                output,
                "{what}"
            );
        }
    };
    go.write_module(&go_mod, &main_go);
    run("verified through packrat").await;
    let sum = go.go_sum().unwrap();
    for line in expected_go_sum(&fake).lines() {
        assert!(sum.contains(line), "{line} in\n{sum}");
    }
    assert_eq!(
        sumdb.requests(&format!("/lookup/{GREET}@v1.1.0")),
        1,
        "{:?}",
        sumdb.request_log()
    );
    assert_eq!(sumdb.requests("acme"), 0, "{:?}", sumdb.request_log());
    assert!(
        sumdb.requests("/tile/8/0/001.p/") >= 1,
        "{:?}",
        sumdb.request_log()
    );
    assert!(
        sumdb.requests("/tile/8/1/000.p/1") >= 1,
        "{:?}",
        sumdb.request_log()
    );
    let asked = sumdb.requests_total();

    // Fresh module cache, no go.sum, no sumdb client state: verified again, all from
    // packrat's cache.
    go.clear_modcache().await;
    go.write_module(&go_mod, &main_go);
    run("second run").await;
    assert_eq!(sumdb.requests_total(), asked, "{:?}", sumdb.request_log());
    sumdb.go_down().await;
    go.clear_modcache().await;
    go.write_module(&go_mod, &main_go);
    run("checksum database stopped").await;

    // A client that would check private modules too gets packrat's 404 for them; the
    // database never hears their names.
    go.clear_modcache().await;
    go.write_module(&go_mod, &main_go);
    go.env("GONOSUMDB", "");
    let out = go.run(&["mod", "download"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404 Not Found"),
        "{}",
        describe(&out)
    );
    assert_eq!(sumdb.requests("acme"), 0, "{:?}", sumdb.request_log());
}

/// The sumdb endpoints with reqwest: `supported`, `latest` under `metadata_ttl`, lookups and
/// tiles cached forever, other names and unknown records not found.
#[tokio::test]
async fn sumdb_proxy_caches_latest_lookups_and_tiles() {
    let world = World::standard();
    // A public module with an upper-case letter (`!` on the wire), as well as the world's.
    let mut entries = entries_for(&world);
    entries.push(crate::support::fake_sumdb::SumdbEntry {
        module: "example.com/Public/mod".into(),
        version: "v1.0.0".into(),
        zip_h1: h1_mod(b"zip"),
        mod_h1: h1_mod(b"module example.com/Public/mod\n"),
    });
    let sumdb = FakeSumdb::start(&entries).await;
    let fake = FakeGitlab::start(world).await;
    let packrat = start_packrat(&fake, Some(&sumdb), None).await;
    let client = reqwest::Client::new();
    let at = |rest: &str| format!("{}/go/sumdb/{}/{rest}", packrat.url(), sumdb.name());
    let get = |url: String| {
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let cache = r
                .headers()
                .get("x-packrat-cache")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, cache, r.bytes().await.unwrap())
        }
    };

    let (status, _, _) = get(at("supported")).await;
    assert_eq!(status, 200);
    assert_eq!(
        sumdb.requests_total(),
        0,
        "supported is packrat's own answer"
    );

    let (status, cache, body) = get(at("latest")).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    assert_eq!(body, sumdb.signed_tree().as_bytes());
    let (status, cache, body) = get(at("latest")).await;
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert_eq!(body, sumdb.signed_tree().as_bytes());
    assert_eq!(sumdb.requests("/latest"), 1);

    let lookup = "lookup/example.com/!public/mod@v1.0.0";
    let (status, cache, first) = get(at(lookup)).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    assert!(String::from_utf8_lossy(&first).contains("example.com/Public/mod v1.0.0 h1:"));
    // A private module ([[go.modules]]) is never looked up publicly, in either form.
    for private in [
        "lookup/gitlab.example.com/acme/!utils@v1.0.0",
        "lookup/gitlab.example.com/acme/%21utils@v1.0.0",
    ] {
        let (status, _, _) = get(at(private)).await;
        assert_eq!(status, 404, "{private}");
    }
    assert_eq!(sumdb.requests("acme"), 0, "{:?}", sumdb.request_log());
    // The go command's form (`!` as %21) is the same record, from the cache.
    let (status, _, again) = get(at(&lookup.replace('!', "%21"))).await;
    assert_eq!((status, again), (200, first));
    let tile = format!("tile/8/0/001.p/{}", sumdb.size() - 256);
    let (status, _, t1) = get(at(&tile)).await;
    assert_eq!((status, t1.len()), (200, 32 * (sumdb.size() - 256)));
    let (status, _, t2) = get(at(&tile)).await;
    assert_eq!((status, t2), (200, t1));
    let (status, _, data) = get(at("tile/8/data/000")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&data).starts_with("0\nexample.com/filler/m000 v1.0.0 h1:"));
    assert_eq!(sumdb.requests(&format!("/{lookup}")), 1);
    assert_eq!(sumdb.requests(&format!("/{tile}")), 1);

    // With the database stopped, what was fetched is still served.
    sumdb.go_down().await;
    for path in [lookup, tile.as_str(), "latest"] {
        let (status, _, _) = get(at(path)).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, _, _) = get(at("tile/8/0/000")).await;
    assert!(
        status >= 500,
        "never fetched and the database is down: {status}"
    );

    // Another database name is not proxied; nothing reaches the database for it.
    let (status, _, _) = get(format!("{}/go/sumdb/sum.golang.org/latest", packrat.url())).await;
    assert_eq!(status, 404);
}

/// A record the database does not have is a 404 through packrat, not a 5xx.
#[tokio::test]
async fn sumdb_proxy_passes_not_found_through() {
    let sumdb = FakeSumdb::start(&[]).await;
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_packrat(&fake, Some(&sumdb), None).await;
    let r = reqwest::get(format!(
        "{}/go/sumdb/{}/lookup/example.com/nope@v1.0.0",
        packrat.url(),
        sumdb.name()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let r = reqwest::get(format!(
        "{}/go/sumdb/{}/tile/8/0/005",
        packrat.url(),
        sumdb.name()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
}

// ---- HTTP-level behaviour (reqwest and raw requests) -----------------------------------------

async fn go_get(packrat: &Packrat, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut rb = reqwest::Client::new().get(format!("{}{path}", packrat.url()));
    if let Some(t) = token {
        rb = rb.header("PRIVATE-TOKEN", t);
    }
    rb.send().await.unwrap()
}

fn cache_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-packrat-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Sends exactly `path` (no client-side normalisation of `..`) and returns (status, body).
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nPRIVATE-TOKEN: {ALICE_PAT}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn health(packrat: &Packrat) {
    let r = go_get(packrat, "/-/health", None).await;
    assert_eq!(r.status(), 200, "server must stay healthy");
}

/// Invalid escapes, non-semver versions and `..` are answered at the edge: 400 for a bad
/// module path, 404 for what is not a version (so the go command falls through), and
/// neither the upstream nor the checksum database sees a request.
#[tokio::test]
async fn bad_module_paths_and_versions_never_reach_the_upstream() {
    let sumdb = FakeSumdb::start(&[]).await;
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_packrat(&fake, Some(&sumdb), None).await;
    let sum = format!("/go/sumdb/{}", sumdb.name());
    let cases: &[(&str, u16)] = &[
        ("/go/gitlab.example.com/acme/!!web/@v/list", 400),
        ("/go/gitlab.example.com/acme/!Aweb/@v/list", 400),
        ("/go/gitlab.example.com/acme/web!/@v/list", 400),
        ("/go/gitlab.example.com/acme/Web/@v/list", 400),
        ("/go/gitlab.example.com/acme/%21%21web/@v/list", 400),
        (
            "/api/v4/projects/42/packages/go/gitlab.example.com/acme/!!web/@v/list",
            400,
        ),
        (
            "/api/v4/projects/42/packages/go/gitlab.example.com/acme/!Aweb/@v/v1.0.0.zip",
            400,
        ),
        ("/go/gitlab.example.com/../etc/@v/list", 400),
        ("/go/gitlab.example.com/acme/%2e%2e/web/@v/list", 400),
        ("/go/gitlab.example.com/acme/./web/@v/list", 400),
        ("/go/gitlab.example.com//acme/web/@v/list", 400),
        ("/go/gitlab.example.com/acme/web/@v/../../x/@v/list", 400),
        (
            "/api/v4/projects/42/packages/go/gitlab.example.com/../../etc/@v/list",
            400,
        ),
        ("/go/gitlab.example.com/acme/web/@v/master.info", 404),
        ("/go/gitlab.example.com/acme/web/@v/v1.0.info", 404),
        ("/go/gitlab.example.com/acme/web/@v/1.0.0.mod", 404),
        ("/go/gitlab.example.com/acme/web/@v/v01.0.0.zip", 404),
        ("/go/gitlab.example.com/acme/web/@v/v1.0.0-!!x.info", 404),
        ("/go/gitlab.example.com/acme/web/@v/v1.0.0-Rc.info", 404),
        ("/go/gitlab.example.com/acme/web/@v/v1.0.0.tar", 404),
        ("/go/gitlab.example.com/acme/web/@v/..%2Fv1.0.0.zip", 404),
        (
            "/api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/latest.info",
            404,
        ),
        (
            "/api/v4/projects/..%2F..%2Fetc/packages/go/gitlab.example.com/acme/web/@v/list",
            404,
        ),
        // No mapping and not under the upstream's host: not here.
        ("/go/example.org/x/@v/list", 404),
        ("/go/example.org/x/@latest", 404),
        (&format!("{sum}/../../etc/passwd"), 404),
        (&format!("{sum}/tile/8/../../../etc/passwd"), 404),
        (&format!("{sum}/tile/%2e%2e/%2e%2e/etc/passwd"), 404),
        (&format!("{sum}/lookup/a%20b@v1.0.0"), 404),
        (&format!("{sum}/nope"), 404),
        ("/go/sumdb/other.example/latest", 404),
    ];
    for (path, status) in cases {
        let (got, body) = raw_get(packrat.url(), path).await;
        assert_eq!(got, *status, "{path}: {body}");
        let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let message = doc["message"].as_str().unwrap_or_default();
        let expected = if *status == 400 {
            "400 Bad request - "
        } else {
            "404 "
        };
        assert!(message.starts_with(expected), "{path}: {body}");
    }
    assert_eq!(fake.requests_total(), 0, "{:?}", fake.request_log());
    assert_eq!(sumdb.requests_total(), 0, "{:?}", sumdb.request_log());
    health(&packrat).await;
}

/// Ill-formed zips (entries outside `<module>@<version>/`, `..` entries, a zip expanding past
/// 500 MiB, not a zip at all, duplicate entries, names equal but for case) and an oversized go.mod are refused and never cached: the next
/// request goes upstream again, and once the upstream serves the real zip it is cached.
#[tokio::test]
async fn ill_formed_zips_are_refused_and_never_cached() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_packrat(&fake, None, None).await;
    let zip = format!("/go/{WEB}/@v/v1.1.0.zip");
    for (fault, why) in [
        (GoFault::ZipOutsidePrefix, "is outside"),
        (GoFault::ZipDotDot, "unsafe path"),
        (GoFault::ZipTooBig, "expands beyond"),
        (GoFault::ZipGarbage, "not a valid zip"),
        (GoFault::ZipDuplicate, "appears more than once"),
        (GoFault::ZipCaseCollision, "collide when case is ignored"),
    ] {
        fake.go_fault(WEB, "v1.1.0", fault);
        for attempt in 1..=2 {
            let before = fake.requests("/@v/v1.1.0.zip");
            // Refused with a clean error response (never a 200 whose body is then cut).
            let r = go_get(&packrat, &zip, Some(ALICE_PAT)).await;
            assert_eq!(r.status(), 502, "{fault:?} #{attempt}");
            let doc: Value = r.json().await.unwrap();
            let message = doc["message"].as_str().unwrap_or_default();
            assert!(message.contains(why), "{fault:?} #{attempt}: {doc}");
            assert_eq!(
                fake.requests("/@v/v1.1.0.zip"),
                before + 1,
                "{fault:?} #{attempt}: nothing was cached, so the upstream is asked again"
            );
            health(&packrat).await;
        }
    }
    fake.go_fault(WEB, "v1.1.0", GoFault::ModTooBig);
    let module = format!("/go/{WEB}/@v/v1.1.0.mod");
    for attempt in 1..=2 {
        let before = fake.requests("/@v/v1.1.0.mod");
        let r = go_get(&packrat, &module, Some(ALICE_PAT)).await;
        assert_eq!(r.status(), 502, "oversized go.mod #{attempt}");
        let doc: Value = r.json().await.unwrap();
        assert!(
            doc["message"]
                .as_str()
                .is_some_and(|m| m.contains("larger than the limit")),
            "{doc}"
        );
        assert_eq!(fake.requests("/@v/v1.1.0.mod"), before + 1);
    }

    fake.clear_go_faults();
    let good = fake.with_world(|w| w.go_zip(WEB, "v1.1.0").unwrap());
    let r = go_get(&packrat, &zip, Some(ALICE_PAT)).await;
    assert_eq!((r.status().as_u16(), cache_of(&r).as_str()), (200, "miss"));
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(r.bytes().await.unwrap(), good);
    let r = go_get(&packrat, &zip, Some(ALICE_PAT)).await;
    assert_eq!((r.status().as_u16(), cache_of(&r).as_str()), (200, "hit"));
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(r.bytes().await.unwrap(), good);
    health(&packrat).await;
}

/// The go command moves to the next GOPROXY entry only on 404/410: a module that does not
/// live in a project is a 404, also once the upstream is down; `@latest` (which GitLab lacks)
/// is the highest release; credentials work as GitLab takes them.
#[tokio::test]
async fn fall_through_latest_and_credentials() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_packrat(&fake, None, None).await;
    let p42 = "/api/v4/projects/42/packages/go";
    let status = |r: &reqwest::Response| r.status().as_u16();

    // Not in this project / no such version → 404 with GitLab's body.
    for path in [
        format!("{p42}/gitlab.example.com/acme/!utils/@v/list"),
        format!("{p42}/gitlab.example.com/acme/!utils/@v/v1.0.0.mod"),
        format!("{p42}/gitlab.example.com/acme/!utils/@latest"),
        format!("{p42}/{WEB}/@v/v9.9.9.info"),
        format!("{p42}/{WEB}/@v/v2.0.0.zip"),
        format!("/go/{WEB}/v3/@v/v3.0.0.info"),
    ] {
        let r = go_get(&packrat, &path, Some(ALICE_PAT)).await;
        assert_eq!(status(&r), 404, "{path}");
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["message"], "404 Not Found", "{path}");
    }

    // @latest: v1.10.0 beats v1.9.0 (semver, not text) and the pre-release v1.11.0-rc.1.
    for (path, version) in [
        (format!("{p42}/{WEB}/@latest"), "v1.10.0"),
        (format!("/go/{WEB}/@latest"), "v1.10.0"),
        (format!("/go/{WEB}/v2/@latest"), "v2.0.0"),
        (
            "/go/gitlab.example.com/acme/!utils/@latest".to_string(),
            "v1.0.0",
        ),
    ] {
        let r = go_get(&packrat, &path, Some(ALICE_PAT)).await;
        assert_eq!(status(&r), 200, "{path}");
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("must-revalidate"));
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["Version"], version, "{path}");
        assert!(
            doc["Time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2020-06-")),
            "{doc}"
        );
    }
    assert_eq!(fake.requests("@latest"), 0, "GitLab has no @latest");
    let r = go_get(&packrat, &format!("/go/{WEB}/@v/list"), Some(ALICE_PAT)).await;
    assert_eq!(
        r.text().await.unwrap(),
        "v1.0.0\nv1.1.0\nv1.10.0\nv1.11.0-rc.1\nv1.9.0"
    );
    let r = go_get(
        &packrat,
        "/go/gitlab.example.com/acme/!utils/@v/v1.0.1-!prerelease.info",
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(status(&r), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["Version"], "v1.0.1-Prerelease");

    // Credentials as GitLab takes them; 401 anonymous, 404 for a non-member.
    let info = format!("{}{p42}/{WEB}/@v/v1.0.0.info", packrat.url());
    let client = reqwest::Client::new();
    for (name, value) in [
        ("PRIVATE-TOKEN", ALICE_PAT.to_string()),
        ("Authorization", format!("Bearer {ALICE_PAT}")),
        ("Job-Token", JOB_RUNNING.to_string()),
    ] {
        let r = client.get(&info).header(name, value).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
    let r = client
        .get(&info)
        .basic_auth("anyone", Some(ALICE_PAT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Basic (.netrc)");
    let r = client.get(&info).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(&info)
        .header("PRIVATE-TOKEN", BOB_PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Upstream down: what is known not to be here is still 404 (never 5xx), what is known to
    // be here is still served.
    fake.go_down().await;
    for path in [
        format!("{p42}/gitlab.example.com/acme/!utils/@v/list"),
        format!("{p42}/gitlab.example.com/acme/!utils/@v/v1.0.0.mod"),
    ] {
        let r = go_get(&packrat, &path, Some(ALICE_PAT)).await;
        assert_eq!(status(&r), 404, "{path} with the upstream down");
    }
    let r = go_get(&packrat, &format!("/go/{WEB}/@latest"), Some(ALICE_PAT)).await;
    assert_eq!(status(&r), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["Version"], "v1.10.0");
    // Never seen and the upstream is down: packrat cannot check access, and says so with
    // the answer a cached module would get from an unchecked caller.
    let r = go_get(
        &packrat,
        &format!("{p42}/{WEB}/nothing/@v/list"),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(status(&r), 502);
    health(&packrat).await;
}

// ---- `/go/` without a mapping, freshness, metrics and errors ---------------------------------

/// packrat with nothing but `upstream_extra` under `[upstream]` and `rest` after it: no
/// `[[go.modules]]` unless `rest` has them.
async fn start_plain(fake: &FakeGitlab, upstream_extra: &str, rest: &str) -> Packrat {
    Packrat::builder()
        .upstream(&fake.url())
        .upstream_keys(upstream_extra)
        .toml(rest)
        .start()
        .await
}

/// (status, body) of a GET with `PRIVATE-TOKEN: token` (if any).
async fn status_text(packrat: &Packrat, path: &str, token: Option<&str>) -> (u16, String) {
    let r = go_get(packrat, path, token).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `/go/` without `[[go.modules]]`: a module under `go.host` (the fake's module host, not the
/// 127.0.0.1 packrat reaches it at) names its project in its path. packrat tries the longest
/// prefix first, takes GitLab's 401 (anonymous: a project that does not exist or is private)
/// and 404 as "try the next one", answers 401 when only credentials were missing, and
/// remembers what it found.
#[tokio::test]
async fn go_endpoint_resolves_modules_under_go_host_without_a_mapping() {
    let mut world = World::standard();
    // The public pub/lib gains a module two directories down and a /v2 major.
    let lib = |m: &str| format!("module {GO_HOST}/pub/lib{m}\n\ngo 1.19\n");
    let (root, deep, v2) = (lib(""), lib("/sub/deep"), lib("/v2"));
    let sha = world.add_go_commit(
        7,
        1_593_000_000,
        &[
            ("go.mod", root.as_str()),
            ("lib.go", "package lib\n"),
            ("sub/deep/go.mod", deep.as_str()),
            ("sub/deep/deep.go", "package deep\n"),
            ("v2/go.mod", v2.as_str()),
            ("v2/lib.go", "package lib\n"),
        ],
    );
    world
        .add_go_tag(7, "v0.2.0", &sha)
        .add_go_tag(7, "v2.0.0", &sha);
    let fake = FakeGitlab::start(world).await;
    let packrat = start_plain(&fake, "", &format!("[go]\nhost = \"{GO_HOST}\"\n")).await;
    let at = |m: &str, file: &str| format!("/go/{GO_HOST}/{m}/@v/{file}");

    // Anonymous, public project: found past the 401s for pub/lib/sub/deep and pub/lib/sub.
    assert_eq!(
        status_text(&packrat, &at("pub/lib/sub/deep", "list"), None).await,
        (200, "v0.2.0".to_string())
    );
    assert_eq!(
        status_text(&packrat, &at("pub/lib/v2", "list"), None).await,
        (200, "v2.0.0".to_string())
    );
    assert!(fake.requests("/projects/pub%2Flib%2Fsub%2Fdeep/") >= 1);
    assert!(fake.requests("/projects/pub%2Flib%2Fv2/") >= 1);

    // Private project: anonymous gets GitLab's 401, a non-member 404, a member the module.
    let tools = at("acme/web/tools", "list");
    let (status, body) = status_text(&packrat, &tools, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(status_text(&packrat, &tools, Some(BOB_PAT)).await.0, 404);
    let (status, body) = status_text(&packrat, &tools, Some(ALICE_PAT)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("v1.0.0\n"), "{body}");
    let (status, body) =
        status_text(&packrat, &at("acme/web/v2", "v2.0.0.info"), Some(ALICE_PAT)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"v2.0.0\""), "{body}");
    // Under the host but in no project: 404 with a token, 401 without.
    let nope = at("nope/x", "list");
    assert_eq!(status_text(&packrat, &nope, Some(ALICE_PAT)).await.0, 404);
    assert_eq!(status_text(&packrat, &nope, None).await.0, 401);

    // Remembered: later requests go straight to the project, never probing again, and the
    // gate still decides per caller.
    let probes = [
        fake.requests("/projects/acme%2Fweb%2Ftools/"),
        fake.requests("/projects/pub%2Flib%2Fsub"),
        fake.requests("/projects/pub%2Flib%2Fv2/"),
    ];
    let (status, body) = status_text(
        &packrat,
        &at("acme/web/tools", "v1.0.0.info"),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_text(&packrat, &tools, None).await.0, 401);
    assert_eq!(status_text(&packrat, &tools, Some(BOB_PAT)).await.0, 404);
    let (status, body) = status_text(&packrat, &at("pub/lib/sub/deep", "v0.2.0.info"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = status_text(&packrat, &at("pub/lib/v2", "v2.0.0.mod"), None).await;
    assert_eq!((status, body), (200, v2.clone()));
    assert_eq!(
        [
            fake.requests("/projects/acme%2Fweb%2Ftools/"),
            fake.requests("/projects/pub%2Flib%2Fsub"),
            fake.requests("/projects/pub%2Flib%2Fv2/"),
        ],
        probes,
        "{:?}",
        fake.request_log()
    );
    assert_eq!(
        fake.requests(&format!(
            "/projects/acme%2Fweb/packages/go/{GO_HOST}/acme/web/tools/@v/v1.0.0.info"
        )),
        1
    );
    assert_eq!(
        fake.requests(&format!(
            "/projects/pub%2Flib/packages/go/{GO_HOST}/pub/lib/sub/deep/@v/v0.2.0.info"
        )),
        1
    );
    health(&packrat).await;
}

/// `list` and `@latest` follow `metadata_ttl`: revalidated once it passed (a newly published
/// version appears in both), and with the upstream down the stale list is served with
/// `Warning: 110`, as is an `@latest` computed from it.
#[tokio::test]
async fn go_list_and_latest_revalidate_after_the_ttl_and_serve_stale_on_error() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_plain(
        &fake,
        "",
        &format!("[cache]\nmetadata_ttl = \"1s\"\n\n{GO_MODULES}"),
    )
    .await;
    let list = format!("/go/{WEB}/@v/list");
    let latest = format!("/go/{WEB}/@latest");
    let stale = "110 - \"Response is Stale\"";
    let version_of = |body: &str| -> String {
        let doc: Value = serde_json::from_str(body).unwrap();
        doc["Version"].as_str().unwrap_or_default().to_string()
    };

    let r = go_get(&packrat, &list, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("warning").is_none());
    assert!(!r.text().await.unwrap().contains("v1.12.0"));
    let (status, body) = status_text(&packrat, &latest, Some(ALICE_PAT)).await;
    assert_eq!((status, version_of(&body)), (200, "v1.10.0".to_string()));
    let asked = fake.requests(&format!("{WEB}/@v/list"));

    // A new release upstream; once the TTL passed, list and @latest show it.
    fake.with_world(|w| {
        let sha = w.go[&42].tags["v1.10.0"].clone();
        w.add_go_tag(42, "v1.12.0", &sha);
    });
    // Until the TTL passed the list is a hit that asks nothing upstream.
    let list_answer = || async {
        let r = go_get(&packrat, &list, Some(ALICE_PAT)).await;
        let warning = r
            .headers()
            .get("warning")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status(), warning, r.text().await.unwrap())
    };
    let (status, warning, body) = poll::eventually(
        "the list shows v1.12.0 once the TTL passed",
        poll::DEADLINE,
        list_answer,
        |(_, _, body)| body.lines().any(|l| l == "v1.12.0"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(warning.is_none());
    assert!(body.lines().any(|l| l == "v1.12.0"), "{body}");
    assert!(
        fake.requests(&format!("{WEB}/@v/list")) > asked,
        "the list was revalidated upstream"
    );
    let r = go_get(&packrat, &latest, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("warning").is_none());
    assert_eq!(version_of(&r.text().await.unwrap()), "v1.12.0");

    // Upstream down and the TTL passed again: stale, and saying so.
    fake.go_down().await;
    // Until the TTL passed again the list is a fresh hit, without a warning.
    let (status, warning, body) = poll::eventually(
        "the list is stale once the TTL passed",
        poll::DEADLINE,
        list_answer,
        |(_, warning, _)| warning.is_some(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(warning.as_deref(), Some(stale));
    assert!(body.lines().any(|l| l == "v1.12.0"));
    let r = go_get(&packrat, &latest, Some(ALICE_PAT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["warning"], stale, "@latest from a stale list");
    assert_eq!(version_of(&r.text().await.unwrap()), "v1.12.0");
    health(&packrat).await;
}

/// `/-/metrics` counts the Go routes; a Go read whose access is decided gets a 504 with a
/// clear sentence when the upstream is slower than `upstream.timeout`, and a 502 when it is
/// down and nothing is cached, both GitLab-shaped.
#[tokio::test]
async fn go_routes_are_counted_and_upstream_failures_are_502_and_504() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = start_plain(&fake, "timeout = \"1s\"", GO_MODULES).await;
    for path in [
        format!("/go/{WEB}/@v/list"),
        format!("/go/{WEB}/@latest"),
        format!("/go/{WEB}/@v/v1.0.0.info"),
        "/go/sumdb/sum.golang.org/supported".to_string(),
    ] {
        let (status, body) = status_text(&packrat, &path, Some(ALICE_PAT)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // Slower than upstream.timeout: 504.
    fake.delay_matching("/@v/v1.1.0.zip", std::time::Duration::from_secs(3));
    let (status, body) = status_text(
        &packrat,
        &format!("/go/{WEB}/@v/v1.1.0.zip"),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(
        doc["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer within 1s")),
        "{body}"
    );
    fake.clear_faults();

    // Down, and this zip was never fetched: 502.
    fake.go_down().await;
    let (status, body) = status_text(
        &packrat,
        &format!("/go/{WEB}/@v/v1.9.0.zip"),
        Some(ALICE_PAT),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(
        doc["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be reached")),
        "{body}"
    );

    let metrics = status_text(&packrat, "/-/metrics", None).await.1;
    let counted = |route: &str, status: u16| {
        metrics.lines().any(|l| {
            l.starts_with("packrat_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
    };
    for (route, status) in [
        ("go_list", 200),
        ("go_latest", 200),
        ("go_file", 200),
        ("go_sumdb", 200),
        ("go_file", 504),
        ("go_file", 502),
    ] {
        assert!(counted(route, status), "{route} {status}\n{metrics}");
    }
    health(&packrat).await;
}
