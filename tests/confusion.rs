//! Dependency confusion (SPEC §5, issue 5): a fake public npm registry serves a higher,
//! malicious version of a private name. Through packrat the client only ever gets GitLab's
//! versions; once GitLab forgets the name, packrat answers 404, counts and reports the block;
//! unrelated public names are forwarded only where a rule allows it; the real npm client
//! installs a private + public tree through one packrat URL.

use std::time::Duration;

use serde_json::Value;

use base64::Engine as _;

use crate::support::clients::{describe, Go, Npm};
use crate::support::fake_gitlab::world::{ALICE_PAT, BOB_PAT};
use crate::support::fake_gitlab::{FakeGitlab, NpmPkg, World};
use crate::support::fake_public_go::{greet, FakePublicGo, GREET};
use crate::support::fake_public_npm::{FakePublicNpm, PublicPkg, ABBREVIATED};
use crate::support::fake_sumdb::FakeSumdb;
use crate::support::http::{get, get_json, get_text, metric};
use crate::support::packrat::{Packrat, TestCert, OPS_TOKEN};
use crate::support::require_tool;

const BLOCKED: &str = "packrat_dependency_confusion_blocked_total";
const P42: &str = "/api/v4/projects/42/packages/npm";
const INSTANCE: &str = "/api/v4/packages/npm";
/// How long a log line may lag the response that caused it.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// The public registry as an attacker left it: the standard public packages plus
/// `@acme/ui@99.0.0` (higher than anything in GitLab) whose code exports "EVIL".
async fn public_with_attack() -> FakePublicNpm {
    let public = FakePublicNpm::start().await;
    public.publish(PublicPkg::new("@acme/ui", "99.0.0").exports("EVIL"));
    public.publish(PublicPkg::new("@acme/brand-new", "1.0.0").exports("EVIL"));
    public
}

/// `[forwarding]` with the fake public registry and `rules` (TOML `[[forwarding.rules]]`
/// entries as (glob, forward)).
fn forwarding(public: &FakePublicNpm, rules: &[(&str, bool)], extra: &str) -> String {
    let mut toml = format!("[forwarding]\nnpm_registry = \"{}\"\n\n", public.url());
    for (glob, forward) in rules {
        toml.push_str(&format!(
            "[[forwarding.rules]]\nmatch = \"{glob}\"\nforward = {forward}\n\n"
        ));
    }
    format!("{extra}\n{toml}")
}

