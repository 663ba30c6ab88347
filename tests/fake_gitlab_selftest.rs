//! Proves the fake GitLab behaves like GitLab (API.md §1, §2, §4, §6) before packrat is tested
//! against it: the real npm client installs from it, the real go command downloads from it and
//! verifies against the fake checksum database, and reqwest checks statuses, bodies, faults and
//! counters. No packrat here.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha1::{Digest as _, Sha1};

use crate::support::clients::Npm;
use crate::support::fake_gitlab::{
    FakeGitlab, NpmPkg, World, ALICE_PAT, BOB_PAT, DEPLOY_READ, EXPIRED_PAT, JOB_FINISHED,
    JOB_RUNNING, MAINT_PAT,
};
use crate::support::require_tool;

const UI_META: &str = "/api/v4/projects/42/packages/npm/@acme%2fui";
const UI_TGZ: &str = "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz";

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn get(fake: &FakeGitlab, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", fake.url()));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request")
}

/// Status and JSON body.
async fn get_json(fake: &FakeGitlab, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let response = get(fake, path, headers).await;
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Lists the files of a `.tgz`, with contents.
fn untar(tgz: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read entry");
            (path, data)
        })
        .collect()
}

// ---- the real npm client ----------------------------------------------------------------------

#[tokio::test]
async fn npm_installs_the_scoped_tree_from_the_project_prefix() {
    require_tool!("npm");
    let npm = Npm::new();
    let fake = FakeGitlab::start(World::standard()).await;
    let registry = format!("{}/api/v4/projects/42/packages/npm/", fake.url());
    npm.scope_registry("@acme", &registry);
    npm.auth_token(&registry, ALICE_PAT);

    npm.run_ok(&["install", "@acme/ui"]).await;

    assert_eq!(npm.installed_version("@acme/ui").as_deref(), Some("1.1.0"));
    assert_eq!(
        npm.installed_version("@acme/utils").as_deref(),
        Some("1.2.0")
    );
    assert_eq!(
        npm.installed_version("@acme/core").as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        npm.require("@acme/ui").await,
        "@acme/ui@1.1.0 (@acme/utils@1.2.0 (@acme/core@2.0.0))"
    );
    // npm sent alice's token as a bearer on every request.
    let log = fake.request_log();
    assert!(log.len() >= 6, "3 packuments + 3 tarballs, got {log:#?}");
    assert!(log
        .iter()
        .all(|r| r.credentials == vec![crate::support::fake_gitlab::CredentialKind::Bearer]));
}

#[tokio::test]
async fn npm_installs_from_the_instance_prefix_with_tarballs_on_the_project_route() {
    require_tool!("npm");
    let npm = Npm::new();
    let fake = FakeGitlab::start(World::standard()).await;
    npm.scope_registry("@acme", &format!("{}/api/v4/packages/npm/", fake.url()));
    npm.auth_token(&fake.url(), ALICE_PAT);

    npm.run_ok(&["install", "@acme/ui@1.0.0"]).await;

    assert_eq!(npm.installed_version("@acme/ui").as_deref(), Some("1.0.0"));
    assert_eq!(
        npm.require("@acme/ui").await,
        "@acme/ui@1.0.0 (@acme/utils@1.2.0 (@acme/core@2.0.0))"
    );
    assert_eq!(fake.requests("/api/v4/packages/npm/@acme%2f"), 3);
    assert_eq!(fake.requests("/api/v4/projects/42/packages/npm/"), 3);
}

#[tokio::test]
async fn npm_installs_a_public_package_anonymously_from_the_group_prefix() {
    require_tool!("npm");
    let npm = Npm::new();
    let fake = FakeGitlab::start(World::standard()).await;
    npm.scope_registry(
        "@pub",
        &format!("{}/api/v4/groups/pub/-/packages/npm/", fake.url()),
    );
    npm.write_package_json(&[("@pub/hello", "^1.0.0")]);

    npm.run_ok(&["install"]).await;

    assert_eq!(npm.require("@pub/hello").await, "@pub/hello@1.0.0");
    assert!(fake.request_log().iter().all(|r| r.credentials.is_empty()));
}

// ---- metadata shape ---------------------------------------------------------------------------

#[tokio::test]
async fn packument_has_gitlab_shape_and_project_route_tarball_urls() {
    let fake = FakeGitlab::start(World::standard()).await;
    let auth = bearer(ALICE_PAT);
    let (status, doc) = get_json(&fake, UI_META, &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "{doc}");

    let mut keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["dist-tags", "name", "versions"]);
    assert_eq!(doc["name"], "@acme/ui");
    assert_eq!(doc["dist-tags"], json!({"latest": "1.1.0"}));
    let v = &doc["versions"]["1.1.0"];
    assert_eq!(v["dependencies"], json!({"@acme/utils": "^1.0.0"}));
    let mut dist_keys: Vec<&String> = v["dist"].as_object().unwrap().keys().collect();
    dist_keys.sort();
    assert_eq!(dist_keys, ["shasum", "tarball"]);
    let tarball = v["dist"]["tarball"].as_str().unwrap();
    assert_eq!(tarball, format!("{}{UI_TGZ}", fake.url()));

    // The tarball is real, and its sha1 is the shasum.
    let response = client()
        .get(tarball)
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(hex::encode(Sha1::digest(&bytes)), v["dist"]["shasum"]);
    let files = untar(&bytes);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["package/package.json", "package/index.js"]);
    let manifest: Value = serde_json::from_slice(&files[0].1).unwrap();
    assert_eq!(manifest["name"], "@acme/ui");
    assert_eq!(manifest["version"], "1.1.0");
    assert_eq!(manifest["main"], "index.js");
    assert_eq!(manifest["dependencies"], json!({"@acme/utils": "^1.0.0"}));
}