fn versions(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = doc["versions"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn ops() -> [(&'static str, &'static str); 1] {
    [("PRIVATE-TOKEN", OPS_TOKEN)]
}

fn alice() -> [(&'static str, &'static str); 1] {
    [("Authorization", "Bearer alice-pat")]
}

#[tokio::test]
async fn a_private_name_never_resolves_publicly_even_after_gitlab_forgets_it() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = public_with_attack().await;
    // The operator forgot a private rule: "*" forwards everything. The pin is the guard.
    // metadata_ttl = 0: every read revalidates, so packrat sees GitLab's 404 at once.
    let mut packrat = Packrat::start(
        &fake.url(),
        &forwarding(&public, &[("*", true)], "[cache]\nmetadata_ttl = \"0s\"\n"),
    )
    .await;
    let url = packrat.url();

    // Through packrat the client gets GitLab's versions only, at both prefixes and with
    // either Accept: versions are never merged with the public 99.0.0.
    for prefix in [P42, INSTANCE] {
        for accept in ["application/json", ABBREVIATED] {
            let (status, doc) = get_json(
                &format!("{url}{prefix}/@acme%2fui"),
                &[alice()[0], ("Accept", accept)],
            )
            .await;
            assert_eq!(status, 200, "{prefix} {accept}: {doc}");
            assert_eq!(versions(&doc), ["1.0.0", "1.1.0"], "{prefix} {accept}");
            assert_eq!(doc["dist-tags"]["latest"], "1.1.0");
        }
    }
    let tgz = format!("{url}{P42}/@acme/ui/-/@acme/ui-1.1.0.tgz");
    assert_eq!(get(&tgz, &alice()).await.status(), 200);
    // The attacker's tarball name, through packrat: not in the private packument, so 404.
    let evil_tgz = format!("{url}{P42}/@acme/ui/-/ui-99.0.0.tgz");
    assert_eq!(get(&evil_tgz, &alice()).await.status(), 404);
    assert_eq!(
        public.requests("@acme"),
        0,
        "a private name never reaches the public registry"
    );
    assert_eq!(metric(url, BLOCKED).await, 0.0);

    // GitLab forgets the package (deleted, or the project renamed): its metadata is a 404.
    fake.with_world(|w| {
        assert!(w.remove_npm(42, "@acme/ui", "1.0.0"));
        assert!(w.remove_npm(42, "@acme/ui", "1.1.0"));
    });
    for prefix in [P42, INSTANCE] {
        let (status, body) = get_json(&format!("{url}{prefix}/@acme%2fui"), &alice()).await;
        assert_eq!(
            status, 404,
            "{prefix}: the public package must not be served: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("404")),
            "GitLab's not-found body: {body}"
        );
    }
    assert_eq!(get(&evil_tgz, &alice()).await.status(), 404);
    assert_eq!(
        get(
            &format!("{url}{INSTANCE}/-/package/@acme%2fui/dist-tags"),
            &alice()
        )
        .await
        .status(),
        404
    );
    assert_eq!(public.requests("@acme"), 0, "still never asked publicly");
    assert!(
        metric(url, BLOCKED).await >= 3.0,
        "every blocked attempt is counted"
    );

    // The operator can see it: /-/pins names the pin and the blocked attempts, but only
    // for an ops token (the names are private): anyone else gets GitLab's 401.
    let pins_url = format!("{url}/-/pins");
    for who in [&[][..], &[("PRIVATE-TOKEN", "wrong")], &alice()] {
        let (status, body) = get_json(&pins_url, who).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body, serde_json::json!({"message": "401 Unauthorized"}));
    }
    let (status, pins) = get_json(&pins_url, &ops()).await;
    assert_eq!(status, 200);
    let (status, by_bearer) = get_json(
        &pins_url,
        &[("Authorization", &format!("Bearer {OPS_TOKEN}"))],
    )
    .await;
    assert_eq!((status, &by_bearer), (200, &pins), "same content by Bearer");
    let metrics = get_text(&format!("{url}/-/metrics"), &[]).await.1;
    assert!(
        !metrics.contains("acme"),
        "metrics carry counts, never names"
    );
    assert!(
        pins["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "npm" && p["name"] == "@acme/ui"),
        "{pins}"
    );
    let blocked = pins["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "@acme/ui")
        .unwrap_or_else(|| panic!("no blocked entry: {pins}"));
    assert_eq!(blocked["kind"], "npm");
    assert!(blocked["count"].as_u64().unwrap() >= 3, "{blocked}");
    // /-/status carries the same pins and blocked attempts, for the same operators only.
    let status_url = format!("{url}/-/status");
    let (status, body) = get_json(&status_url, &alice()).await;
    assert_eq!(
        (status, body),
        (401, serde_json::json!({"message": "401 Unauthorized"}))
    );
    let (status, report) = get_json(&status_url, &ops()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["blocked"]["items"], pins["blocked"], "{report}");
    assert_eq!(report["pins"]["items"], pins["pins"], "{report}");
    assert!(report["dependency_confusion_blocked"].as_u64().unwrap() >= 3);
    assert!(
        packrat
            .wait_for_log(
                &["WARN", "dependency confusion blocked", "@acme/ui"],
                LOG_WAIT
            )
            .await,
        "a warning names the package:\n{}",
        packrat.logs()
    );

    // `packrat pins` prints the same report from the data directory once serve let go of it.
    packrat.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_packrat"))
        .args(["pins", "--config"])
        .arg(packrat.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, pins);
}

#[tokio::test]
async fn pins_endpoint_is_off_without_ops_tokens() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::builder()
        .upstream(&fake.url())
        .without_ops_tokens()
        .start()
        .await;
    for who in [&[][..], &ops()] {
        let (status, body) = get_json(&format!("{}/-/pins", packrat.url()), who).await;
        assert_eq!(status, 404, "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("server.ops_tokens"), "{body}");
    }
}

/// Guessing operator tokens: every wrong one counts against one budget across the operator
/// endpoints; past it every token, right ones too, is a 429 until the window turns.
#[tokio::test]
async fn wrong_operator_tokens_past_the_budget_are_429_on_every_operator_endpoint() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = packrat.url();
    let mut statuses = Vec::new();
    // 60 guesses: even if a window turns during the loop, one window sees more than 20.
    for i in 0..60 {
        let endpoint = if i % 2 == 0 { "/-/pins" } else { "/-/status" };
        let wrong = format!("Bearer wrong-{i}");
        let (status, _) = get_json(&format!("{url}{endpoint}"), &[("Authorization", &wrong)]).await;
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|&&s| s == 401).count() <= 20,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "no budget: {statuses:?}");
    let (status, body) = get_json(&format!("{url}/-/pins"), &ops()).await;
    assert!(status == 429 || status == 200, "{status} {body}");
}

/// The public registry down is not GitLab down: a forwarded name says which upstream failed
/// (502), not the outage refusal for GitLab-checked access.
#[tokio::test]
async fn an_unreachable_public_registry_is_a_502_naming_it() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(
        &fake.url(),
        "[forwarding]\nnpm_registry = \"http://127.0.0.1:9\"\n\n\
         [[forwarding.rules]]\nmatch = \"*\"\nforward = true\n",
    )
    .await;
    let (status, body) = get_json(&format!("{}{INSTANCE}/left-pad", packrat.url()), &[]).await;
    assert_eq!(status, 502, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("127.0.0.1:9"), "{body}");
}

#[tokio::test]
async fn a_caller_without_access_never_gets_the_public_package() {
    // Cold cache, nothing pinned yet, and a rule that forwards everything: GitLab's refusal
    // (404 for a non-member, 401 anonymous) must not turn into a public fallback.
    let fake = FakeGitlab::start(World::standard()).await;
    let public = public_with_attack().await;
    let packrat = Packrat::start(&fake.url(), &forwarding(&public, &[("*", true)], "")).await;
    let url = packrat.url();
    for prefix in [P42, INSTANCE, "/api/v4/groups/acme/-/packages/npm"] {
        let meta = format!("{url}{prefix}/@acme%2fui");
        let (status, body) = get_json(&meta, &[("PRIVATE-TOKEN", BOB_PAT)]).await;
        assert_eq!(status, 404, "Bob via {prefix}: {body}");
        assert!(versions(&body).is_empty(), "no packument for Bob: {body}");
        let (status, body) = get_json(&meta, &[]).await;
        assert_eq!(status, 401, "anonymous via {prefix}: {body}");
    }
    let (status, _) = get_json(
        &format!("{url}{P42}/@acme/ui/-/ui-99.0.0.tgz"),
        &[("PRIVATE-TOKEN", BOB_PAT)],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(public.requests("@acme"), 0, "{:?}", public.request_log());
    assert_eq!(
        metric(url, BLOCKED).await,
        0.0,
        "a refusal is not a confusion attempt"
    );
    // Alice still gets the private package afterwards.
    let (status, doc) = get_json(&format!("{url}{INSTANCE}/@acme%2fui"), &alice()).await;
    assert_eq!(status, 200);
    assert_eq!(versions(&doc), ["1.0.0", "1.1.0"]);
}

#[tokio::test]
async fn public_names_are_forwarded_only_where_a_rule_allows_it() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = public_with_attack().await;
    let rules = [("@acme/*", false), ("left-*", false), ("*", true)];
    let packrat = Packrat::start(&fake.url(), &forwarding(&public, &rules, "")).await;
    let url = packrat.url();

    // An unrelated public name that the "*" rule forwards: the full packument by default...
    let (status, full) = get_json(&format!("{url}{INSTANCE}/is-thing"), &alice()).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(versions(&full), ["1.0.0", "1.1.0"]);
    for key in ["time", "readme", "_id"] {
        assert!(
            full.get(key).is_some(),
            "full packument keeps {key}: {full}"
        );
    }
    let v = &full["versions"]["1.1.0"];
    assert_eq!(v["scripts"]["test"], "node test.js");
    assert_eq!(v["dependencies"]["left-pad"], "^1.0.0");
    assert_eq!(
        v["dist"]["integrity"].as_str(),
        public.integrity("is-thing", "1.1.0").as_deref()
    );
    assert!(v["dist"]["shasum"].is_string());
    let tarball = v["dist"]["tarball"].as_str().unwrap();
    assert_eq!(
        tarball,
        format!("{url}{INSTANCE}/is-thing/-/is-thing-1.1.0.tgz")
    );

    // ...the abbreviated one when npm asks for it.
    let r = get(
        &format!("{url}{INSTANCE}/is-thing"),
        &[
            alice()[0],
            (
                "Accept",
                "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*",
            ),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ABBREVIATED),
        "{:?}",
        r.headers()
    );
    let abbrev: Value = r.json().await.unwrap();
    assert_eq!(versions(&abbrev), ["1.0.0", "1.1.0"]);
    for key in ["time", "readme", "_id", "maintainers"] {
        assert!(
            abbrev.get(key).is_none(),
            "abbreviated drops {key}: {abbrev}"
        );
    }
    assert!(abbrev["modified"].is_string(), "{abbrev}");
    assert!(abbrev["versions"]["1.1.0"].get("scripts").is_none());
    assert_eq!(abbrev["versions"]["1.1.0"]["dist"]["tarball"], tarball);

    // The tarball comes through packrat, byte for byte, and is cached.
    let bytes = get(tarball, &alice()).await.bytes().await.unwrap();
    assert_eq!(bytes, public.tarball("is-thing", "1.1.0").unwrap());
    let again = get(tarball, &alice()).await;
    assert_eq!(crate::support::http::cache_outcome(&again), "hit");
    assert_eq!(public.requests("/is-thing/-/"), 1);
    // Forwarded packages are readable by anyone who may use the route.
    let (status, _) = get_json(&format!("{url}{INSTANCE}/is-thing"), &[]).await;
    assert_eq!(status, 200, "anonymous read of a public package");
    assert_eq!(get(tarball, &[]).await.status(), 200);
    // The public registry never sees a credential.
    assert!(public.request_log().iter().all(|r| !r.had_credentials));

    // A name whose first matching rule says forward = false: 404, never asked publicly.
    let (status, _) = get_json(&format!("{url}{INSTANCE}/left-pad"), &alice()).await;
    assert_eq!(status, 404);
    assert_eq!(public.requests("/left-pad"), 0);
    // @acme/* with forward = false: a name GitLab never had is not looked up publicly.
    let (status, _) = get_json(&format!("{url}{INSTANCE}/@acme%2fbrand-new"), &alice()).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&format!("{url}{P42}/@acme%2fbrand-new"), &alice()).await;
    assert_eq!(status, 404);
    assert_eq!(public.requests("@acme"), 0);
    // Names nobody has anywhere: 404.
    let (status, _) = get_json(&format!("{url}{INSTANCE}/no-such-thing"), &alice()).await;
    assert_eq!(status, 404);
    assert_eq!(metric(url, BLOCKED).await, 0.0);
}