#[tokio::test]
async fn metadata_answers_at_every_prefix_id_form_and_name_encoding() {
    let fake = FakeGitlab::start(World::standard()).await;
    let auth = bearer(ALICE_PAT);
    let expected_tarball = format!("{}{UI_TGZ}", fake.url());
    for path in [
        "/api/v4/projects/42/packages/npm/@acme%2fui",
        "/api/v4/projects/42/packages/npm/@acme%2Fui",
        "/api/v4/projects/42/packages/npm/@acme/ui",
        "/api/v4/projects/acme%2Fweb/packages/npm/@acme%2fui",
        "/api/v4/groups/1/-/packages/npm/@acme%2fui",
        "/api/v4/groups/acme/-/packages/npm/@acme%2fui",
        "/api/v4/packages/npm/@acme%2fui",
        "/api/v4/packages/npm/@acme/ui",
    ] {
        let (status, doc) = get_json(&fake, path, &[("authorization", &auth)]).await;
        assert_eq!(status, 200, "{path}: {doc}");
        assert_eq!(
            doc["versions"]["1.1.0"]["dist"]["tarball"], expected_tarball,
            "{path}"
        );
    }
    // Nested group: acme/sub holds @acme/tools in project 43; the maintainer may read it.
    let maint = bearer(MAINT_PAT);
    let (status, doc) = get_json(
        &fake,
        "/api/v4/groups/acme%2Fsub/-/packages/npm/@acme%2ftools",
        &[("authorization", &maint)],
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["versions"]["0.1.0"]["dist"]["tarball"]
        .as_str()
        .unwrap()
        .contains("/api/v4/projects/43/packages/npm/@acme/tools/-/@acme/tools-0.1.0.tgz"));
}