#[tokio::test]
async fn nothing_is_forwarded_without_a_rule_or_a_registry() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicNpm::start().await;
    // A registry but no rules; rules but no registry.
    let no_rules = Packrat::start(&fake.url(), &forwarding(&public, &[], "")).await;
    let no_registry = Packrat::start(
        &fake.url(),
        "[[forwarding.rules]]\nmatch = \"*\"\nforward = true\n",
    )
    .await;
    for packrat in [&no_rules, &no_registry] {
        for path in [
            format!("{INSTANCE}/is-thing"),
            format!("{P42}/is-thing"),
            format!("{INSTANCE}/is-thing/-/is-thing-1.1.0.tgz"),
        ] {
            let (status, body) = get_json(&format!("{}{path}", packrat.url()), &alice()).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
    }
    assert_eq!(public.requests_total(), 0);
}

#[tokio::test]
async fn a_public_name_that_appears_in_gitlab_switches_to_gitlab() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicNpm::start().await;
    // negative_ttl = metadata_ttl = 0: neither GitLab's "not here" nor its document is
    // reused without asking, so each change shows at once.
    let packrat = Packrat::start(
        &fake.url(),
        &forwarding(
            &public,
            &[("*", true)],
            "[cache]\nnegative_ttl = \"0s\"\nmetadata_ttl = \"0s\"\n",
        ),
    )
    .await;
    let url = packrat.url();
    let meta = format!("{url}{P42}/is-thing");
    let (status, doc) = get_json(&meta, &alice()).await;
    assert_eq!(status, 200);
    assert_eq!(versions(&doc), ["1.0.0", "1.1.0"], "public versions first");

    // Someone publishes is-thing in project 42: GitLab wins from now on, nothing merged.
    fake.with_world(|w| {
        w.add_npm(42, NpmPkg::new("is-thing", "7.0.0"));
    });
    let (status, doc) = get_json(&meta, &alice()).await;
    assert_eq!(status, 200);
    assert_eq!(versions(&doc), ["7.0.0"], "GitLab's versions only: {doc}");
    assert!(
        packrat
            .wait_for_log(&["now comes from GitLab", "is-thing"], LOG_WAIT)
            .await,
        "the switch is logged:\n{}",
        packrat.logs()
    );
    let (_, pins) = get_json(&format!("{url}/-/pins"), &ops()).await;
    assert!(
        pins["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "is-thing"),
        "{pins}"
    );
    // And when GitLab drops it again, the public package does not come back.
    fake.with_world(|w| assert!(w.remove_npm(42, "is-thing", "7.0.0")));
    let (status, _) = get_json(&meta, &alice()).await;
    assert_eq!(status, 404);
    assert!(metric(url, BLOCKED).await >= 1.0);
}

#[tokio::test]
async fn npm_installs_a_private_and_public_tree_through_one_url() {
    require_tool!("npm");
    let mut world = World::standard();
    // A private package that depends on a public one.
    world.add_npm(
        42,
        NpmPkg::new("@acme/mixed", "1.0.0").dep("is-thing", "^1.0.0"),
    );
    let fake = FakeGitlab::start(world).await;
    let public = public_with_attack().await;
    let packrat = Packrat::start(
        &fake.url(),
        &forwarding(&public, &[("@acme/*", false), ("*", true)], ""),
    )
    .await;
    let npm = Npm::new();
    // ONE registry URL for everything: packrat's instance-level npm endpoint.
    let registry = format!("{}{INSTANCE}/", packrat.url());
    npm.auth_token(&registry, ALICE_PAT);
    npm.write_package_json(&[
        ("@acme/ui", "*"),
        ("@acme/mixed", "^1.0.0"),
        ("left-pad", "^1.0.0"),
    ]);
    let out = npm
        .run(&[
            "install",
            "--no-audit",
            "--no-fund",
            "--registry",
            &registry,
        ])
        .await;
    assert!(
        out.status.success(),
        "npm install: {}\n{}",
        describe(&out),
        packrat.logs()
    );
    for (name, version) in [
        ("@acme/ui", "1.1.0"),
        ("@acme/utils", "1.2.0"),
        ("@acme/core", "2.0.0"),
        ("@acme/mixed", "1.0.0"),
        ("is-thing", "1.1.0"),
        ("left-pad", "1.3.0"),
    ] {
        assert_eq!(
            npm.installed_version(name).as_deref(),
            Some(version),
            "{name}"
        );
    }
    let ui = npm.require("@acme/ui").await;
    assert!(
        ui.contains("@acme/ui@1.1.0") && !ui.contains("EVIL"),
        "{ui}"
    );
    assert_eq!(
        npm.require("@acme/mixed").await,
        "@acme/mixed@1.0.0 (is-thing@1.1.0 (left-pad@1.3.0))"
    );
    // The lockfile names packrat for every package, public ones included.
    let lock = std::fs::read_to_string(npm.project_dir().join("package-lock.json")).unwrap();
    let lock: Value = serde_json::from_str(&lock).unwrap();
    for (path, entry) in lock["packages"].as_object().unwrap() {
        if path.is_empty() {
            continue;
        }
        let resolved = entry["resolved"].as_str().unwrap_or_default();
        assert!(
            resolved.starts_with(&registry),
            "{path} resolved from {resolved}"
        );
    }
    // The public registry saw only public names, and no credentials.
    assert_eq!(public.requests("@acme"), 0, "{:?}", public.request_log());
    assert!(public.requests("/is-thing") > 0 && public.requests("/left-pad") > 0);
    assert!(public.request_log().iter().all(|r| !r.had_credentials));
    // npm asked packrat for the abbreviated form, and packrat fetched the full one once.
    assert!(public
        .request_log()
        .iter()
        .filter(|r| !r.path.contains("/-/"))
        .all(|r| r.accept.as_deref() == Some("application/json")));
}