#[tokio::test]
async fn multiple_projects_flag_merges_what_each_caller_may_read() {
    let fake = FakeGitlab::start(World::standard()).await;
    fake.with_world(|w| {
        w.add_npm(43, NpmPkg::new("@acme/ui", "2.0.0"));
    });
    let keys = |doc: &Value| {
        let mut v: Vec<String> = doc["versions"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        v.sort();
        v.join(" ")
    };
    let (alice, maint) = (bearer(ALICE_PAT), bearer(MAINT_PAT));
    for prefix in ["/api/v4/groups/acme/-/packages/npm", "/api/v4/packages/npm"] {
        let ui = format!("{prefix}/@acme%2fui");
        // Flag off: the project holding the newest version answers, for whoever may read it.
        let (status, doc) = get_json(&fake, &ui, &[("authorization", &maint)]).await;
        assert_eq!((status, keys(&doc).as_str()), (200, "2.0.0"), "{prefix}");
        let (status, _) = get_json(&fake, &ui, &[("authorization", &alice)]).await;
        assert_eq!(status, 404, "{prefix}");

        fake.set_npm_multiple_projects(true);
        let (status, wide) = get_json(&fake, &ui, &[("authorization", &maint)]).await;
        assert_eq!((status, keys(&wide).as_str()), (200, "1.0.0 1.1.0 2.0.0"));
        assert_eq!(wide["dist-tags"]["latest"], "2.0.0", "{prefix}");
        assert!(wide["versions"]["2.0.0"]["dist"]["tarball"]
            .as_str()
            .unwrap()
            .contains("/api/v4/projects/43/"));
        let (status, narrow) = get_json(&fake, &ui, &[("authorization", &alice)]).await;
        assert_eq!((status, keys(&narrow).as_str()), (200, "1.0.0 1.1.0"));
        assert_eq!(narrow["dist-tags"]["latest"], "1.1.0", "{prefix}");
        // Different documents, different ETags.
        let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_string();
        let a = get(&fake, &ui, &[("authorization", &maint)]).await;
        let b = get(&fake, &ui, &[("authorization", &alice)]).await;
        assert_ne!(etag(&a), etag(&b), "{prefix}");
        // Packages exist, none readable: 403 (alice reads the group through project 42).
        let tools = format!("{prefix}/@acme%2ftools");
        let (status, _) = get_json(&fake, &tools, &[("authorization", &alice)]).await;
        assert_eq!(status, 403, "{prefix}");
        fake.set_npm_multiple_projects(false);
    }
}

// ---- statuses and bodies (API.md §1.4, §1.6, §4, §6) -------------------------------------------

#[tokio::test]
async fn anonymous_gets_401_for_metadata_but_404_for_tarballs_of_a_private_project() {
    let fake = FakeGitlab::start(World::standard()).await;
    assert_eq!(
        get_json(&fake, UI_META, &[]).await,
        (401, json!({"message": "401 Unauthorized"}))
    );
    assert_eq!(
        get_json(&fake, UI_TGZ, &[]).await,
        (
            404,
            json!({"message": "404 Project Not Found", "error": "Project not found"})
        )
    );
    assert_eq!(
        get_json(
            &fake,
            "/api/v4/projects/42/packages/npm/-/package/@acme%2fui/dist-tags",
            &[]
        )
        .await
        .0,
        401
    );
    // Group and instance prefixes, too.
    assert_eq!(
        get_json(&fake, "/api/v4/groups/acme/-/packages/npm/@acme%2fui", &[])
            .await
            .0,
        401
    );
    assert_eq!(
        get_json(&fake, "/api/v4/packages/npm/@acme%2fui", &[])
            .await
            .0,
        401
    );
    // Public project: anonymous reads work.
    assert_eq!(
        get_json(&fake, "/api/v4/projects/7/packages/npm/@pub%2fhello", &[])
            .await
            .0,
        200
    );
    assert_eq!(
        get_json(
            &fake,
            "/api/v4/projects/7/packages/npm/@pub/hello/-/@pub/hello-1.0.0.tgz",
            &[]
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn authenticated_without_access_gets_404_project_not_found() {
    let fake = FakeGitlab::start(World::standard()).await;
    let project_not_found =
        json!({"message": "404 Project Not Found", "error": "Project not found"});
    for path in [UI_META, UI_TGZ, "/api/v4/packages/npm/@acme%2fui"] {
        assert_eq!(
            get_json(&fake, path, &[("private-token", BOB_PAT)]).await,
            (404, project_not_found.clone()),
            "{path}"
        );
    }
    // Alice can read project 42 but not 43, even through the instance prefix.
    let auth = bearer(ALICE_PAT);
    assert_eq!(
        get_json(
            &fake,
            "/api/v4/packages/npm/@acme%2ftools",
            &[("authorization", &auth)]
        )
        .await,
        (404, project_not_found.clone())
    );
    // A private group the caller can't see at all.
    assert_eq!(
        get_json(
            &fake,
            "/api/v4/groups/acme/-/packages/npm/@acme%2fui",
            &[("private-token", BOB_PAT)]
        )
        .await,
        (
            404,
            json!({"message": "404 Group Not Found", "error": "Group not found"})
        )
    );
}

#[tokio::test]
async fn unknown_packages_and_invalid_names() {
    let fake = FakeGitlab::start(World::standard()).await;
    let auth = bearer(ALICE_PAT);
    let h = [("authorization", auth.as_str())];
    assert_eq!(
        get_json(&fake, "/api/v4/projects/42/packages/npm/@acme%2fnope", &h).await,
        (
            404,
            json!({"message": "404 Packages Not Found", "error": "Packages not found"})
        )
    );
    assert_eq!(
        get_json(
            &fake,
            "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-9.9.9.tgz",
            &h
        )
        .await,
        (
            404,
            json!({"message": "404 Package Not Found", "error": "Package not found"})
        )
    );
    assert_eq!(
        get_json(
            &fake,
            "/api/v4/projects/42/packages/npm/%0d%0ahttp:/%2fexample.com",
            &h
        )
        .await,
        (
            400,
            json!({"error": "package_name should be a valid file path"})
        )
    );
    // Anonymous on a public project, unknown package.
    assert_eq!(
        get_json(&fake, "/api/v4/projects/7/packages/npm/@pub%2fnope", &[])
            .await
            .0,
        404
    );
    // Unknown route.
    assert_eq!(
        get_json(&fake, "/api/v4/nothing", &[]).await,
        (404, json!({"error": "404 Not Found"}))
    );
}

#[tokio::test]
async fn every_credential_carrier_and_token_kind() {
    let fake = FakeGitlab::start(World::standard()).await;
    let basic = |password: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("anyone:{password}"))
        )
    };
    let ok: Vec<(&str, String)> = vec![
        ("PRIVATE-TOKEN", ALICE_PAT.to_string()),
        ("Private-Token", ALICE_PAT.to_string()),
        ("private-token", MAINT_PAT.to_string()),
        ("authorization", bearer(ALICE_PAT)),
        ("Job-Token", JOB_RUNNING.to_string()),
        ("authorization", bearer(JOB_RUNNING)),
        ("Deploy-Token", DEPLOY_READ.to_string()),
        ("authorization", bearer(DEPLOY_READ)),
        ("authorization", basic(DEPLOY_READ)),
    ];
    for (name, value) in &ok {
        assert_eq!(
            get(&fake, UI_META, &[(name, value)]).await.status(),
            200,
            "{name}: {value}"
        );
        assert_eq!(
            get(&fake, UI_TGZ, &[(name, value)]).await.status(),
            200,
            "{name}: {value}"
        );
    }
    let (status, body) = get_json(&fake, UI_META, &[("private-token", EXPIRED_PAT)]).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."})
        )
    );
    let response = get(&fake, UI_TGZ, &[("authorization", &bearer(EXPIRED_PAT))]).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(
        get_json(&fake, UI_META, &[("job-token", JOB_FINISHED)]).await,
        (401, json!({"message": "401 Unauthorized"}))
    );
    assert_eq!(
        get_json(&fake, UI_META, &[("private-token", "no-such-token")]).await,
        (401, json!({"message": "401 Unauthorized"}))
    );
    // A token on a public project that doesn't exist is still a 401.
    assert_eq!(
        get(
            &fake,
            "/api/v4/projects/7/packages/npm/@pub%2fhello",
            &[("private-token", "nope")]
        )
        .await
        .status(),
        401
    );
    // Query-string carriers.
    assert_eq!(
        get(&fake, &format!("{UI_META}?private_token={ALICE_PAT}"), &[])
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&fake, &format!("{UI_META}?job_token={JOB_RUNNING}"), &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn metadata_has_a_strong_etag_and_answers_304() {
    let fake = FakeGitlab::start(World::standard()).await;
    let auth = bearer(ALICE_PAT);
    let first = get(&fake, UI_META, &[("authorization", &auth)]).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let again = get(
        &fake,
        UI_META,
        &[("authorization", &auth), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());

    // A new version changes the document and its ETag.
    fake.with_world(|w| {
        w.add_npm(
            42,
            NpmPkg::new("@acme/ui", "1.2.0").dep("@acme/utils", "^1.0.0"),
        );
    });
    let changed = get(
        &fake,
        UI_META,
        &[("authorization", &auth), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], etag.as_str());
    let doc: Value = changed.json().await.unwrap();
    assert_eq!(doc["dist-tags"]["latest"], "1.2.0");
}

#[tokio::test]
async fn dist_tags_and_audits() {
    let fake = FakeGitlab::start(World::standard()).await;
    let auth = bearer(ALICE_PAT);
    let h = [("authorization", auth.as_str())];
    fake.with_world(|w| w.set_npm_tag(42, "@acme/ui", "stable", "1.0.0"));
    for prefix in [
        "/api/v4/projects/42/packages/npm",
        "/api/v4/groups/acme/-/packages/npm",
        "/api/v4/packages/npm",
    ] {
        assert_eq!(
            get_json(
                &fake,
                &format!("{prefix}/-/package/@acme%2fui/dist-tags"),
                &h
            )
            .await,
            (200, json!({"latest": "1.1.0", "stable": "1.0.0"})),
            "{prefix}"
        );
    }
    assert_eq!(
        get_json(
            &fake,
            "/api/v4/projects/42/packages/npm/-/package/@acme%2fnope/dist-tags",
            &h
        )
        .await,
        (
            404,
            json!({"message": "404 Package Not Found", "error": "Package not found"})
        )
    );

    let post = |path: &str, token: Option<&str>| {
        let mut req = client()
            .post(format!("{}{path}", fake.url()))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(token) = token {
            req = req.header("authorization", bearer(token));
        }
        req.send()
    };
    let bulk = "/api/v4/projects/42/packages/npm/-/npm/v1/security/advisories/bulk";
    let quick = "/api/v4/projects/42/packages/npm/-/npm/v1/security/audits/quick";
    for path in [bulk, quick] {
        let r = post(path, Some(ALICE_PAT)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
        assert_eq!(post(path, None).await.unwrap().status(), 401);
    }
    for path in [
        "/api/v4/groups/acme/-/packages/npm/-/npm/v1/security/advisories/bulk",
        "/api/v4/packages/npm/-/npm/v1/security/audits/quick",
    ] {
        let r = post(path, Some(ALICE_PAT)).await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"message": "404 Project Not Found", "error": "Project not found"})
        );
    }
    fake.set_npm_forwarding(true);
    let r = post(bulk, Some(ALICE_PAT)).await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"],
        "https://public-registry.invalid/-/npm/v1/security/advisories/bulk"
    );
}

#[tokio::test]
async fn forwarding_redirects_unknown_names_and_forced_names() {
    let fake = FakeGitlab::start(World::standard()).await;
    // Forwarding off: a plain 404 / 401.
    assert_eq!(
        get(&fake, "/api/v4/packages/npm/left-pad", &[])
            .await
            .status(),
        404
    );
    fake.set_npm_forwarding(true);
    // Unknown names forward before any auth check, at every prefix.
    for path in [
        "/api/v4/packages/npm/left-pad",
        "/api/v4/projects/42/packages/npm/@acme%2fnope",
        "/api/v4/groups/acme/-/packages/npm/@acme%2fnope",
    ] {
        let r = get(&fake, path, &[]).await;
        assert_eq!(r.status(), 302, "{path}");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with("https://public-registry.invalid/"));
    }
    // Existing private names are never forwarded: anonymous still gets 401.
    assert_eq!(get(&fake, UI_META, &[]).await.status(), 401);
    fake.set_npm_forwarding(false);

    fake.forward_to_public("@acme/ui");
    let r = get(&fake, UI_META, &[("authorization", &bearer(ALICE_PAT))]).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://public-registry.invalid/@acme/ui"
    );
}

// ---- object storage ---------------------------------------------------------------------------

#[tokio::test]
async fn object_storage_redirects_and_records_leaked_credentials() {
    let fake = FakeGitlab::start(World::standard()).await;
    fake.set_object_storage(true);
    let r = get(&fake, UI_TGZ, &[("authorization", &bearer(ALICE_PAT))]).await;
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{}/bucket/", fake.object_store_url())));
    assert!(location.contains("X-Amz-Signature="));
    // Still authorized on the GitLab side.
    assert_eq!(get(&fake, UI_TGZ, &[]).await.status(), 404);

    // reqwest strips Authorization when a redirect changes host:port: nothing leaks.
    let following = reqwest::Client::new();
    let bytes = following
        .get(format!("{}{UI_TGZ}", fake.url()))
        .header("authorization", bearer(ALICE_PAT))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (_, doc) = get_json(&fake, UI_META, &[("private-token", ALICE_PAT)]).await;
    assert_eq!(
        hex::encode(Sha1::digest(&bytes)),
        doc["versions"]["1.1.0"]["dist"]["shasum"]
    );
    assert_eq!(fake.object_store_requests(), 1);
    assert_eq!(fake.object_store_auth_headers_seen(), Vec::<String>::new());

    // Control: reqwest does not know PRIVATE-TOKEN is a secret and forwards it; the object
    // store records that, which is what a leak assertion relies on.
    following
        .get(format!("{}{UI_TGZ}", fake.url()))
        .header("private-token", ALICE_PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(fake.object_store_auth_headers_seen(), ["private-token"]);

    // Metadata through GitLab's metadata cache: 302, then application/octet-stream.
    fake.set_metadata_in_object_storage(true);
    let r = get(&fake, UI_META, &[("private-token", ALICE_PAT)]).await;
    assert_eq!(r.status(), 302);
    let r = client()
        .get(r.headers()["location"].to_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let meta: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(meta["name"], "@acme/ui");
}

// ---- faults -----------------------------------------------------------------------------------

#[tokio::test]
async fn delay_and_failures() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = "/api/v4/projects/7/packages/npm/@pub%2fhello";

    fake.delay(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(get(&fake, public, &[]).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    fake.clear_faults();
    let started = Instant::now();
    assert_eq!(get(&fake, public, &[]).await.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(300));

    fake.fail_with(503);
    assert_eq!(
        get_json(&fake, public, &[]).await,
        (503, json!({"message": "503 Service Unavailable"}))
    );
    fake.clear_faults();

    fake.fail_matching("/-/", 500);
    assert_eq!(get(&fake, public, &[]).await.status(), 200);
    assert_eq!(
        get(
            &fake,
            "/api/v4/projects/7/packages/npm/@pub/hello/-/@pub/hello-1.0.0.tgz",
            &[]
        )
        .await
        .status(),
        500
    );
    fake.clear_faults();

    fake.fail_next("@pub", 502, 2);
    assert_eq!(get(&fake, public, &[]).await.status(), 502);
    assert_eq!(get(&fake, public, &[]).await.status(), 502);
    assert_eq!(get(&fake, public, &[]).await.status(), 200);
}

#[tokio::test]
async fn cut_body_sends_the_full_length_then_drops_the_connection() {
    let fake = FakeGitlab::start(World::standard()).await;
    let path = "/api/v4/projects/7/packages/npm/@pub/hello/-/@pub/hello-1.0.0.tgz";
    let full_len = fake.with_world(|w| w.npm_versions(7, "@pub/hello")[0].tarball.len());
    fake.cut_body_after(".tgz", 100);

    // reqwest sees an error reading the body.
    let r = get(&fake, path, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err());

    // On the wire: the real Content-Length, exactly 100 body bytes, then EOF.
    let addr = fake.addr();
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        raw
    })
    .await
    .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(
        head.contains(&format!("content-length: {full_len}\r\n")),
        "{head}"
    );
    assert_eq!(raw.len() - split, 100);

    // Other paths are untouched.
    assert_eq!(
        get(&fake, "/api/v4/projects/7/packages/npm/@pub%2fhello", &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn paused_body_holds_after_n_bytes_until_released_or_cut() {
    let fake = FakeGitlab::start(World::standard()).await;
    let path = "/api/v4/projects/7/packages/npm/@pub/hello/-/@pub/hello-1.0.0.tgz";
    let full = fake.with_world(|w| w.npm_versions(7, "@pub/hello")[0].tarball.clone());

    // Released: the first 100 bytes arrive, nothing more until the release, then the rest.
    let gate = fake.pause_body_after(".tgz", 100);
    let mut r = get(&fake, path, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(full.len() as u64));
    let mut got = Vec::new();
    while got.len() < 100 {
        got.extend_from_slice(&r.chunk().await.unwrap().unwrap());
    }
    assert_eq!(got.len(), 100);
    let held = tokio::time::timeout(Duration::from_millis(200), r.chunk()).await;
    assert!(held.is_err(), "the body must wait for the gate");
    gate.release();
    while let Some(c) = r.chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert!(got == full[..]);

    // Cut: the body breaks at the pause point.
    fake.clear_faults();
    let gate = fake.pause_body_after(".tgz", 100);
    let r = get(&fake, path, &[]).await;
    gate.cut();
    assert!(r.bytes().await.is_err());
}

#[tokio::test]
async fn go_down_refuses_connections_and_come_back_serves_on_the_same_port() {
    let fake = FakeGitlab::start(World::standard()).await;
    let public = "/api/v4/projects/7/packages/npm/@pub%2fhello";
    let addr = fake.addr();

    // A keep-alive connection that is open when the fake goes down gets dropped.
    let mut open = tokio::net::TcpStream::connect(addr).await.unwrap();
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        open.write_all(format!("GET {public} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        assert!(open.read(&mut buf).await.unwrap() > 0);
        fake.go_down().await;
        let n = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
            .await
            .expect("dropped connection must not hang")
            .unwrap_or(0);
        assert_eq!(n, 0, "connection should be closed");
    }

    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = get_result(&fake, public).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    fake.come_back().await;
    assert_eq!(fake.url(), format!("http://{addr}"));
    assert_eq!(get(&fake, public, &[]).await.status(), 200);
}

async fn get_result(fake: &FakeGitlab, path: &str) -> reqwest::Result<reqwest::Response> {
    client().get(format!("{}{path}", fake.url())).send().await
}

// ---- counters ---------------------------------------------------------------------------------

#[tokio::test]
async fn counters_and_request_log() {
    let fake = FakeGitlab::start(World::standard()).await;
    let c = client();
    for _ in 0..3 {
        c.get(format!("{}{UI_META}", fake.url()))
            .header("private-token", ALICE_PAT)
            .send()
            .await
            .unwrap();
    }
    c.get(format!("{}{UI_TGZ}", fake.url()))
        .header("job-token", JOB_RUNNING)
        .send()
        .await
        .unwrap();
    assert_eq!(fake.requests("@acme%2fui"), 3);
    assert_eq!(fake.requests("ui-1.1.0.tgz"), 1);
    assert_eq!(fake.requests("/api/v4/"), 4);
    assert_eq!(fake.requests_total(), 4);
    assert_eq!(fake.connections(), 1, "one keep-alive connection");

    let log = fake.request_log();
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, UI_META);
    use crate::support::fake_gitlab::CredentialKind;
    assert_eq!(log[0].credentials, [CredentialKind::PrivateToken]);
    assert_eq!(log[3].credentials, [CredentialKind::JobToken]);

    // A fresh client means a fresh connection.
    reqwest::get(format!("{}{UI_META}", fake.url()))
        .await
        .unwrap();
    assert_eq!(fake.connections(), 2);

    fake.reset_counters();
    assert_eq!(fake.requests_total(), 0);
    assert_eq!(fake.requests(""), 0);
    assert_eq!(fake.connections(), 0);
}

// ---- generated tarballs -----------------------------------------------------------------------

#[tokio::test]
async fn tarball_size_knob_and_determinism() {
    let mut world = World::standard();
    world.add_npm(7, NpmPkg::new("@pub/big", "1.0.0").size(200_000));
    let again = World::standard();
    let fake = FakeGitlab::start(world).await;
    let (len, first_ui) = fake.with_world(|w| {
        (
            w.npm_versions(7, "@pub/big")[0].tarball.len(),
            w.npm_versions(42, "@acme/ui")[0].tarball.clone(),
        )
    });
    assert!((199_000..=201_000).contains(&len), "{len}");
    // Same input, same bytes.
    assert_eq!(again.npm_versions(42, "@acme/ui")[0].tarball, first_ui);

    let bytes = get(
        &fake,
        "/api/v4/projects/7/packages/npm/@pub/big/-/@pub/big-1.0.0.tgz",
        &[],
    )
    .await
    .bytes()
    .await
    .unwrap();
    assert_eq!(bytes.len(), len);
    let names: Vec<String> = untar(&bytes).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"package/pad.bin".to_string()));
}

#[test]
fn bench_world_has_a_huge_packument() {
    let mut world = World::standard();
    world.add_bench_packages();
    let doc = crate::support::fake_gitlab::npm::render_packument(
        &world,
        "http://127.0.0.1:1",
        7,
        "@pub/huge",
    );
    assert!(doc.len() >= 20_000_000, "{} bytes", doc.len());
    for (name, size) in [
        ("@pub/bench-5k", 5 * 1024),
        ("@pub/bench-2m", 2 * 1024 * 1024),
    ] {
        let len = world.npm_versions(7, name)[0].tarball.len();
        assert!(len.abs_diff(size) < size / 50 + 64, "{name}: {len}");
    }
}

#[tokio::test]
async fn bench_world_has_a_private_project_for_the_bench_token() {
    use crate::support::fake_gitlab::{BENCH_PAT, BENCH_PRIVATE_PROJECT};
    assert!(World::standard().project(BENCH_PRIVATE_PROJECT).is_none());
    let mut world = World::standard();
    world.add_bench_packages().add_bench_private_packages();
    for (name, size) in [
        ("@priv/bench-5k", 5 * 1024),
        ("@priv/bench-2m", 2 * 1024 * 1024),
    ] {
        let len = world.npm_versions(BENCH_PRIVATE_PROJECT, name)[0]
            .tarball
            .len();
        assert!(len.abs_diff(size) < size / 50 + 64, "{name}: {len}");
    }
    let fake = FakeGitlab::start(world).await;
    let npm = format!("/api/v4/projects/{BENCH_PRIVATE_PROJECT}/packages/npm");
    let meta = format!("{npm}/@priv%2fbench-50k");
    let tgz = format!("{npm}/@priv/bench-50k/-/@priv/bench-50k-1.0.0.tgz");
    // Anonymous: GitLab's 401 challenge for the packument, 404 for the tarball (as on 42).
    for (path, anonymous) in [(&meta, 401), (&tgz, 404)] {
        let ok = get(&fake, path, &[("private-token", BENCH_PAT)]).await;
        assert_eq!(ok.status(), StatusCode::OK, "{path}");
        assert_eq!(get(&fake, path, &[]).await.status(), anonymous, "{path}");
        assert_eq!(
            get(&fake, path, &[("private-token", BOB_PAT)])
                .await
                .status(),
            404,
            "{path}"
        );
    }
    // The bench token reads nothing else that is private.
    assert_eq!(
        get(&fake, UI_META, &[("private-token", BENCH_PAT)])
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn bench_world_has_go_modules() {
    use crate::support::fake_gitlab::go::{
        BENCH_GO_GRAPH, BENCH_GO_PROJECT, BENCH_GO_ROOT, BENCH_GO_VERSION, BENCH_GO_ZIPS,
    };
    assert!(World::standard().project(BENCH_GO_PROJECT).is_none());
    let mut world = World::standard();
    world.add_bench_go_modules();
    for (name, size) in BENCH_GO_ZIPS {
        let zip = world
            .go_zip(&format!("{BENCH_GO_ROOT}/{name}"), BENCH_GO_VERSION)
            .unwrap();
        assert!(zip.len().abs_diff(size) < 64, "{name}: {} bytes", zip.len());
        assert!(zip_names(&zip).contains(&format!(
            "{BENCH_GO_ROOT}/{name}@{BENCH_GO_VERSION}/pad.bin"
        )));
    }
    let graph: Vec<String> = world
        .go_module_versions()
        .into_iter()
        .filter(|v| v.project_id == BENCH_GO_PROJECT && v.module.contains("/go/m"))
        .map(|v| format!("{}@{}", v.module, v.version))
        .collect();
    assert_eq!(graph.len(), BENCH_GO_GRAPH);
    assert_eq!(graph[0], format!("{BENCH_GO_ROOT}/m000@v1.0.0"));
    let go_mod = world
        .go_mod(&format!("{BENCH_GO_ROOT}/m099"), BENCH_GO_VERSION)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&go_mod)
            .contains("require gitlab.example.com/bench/go/m049 v1.0.0"),
        "{go_mod:?}"
    );

    // Public: anonymous reads work, and a module's zip holds only its own directory.
    let fake = FakeGitlab::start(world).await;
    let base = format!("/api/v4/projects/{BENCH_GO_PROJECT}/packages/go/{BENCH_GO_ROOT}/m007/@v");
    let list = get(&fake, &format!("{base}/list"), &[]).await;
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(list.text().await.unwrap(), "v1.0.0");
    let zip = get(&fake, &format!("{base}/v1.0.0.zip"), &[]).await;
    assert_eq!(zip.status(), StatusCode::OK);
    let mut names = zip_names(&zip.bytes().await.unwrap());
    names.sort();
    assert_eq!(
        names,
        ["LICENSE", "go.mod", "m007.go"]
            .map(|f| format!("{BENCH_GO_ROOT}/m007@v1.0.0/{f}"))
            .to_vec()
    );
}

// ---- client helpers ---------------------------------------------------------------------------

/// `require_tool!` skips (returns early) outside CI, and fails under CI.
#[test]
fn missing_tools_are_skipped_not_run_and_fail_under_ci() {
    use crate::support::clients::tool_or_skip;
    if std::env::var_os("CI").is_none() {
        let mut ran = false;
        (|| {
            require_tool!("packrat-no-such-tool");
            ran = true;
        })();
        assert!(!ran, "the rest of the test did not run");
    }
    assert!(!tool_or_skip("packrat-no-such-tool", false));
    let under_ci = std::panic::catch_unwind(|| tool_or_skip("packrat-no-such-tool", true));
    assert!(under_ci.is_err(), "a missing tool fails the test under CI");
}

#[test]
fn npm_helpers_write_the_expected_npmrc() {
    require_tool!("npm");
    let npm = Npm::new();
    npm.scope_registry("acme", "http://127.0.0.1:1234/api/v4/packages/npm");
    npm.auth_token("http://127.0.0.1:1234/api/v4/packages/npm/", "t0k");
    npm.auth_token("http://127.0.0.1:1234", "root");
    npm.npmrc_line("strict-ssl=false");
    assert_eq!(
        std::fs::read_to_string(npm.npmrc_path()).unwrap(),
        "@acme:registry=http://127.0.0.1:1234/api/v4/packages/npm/\n\
         //127.0.0.1:1234/api/v4/packages/npm/:_authToken=t0k\n\
         //127.0.0.1:1234/:_authToken=root\n\
         strict-ssl=false\n"
    );
    assert_eq!(npm.installed_version("@acme/ui"), None);
}

// ---- Go proxy (API.md §2) and the fake checksum database ---------------------------------------

const WEB: &str = "/api/v4/projects/42/packages/go/gitlab.example.com/acme/web";
const UTILS: &str = "/api/v4/projects/44/packages/go/gitlab.example.com/acme/!utils";

fn zip_names(bytes: &[u8]) -> Vec<String> {
    let z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("zip");
    z.file_names().map(str::to_string).collect()
}

async fn body_of(fake: &FakeGitlab, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let r = get(fake, path, headers).await;
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn go_list_info_mod_and_zip_look_like_gitlab() {
    let fake = FakeGitlab::start(World::standard()).await;
    let pat = [("PRIVATE-TOKEN", ALICE_PAT)];

    let (status, list) = body_of(&fake, &format!("{WEB}/@v/list"), &pat).await;
    assert_eq!(status, 200);
    // Tag order, no trailing newline; v2.0.0, v3.0.0, v1.3 and release-1 are not versions
    // of this module.
    assert_eq!(
        String::from_utf8(list).unwrap(),
        "v1.0.0\nv1.1.0\nv1.10.0\nv1.11.0-rc.1\nv1.9.0"
    );
    let (_, list) = body_of(&fake, &format!("{WEB}/v2/@v/list"), &pat).await;
    assert_eq!(String::from_utf8(list).unwrap(), "v2.0.0");
    let (_, list) = body_of(&fake, &format!("{UTILS}/@v/list"), &pat).await;
    assert_eq!(
        String::from_utf8(list).unwrap(),
        "v1.0.0\nv1.0.1-Prerelease"
    );
    // The go command sends `!` as %21 and a path-style project id with %2F.
    let (status, list) = body_of(
        &fake,
        "/api/v4/projects/acme%2FUtils/packages/go/gitlab.example.com/acme/%21utils/@v/list",
        &pat,
    )
    .await;
    assert_eq!((status, list.len()), (200, 24));

    let (status, info) = get_json(&fake, &format!("{WEB}/@v/v1.1.0.info"), &pat).await;
    assert_eq!(status, 200);
    assert_eq!(
        info,
        json!({"Version": "v1.1.0", "Time": "2020-06-06T12:34:56.000+00:00"})
    );
    let (status, info) =
        get_json(&fake, &format!("{UTILS}/@v/v1.0.1-!prerelease.info"), &pat).await;
    assert_eq!(
        (status, info["Version"].as_str()),
        (200, Some("v1.0.1-Prerelease"))
    );

    let (status, go_mod) = body_of(&fake, &format!("{WEB}/@v/v1.1.0.mod"), &pat).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8(go_mod)
        .unwrap()
        .starts_with("module gitlab.example.com/acme/web\n"));

    let r = get(&fake, &format!("{WEB}/@v/v1.1.0.zip"), &pat).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"v1.1.0.zip\""
    );
    assert_eq!(r.headers()["content-transfer-encoding"], "binary");
    let zip = r.bytes().await.unwrap();
    let names = zip_names(&zip);
    let p = "gitlab.example.com/acme/web@v1.1.0/";
    for want in [
        "go.mod",
        "web.go",
        "greet/greet.go",
        "mathx/mathx.go",
        "internal/version/version.go",
    ] {
        assert!(names.contains(&format!("{p}{want}")), "{want} in {names:?}");
    }
    assert!(names.iter().all(|n| n.starts_with(p)), "{names:?}");
    // Nested modules (tools/, v2/) are excluded.
    assert!(
        !names
            .iter()
            .any(|n| n.contains("/tools/") || n.contains("/v2/")),
        "{names:?}"
    );
    // Deterministic.
    let (_, again) = body_of(&fake, &format!("{WEB}/@v/v1.1.0.zip"), &pat).await;
    assert_eq!(again, zip.to_vec());
    let (_, v2) = body_of(&fake, &format!("{WEB}/v2/@v/v2.0.0.zip"), &pat).await;
    assert_eq!(
        zip_names(&v2),
        [
            "gitlab.example.com/acme/web/v2@v2.0.0/go.mod",
            "gitlab.example.com/acme/web/v2@v2.0.0/web.go"
        ]
    );

    // A pseudo-version of main's commit resolves like a tag.
    let sha = fake.with_world(|w| w.go[&42].branches["main"].clone());
    let pseudo = format!(
        "v1.11.0-rc.1.0.{}-{}",
        crate::support::fake_gitlab::go::pseudo_stamp(1_591_360_496 + 4 * 86_400),
        &sha[..12]
    );
    let (status, _) = body_of(&fake, &format!("{WEB}/@v/{pseudo}.info"), &pat).await;
    assert_eq!(status, 200, "{pseudo}");
}

#[tokio::test]
async fn go_auth_and_not_found_follow_api_md() {
    let fake = FakeGitlab::start(World::standard()).await;
    let basic = |token: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"))
        )
    };
    let list = format!("{WEB}/@v/list");
    for headers in [
        vec![("Authorization".to_string(), basic(ALICE_PAT))],
        vec![("PRIVATE-TOKEN".to_string(), ALICE_PAT.to_string())],
        vec![("Authorization".to_string(), bearer(ALICE_PAT))],
        vec![("Job-Token".to_string(), JOB_RUNNING.to_string())],
        vec![("Authorization".to_string(), bearer(JOB_RUNNING))],
    ] {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(get(&fake, &list, &h).await.status(), 200, "{h:?}");
    }
    let not_found = json!({"message": "404 Not Found"});
    /// (path, headers, status, body or Null to skip the body check)
    type Case<'a> = (String, Vec<(&'a str, String)>, u16, Value);
    let cases: Vec<Case> = vec![
        // Private project, anonymous → 401; a non-member → 404.
        (
            list.clone(),
            vec![],
            401,
            json!({"message": "401 Unauthorized"}),
        ),
        (
            list.clone(),
            vec![("PRIVATE-TOKEN", BOB_PAT.into())],
            404,
            json!({"message": "404 Project Not Found"}),
        ),
        // Basic with a deploy token or job token is not a credential here: anonymous.
        (
            list.clone(),
            vec![("Authorization", basic(DEPLOY_READ))],
            401,
            json!({"message": "401 Unauthorized"}),
        ),
        (
            list.clone(),
            vec![("Job-Token", JOB_FINISHED.into())],
            401,
            json!({"message": "401 Unauthorized"}),
        ),
        (
            list.clone(),
            vec![("PRIVATE-TOKEN", EXPIRED_PAT.into())],
            401,
            Value::Null,
        ),
        // Unknown project: 401 anonymous, 404 with credentials.
        (
            "/api/v4/projects/999/packages/go/gitlab.example.com/x/y/@v/list".into(),
            vec![],
            401,
            json!({"message": "401 Unauthorized"}),
        ),
        (
            "/api/v4/projects/999/packages/go/gitlab.example.com/x/y/@v/list".into(),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            json!({"message": "404 Project Not Found"}),
        ),
        // A module that is not in this project, unknown versions, un-escaped upper case.
        (
            "/api/v4/projects/42/packages/go/gitlab.example.com/acme/!utils/@v/list".into(),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            not_found.clone(),
        ),
        (
            format!("{WEB}/@v/v9.9.9.info"),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            not_found.clone(),
        ),
        (
            format!("{WEB}/@v/v2.0.0.info"),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            not_found.clone(),
        ),
        (
            "/api/v4/projects/44/packages/go/gitlab.example.com/acme/Utils/@v/list".into(),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            not_found.clone(),
        ),
        // No @latest, and non-semver versions match no route: the API catch-all.
        (
            format!("{WEB}/@latest"),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            json!({"error": "404 Not Found"}),
        ),
        (
            format!("{WEB}/@v/main.info"),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            json!({"error": "404 Not Found"}),
        ),
        (
            format!("{UTILS}/@v/v1.0.1-Prerelease.info"),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            404,
            json!({"error": "404 Not Found"}),
        ),
        (
            "/api/v4/projects/42/packages/go/%2F/@v/list".into(),
            vec![("PRIVATE-TOKEN", ALICE_PAT.into())],
            400,
            json!({"message": "400 Bad request - \"Module Name\" not given"}),
        ),
    ];
    for (path, headers, status, body) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let (got, got_body) = get_json(&fake, &path, &h).await;
        assert_eq!(got, status, "{path} {h:?}: {got_body}");
        if !body.is_null() {
            assert_eq!(got_body, body, "{path} {h:?}");
        }
    }
    // A module path under the project with no versions lists nothing.
    let (status, body) = body_of(
        &fake,
        &format!("{WEB}/nothing/@v/list"),
        &[("PRIVATE-TOKEN", ALICE_PAT)],
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));
    // The public project needs no credentials.
    let (status, body) = body_of(
        &fake,
        "/api/v4/projects/7/packages/go/gitlab.example.com/pub/lib/@v/list",
        &[],
    )
    .await;
    assert_eq!((status, body), (200, b"v0.1.0".to_vec()));
}