// ---- Go through /go/ ----------------------------------------------------------------------

/// `[[go.modules]]` for the standard world's private Go modules.
const GO_MODULES: &str = "[[go.modules]]\nprefix = \"gitlab.example.com/acme/web\"\nproject = 42\n\n\
                          [[go.modules]]\nprefix = \"gitlab.example.com/acme/Utils\"\nproject = 44\n";
const WEB: &str = "gitlab.example.com/acme/web";

/// The public Go proxy as an attacker left it: `example.com/pub/greet` plus
/// `gitlab.example.com/acme/web@v9.9.9` whose code says "EVIL".
async fn public_go_with_attack() -> FakePublicGo {
    let public = FakePublicGo::start().await;
    public.publish_evil(WEB, "v9.9.9", &[("", "web"), ("greet", "greet")]);
    public
}

fn go_forwarding(public: &FakePublicGo, rules: &[(&str, bool)], extra: &str) -> String {
    let mut toml = format!("[forwarding]\ngo_proxy = \"{}\"\n\n", public.url());
    for (glob, forward) in rules {
        toml.push_str(&format!(
            "[[forwarding.rules]]\nmatch = \"{glob}\"\nforward = {forward}\n\n"
        ));
    }
    format!("{extra}\n{toml}")
}

fn basic_alice() -> (&'static str, String) {
    (
        "Authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{ALICE_PAT}"))
        ),
    )
}

#[tokio::test]
async fn go_public_modules_are_forwarded_only_where_a_rule_allows_it() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = public_go_with_attack().await;
    public.publish(greet("v0.1.0", 0).renamed("example.com/blocked/thing"));
    let rules = [("example.com/blocked/*", false), ("*", true)];
    let packrat = Packrat::start(&fake.url(), &go_forwarding(&public, &rules, GO_MODULES)).await;
    let url = packrat.url();
    let alice = basic_alice();
    let alice = [(alice.0, alice.1.as_str())];

    // The private module: GitLab's versions only, never the public v9.9.9.
    let (status, list) = get_text(&format!("{url}/go/{WEB}/@v/list"), &alice).await;
    assert_eq!(status, 200);
    assert!(
        list.contains("v1.10.0") && !list.contains("v9.9.9"),
        "{list}"
    );
    let (status, latest) = get_json(&format!("{url}/go/{WEB}/@latest"), &alice).await;
    assert_eq!(status, 200);
    assert_eq!(latest["Version"], "v1.10.0");
    for file in ["v9.9.9.info", "v9.9.9.mod", "v9.9.9.zip"] {
        let (status, _) = get_text(&format!("{url}/go/{WEB}/@v/{file}"), &alice).await;
        assert_eq!(status, 404, "{file}");
    }
    assert_eq!(public.requests("acme"), 0, "{:?}", public.request_log());

    // A public module the "*" rule forwards: anyone may read it through /go/.
    for headers in [&alice[..], &[]] {
        let (status, list) = get_text(&format!("{url}/go/{GREET}/@v/list"), headers).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list, "v1.0.0\nv1.1.0\n");
        let (status, latest) = get_json(&format!("{url}/go/{GREET}/@latest"), headers).await;
        assert_eq!(status, 200);
        assert_eq!(latest["Version"], "v1.1.0");
        let want = public.version(GREET, "v1.1.0").unwrap();
        let r = get(&format!("{url}/go/{GREET}/@v/v1.1.0.zip"), headers).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), want.zip().as_slice());
        let r = get(&format!("{url}/go/{GREET}/@v/v1.1.0.mod"), headers).await;
        assert_eq!(r.bytes().await.unwrap(), want.go_mod());
        let (status, info) = get_json(&format!("{url}/go/{GREET}/@v/v1.1.0.info"), headers).await;
        assert_eq!(status, 200);
        assert_eq!(info["Version"], "v1.1.0");
    }
    assert_eq!(public.requests("/@v/v1.1.0.zip"), 1, "the zip was cached");
    assert!(public.request_log().iter().all(|r| !r.had_credentials));

    // A module whose first matching rule says forward = false: 404, never asked publicly.
    let (status, _) = get_text(
        &format!("{url}/go/example.com/blocked/thing/@v/list"),
        &alice,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(public.requests("blocked"), 0);
    // Nobody has it: 404 (the go command then tries its next GOPROXY entry).
    let (status, _) = get_text(&format!("{url}/go/example.com/nope/x/@v/list"), &alice).await;
    assert_eq!(status, 404);

    // No rules: nothing is forwarded.
    let no_rules = Packrat::start(&fake.url(), &go_forwarding(&public, &[], GO_MODULES)).await;
    let before = public.requests_total();
    let (status, _) = get_text(&format!("{}/go/{GREET}/@v/list", no_rules.url()), &alice).await;
    assert_eq!(status, 404);
    assert_eq!(public.requests_total(), before);
}