#[tokio::test]
async fn go_zip_faults_serve_ill_formed_zips() {
    use crate::support::fake_gitlab::go::GoFault;
    let fake = FakeGitlab::start(World::standard()).await;
    let pat = [("PRIVATE-TOKEN", ALICE_PAT)];
    let m = "gitlab.example.com/acme/web";
    let zip = format!("{WEB}/@v/v1.1.0.zip");

    fake.go_fault(m, "v1.1.0", GoFault::ZipOutsidePrefix);
    let (_, z) = body_of(&fake, &zip, &pat).await;
    assert!(zip_names(&z)
        .iter()
        .any(|n| n.starts_with("gitlab.example.com/evil/")));

    fake.go_fault(m, "v1.1.0", GoFault::ZipDotDot);
    let (_, z) = body_of(&fake, &zip, &pat).await;
    assert!(zip_names(&z)
        .iter()
        .any(|n| n.ends_with("@v1.1.0/../escape.go")));

    fake.go_fault(m, "v1.1.0", GoFault::ZipTooBig);
    let (_, z) = body_of(&fake, &zip, &pat).await;
    assert!(z.len() < 2 << 20, "{}", z.len());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
    let total: u64 = (0..archive.len())
        .map(|i| archive.by_index_raw(i).unwrap().size())
        .sum();
    assert!(total > 500 << 20, "{total}");

    fake.go_fault(m, "v1.1.0", GoFault::ZipGarbage);
    let (_, z) = body_of(&fake, &zip, &pat).await;
    assert!(zip::ZipArchive::new(std::io::Cursor::new(z)).is_err());

    fake.go_fault(m, "v1.1.0", GoFault::ModTooBig);
    let (_, g) = body_of(&fake, &format!("{WEB}/@v/v1.1.0.mod"), &pat).await;
    assert!(g.len() > 16 << 20);

    fake.clear_go_faults();
    let (_, g) = body_of(&fake, &format!("{WEB}/@v/v1.1.0.mod"), &pat).await;
    assert!(g.len() < 1000);
    // Other versions were never affected.
    let (_, z) = body_of(&fake, &format!("{WEB}/@v/v1.0.0.zip"), &pat).await;
    assert!(zip_names(&z)
        .iter()
        .all(|n| n.starts_with("gitlab.example.com/acme/web@v1.0.0/")));
}

/// The real go command downloads the public module straight from the fake GitLab and
/// verifies it against the fake checksum database: proof that zips, `h1:` hashes, the
/// Merkle tiles and the signed tree head are all real.
#[tokio::test]
async fn go_downloads_from_the_fakes_and_verifies_the_checksum_database() {
    use crate::support::clients::Go;
    use crate::support::fake_sumdb::{entries_for, FakeSumdb};
    require_tool!("go");
    let mut go = Go::new();
    let world = World::standard();
    let sumdb = FakeSumdb::start(&entries_for(&world)).await;
    let fake = FakeGitlab::start(world).await;
    go.env(
        "GOPROXY",
        &format!("{}/api/v4/projects/7/packages/go", fake.url()),
    )
    .env("GOSUMDB", &sumdb.gosumdb(&sumdb.url()));
    go.write_module(
        "module example.com/app\n\ngo 1.19\n",
        "package main\n\nfunc main() {}\n",
    );
    let out = go
        .run_ok(&[
            "mod",
            "download",
            "-json",
            "gitlab.example.com/pub/lib@v0.1.0",
        ])
        .await;
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let zip = fake.with_world(|w| w.go_zip("gitlab.example.com/pub/lib", "v0.1.0").unwrap());
    assert_eq!(
        doc["Sum"],
        crate::support::fake_gitlab::go::h1_zip(&zip).as_str()
    );
    assert_eq!(
        sumdb.requests("/lookup/gitlab.example.com/pub/lib@v0.1.0"),
        1
    );
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

    // A database that records another hash makes the go command refuse the module.
    let mut entries = fake.with_world(|w| entries_for(w));
    for e in &mut entries {
        e.zip_h1 = crate::support::fake_gitlab::go::h1_mod(b"tampered");
    }
    let liar = FakeSumdb::start(&entries).await;
    go.clear_modcache().await;
    go.env("GOSUMDB", &liar.gosumdb(&liar.url()));
    let out = go
        .run(&["mod", "download", "gitlab.example.com/pub/lib@v0.1.0"])
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SECURITY ERROR"),
        "{}",
        crate::support::clients::describe(&out)
    );
}