#[tokio::test]
async fn a_pinned_private_module_path_is_never_resolved_publicly() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = public_go_with_attack().await;
    // No [[go.modules]] mapping (forgotten, or removed in a config change) and a rule that
    // forwards everything: only the pin keeps acme/web away from the public proxy.
    let packrat = Packrat::start(&fake.url(), &go_forwarding(&public, &[("*", true)], "")).await;
    let url = packrat.url();
    let alice = basic_alice();
    let alice = [(alice.0, alice.1.as_str())];
    let project = format!("{url}/api/v4/projects/42/packages/go/{WEB}");
    let (status, list) = get_text(&format!("{project}/@v/list"), &alice).await;
    assert_eq!(status, 200, "{list}");

    for path in ["@v/list", "@latest", "@v/v9.9.9.info", "@v/v9.9.9.zip"] {
        let (status, body) = get_text(&format!("{url}/go/{WEB}/{path}"), &alice).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("EVIL") && !body.contains("v9.9.9"), "{body}");
    }
    assert_eq!(public.requests("acme"), 0, "{:?}", public.request_log());
    assert!(metric(url, BLOCKED).await >= 4.0);
    let (_, pins) = get_json(&format!("{url}/-/pins"), &ops()).await;
    assert!(
        pins["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "go" && p["name"] == WEB),
        "{pins}"
    );
    assert!(
        pins["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "go" && b["name"] == WEB && b["count"].as_u64() >= Some(4)),
        "{pins}"
    );
    assert!(
        packrat
            .wait_for_log(&["WARN", "dependency confusion blocked", WEB], LOG_WAIT)
            .await,
        "{}",
        packrat.logs()
    );
}

#[tokio::test]
async fn private_modules_never_reach_the_public_checksum_database() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = FakePublicGo::start().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let packrat = Packrat::start(
        &fake.url(),
        &format!(
            "{}\n[[forwarding.rules]]\nmatch = \"example.com/secret/*\"\nforward = false\n",
            go_forwarding(&public, &[], &format!("{GO_MODULES}\n"),).replace(
                "[forwarding]\n",
                &format!("[forwarding]\ngo_sumdb = \"{}\"\n", sumdb.url())
            )
        ),
    )
    .await;
    let db = format!("{}/go/sumdb/{}", packrat.url(), sumdb.name());
    // Public: proxied.
    let (status, body) = get_text(&format!("{db}/lookup/{GREET}@v1.1.0"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(GREET));
    // Private by configuration (a [[go.modules]] mapping, never fetched, so not pinned yet),
    // by a forward = false rule, or by a pin: never looked up publicly.
    let alice = basic_alice();
    let (status, _) = get_text(
        &format!(
            "{}/api/v4/projects/44/packages/go/gitlab.example.com/acme/!utils/@v/list",
            packrat.url()
        ),
        &[(alice.0, alice.1.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    for module in [
        "gitlab.example.com/acme/web@v1.10.0",
        "gitlab.example.com/acme/web/v2@v2.0.0",
        "gitlab.example.com/acme/!utils@v1.0.0",
        // The go command sends `!` percent-encoded.
        "gitlab.example.com/acme/%21utils@v1.0.0",
        "example.com/secret/thing@v1.0.0",
    ] {
        let (status, _) = get_text(&format!("{db}/lookup/{module}"), &[]).await;
        assert_eq!(status, 404, "{module}");
    }
    assert_eq!(sumdb.requests("acme"), 0, "{:?}", sumdb.request_log());
    assert_eq!(sumdb.requests("secret"), 0, "{:?}", sumdb.request_log());
}

/// Serves packrat over HTTPS (the go command sends `.netrc` credentials only over https).
async fn https_packrat(upstream: &str, extra: &str) -> (Packrat, TestCert) {
    let cert = TestCert::new();
    let packrat = Packrat::builder()
        .upstream(upstream)
        .tls(&cert)
        .toml(extra)
        .start()
        .await;
    (packrat, cert)
}

#[tokio::test]
async fn go_builds_a_private_and_public_module_graph_through_go() {
    require_tool!("go");
    let mut go = Go::new();
    let fake = FakeGitlab::start(World::standard()).await;
    let public = public_go_with_attack().await;
    let sumdb = FakeSumdb::start(&public.sumdb_entries()).await;
    let extra = go_forwarding(
        &public,
        &[("gitlab.example.com/*", false), ("*", true)],
        GO_MODULES,
    )
    .replace(
        "[forwarding]\n",
        &format!("[forwarding]\ngo_sumdb = \"{}\"\n", sumdb.url()),
    );
    let (packrat, certs) = https_packrat(&fake.url(), &extra).await;
    assert!(packrat.url().starts_with("https://"));
    go.netrc("127.0.0.1", "alice", ALICE_PAT);
    // One GOPROXY for everything; the checksum database through packrat too (GOSUMDB names
    // only the key, so the go command asks <GOPROXY>/sumdb/<name>/...). Private modules are
    // the client's GONOSUMDB, as with any private module.
    go.env("GOPROXY", &format!("{}/go", packrat.url()))
        .env("GOSUMDB", sumdb.verifier_key())
        .env("GONOSUMDB", "gitlab.example.com")
        .env("SSL_CERT_FILE", &certs.cert_path().display().to_string());
    go.write_module(
        &format!("module example.com/app\n\ngo 1.19\n\nrequire (\n\t{WEB} v1.10.0\n\t{GREET} v1.1.0\n)\n"),
        &format!(
            "package main\n\nimport (\n\t\"fmt\"\n\n\tpub \"{GREET}\"\n\tweb \"{WEB}/greet\"\n)\n\n\
             func main() {{\n\tfmt.Println(web.Hello(\"x\"))\n\tfmt.Println(pub.Hello(\"y\"))\n}}\n"
        ),
    );
    go.run_ok(&["mod", "tidy"]).await;
    let bin = go.root().join("app");
    go.run_ok(&["build", "-o", &bin.display().to_string(), "."])
        .await;
    let out = go.exec(&bin, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "HELLO X! from web v1.10.0\nhello y from public greet v1.1.0\n",
        "{}",
        describe(&out)
    );
    let sum = go.go_sum().unwrap();
    assert!(sum.contains(&format!("{WEB} v1.10.0 h1:")), "{sum}");
    assert!(
        sum.contains("gitlab.example.com/acme/Utils v1.0.0 h1:"),
        "{sum}"
    );
    assert!(sum.contains(&format!("{GREET} v1.1.0 h1:")), "{sum}");

    // Upgrading the private module to "latest" finds GitLab's latest, not the public v9.9.9.
    go.run_ok(&["get", &format!("{WEB}@latest")]).await;
    let go_mod = std::fs::read_to_string(go.project_dir().join("go.mod")).unwrap();
    assert!(go_mod.contains(&format!("{WEB} v1.10.0")), "{go_mod}");
    let out = go.run_ok(&["list", "-m", "-versions", WEB]).await;
    let versions = String::from_utf8_lossy(&out.stdout);
    assert!(
        versions.contains("v1.10.0") && !versions.contains("v9.9.9"),
        "{versions}"
    );

    assert_eq!(public.requests("acme"), 0, "{:?}", public.request_log());
    assert!(public.requests("/example.com/pub/greet/") > 0);
    assert!(public.request_log().iter().all(|r| !r.had_credentials));
    assert_eq!(sumdb.requests("acme"), 0, "{:?}", sumdb.request_log());
    assert!(
        sumdb.requests("/lookup/example.com/pub/greet@v1.1.0") >= 1,
        "{:?}",
        sumdb.request_log()
    );
}
