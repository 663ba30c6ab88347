//! The Packages API through packrat: lists, one package, files and pipelines answered from the
//! local index must equal the upstream's answers field by field (bodies and pagination
//! headers; only the host in URLs differs), for every parameter and the edge pages.

use serde_json::Value;

use crate::support::fake_gitlab::world::{ALICE_PAT, BOB_PAT, MAINT_PAT};
use crate::support::fake_gitlab::{FakeGitlab, PkgSpec, World};
use crate::support::packrat::Packrat;

/// The headers GitLab's pagination sets, plus the content type.
const COMPARED_HEADERS: &[&str] = &[
    "content-type",
    "x-total",
    "x-total-pages",
    "x-per-page",
    "x-page",
    "x-next-page",
    "x-prev-page",
    "link",
];

/// Package ids of [`rich_world`] that tests address directly.
struct Ids {
    tool: u64,
    broken: u64,
    maven: u64,
}

/// The standard world plus packages of many formats and every status in project 42, one in
/// project 43 (subgroup `acme/sub`), pipelines, files, a versionless package and a tag.
fn rich_world() -> (World, Ids) {
    let mut w = World::standard();
    let tool = w.add_package(
        42,
        PkgSpec::new("generic", "acme-tool", "1.0.0")
            .file("tool-linux", 1000)
            .file("tool-mac", 900)
            .file("README.md", 10)
            .pipelines(5)
            .downloaded(),
    );
    w.add_package(
        42,
        PkgSpec::new("generic", "acme-tool", "1.1.0")
            .file("tool-linux", 1100)
            .pipelines(1),
    );
    let maven = w.add_package(
        42,
        PkgSpec::new("maven", "com/acme/lib", "2.0")
            .file("lib-2.0.jar", 2421)
            .file("lib-2.0.pom", 300),
    );
    w.add_package(
        42,
        PkgSpec::versionless("maven", "com/acme/lib").file("maven-metadata.xml", 120),
    );
    w.add_package(
        42,
        PkgSpec::new("terraform_module", "vpc/aws", "0.3.0").file("vpc-aws-0.3.0.tgz", 5000),
    );
    w.add_package(
        42,
        PkgSpec::new("golang", "gitlab.example.com/acme/web", "v1.0.0"),
    );
    w.add_package(
        42,
        PkgSpec::new("generic", "hidden-thing", "0.1.0").status("hidden"),
    );
    let broken = w.add_package(
        42,
        PkgSpec::new("generic", "broken", "0.0.1").status("error"),
    );
    w.add_package(
        42,
        PkgSpec::new("generic", "old-tool", "0.9.0")
            .status("deprecated")
            .pipelines(1),
    );
    w.add_package(
        42,
        PkgSpec::new("pypi", "acme-py", "3.1.4").status("processing"),
    );
    w.add_package(
        42,
        PkgSpec::new("generic", "gone", "1.0.0").status("pending_destruction"),
    );
    w.add_package(42, PkgSpec::new("helm", "Acme-Chart", "1.0.0"));
    w.add_package(
        43,
        PkgSpec::new("generic", "sub-tool", "2.0.0").file("sub", 10),
    );
    w.set_npm_tag(42, "@acme/ui", "stable", "1.0.0");
    (
        w,
        Ids {
            tool,
            broken,
            maven,
        },
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An answer reduced to what is compared: status, the pagination headers, the JSON body;
/// both servers' hosts replaced by `HOST`.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

async fn answer(base: &str, path: &str, token: Option<&str>, hosts: &[&str]) -> Answer {
    let mut rb = client().get(format!("{base}{path}"));
    if let Some(t) = token {
        rb = rb.header("PRIVATE-TOKEN", t);
    }
    let r = rb.send().await.unwrap();
    let normalize = |s: &str| {
        hosts
            .iter()
            .fold(s.to_string(), |acc, h| acc.replace(h, "HOST"))
    };
    let status = r.status().as_u16();
    let headers = COMPARED_HEADERS
        .iter()
        .map(|h| {
            let v = r
                .headers()
                .get(*h)
                .map_or("<absent>".to_string(), |v| normalize(v.to_str().unwrap()));
            (h.to_string(), v)
        })
        .collect();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&normalize(&text))
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    Answer {
        status,
        headers,
        body,
    }
}

/// GETs `path` from the fake and from packrat with the same token; both must agree.
async fn assert_same(
    fake: &FakeGitlab,
    packrat: &Packrat,
    path: &str,
    token: Option<&str>,
) -> Answer {
    let hosts = [fake.url(), packrat.url().to_string()];
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let upstream = answer(&fake.url(), path, token, &hosts).await;
    let ours = answer(packrat.url(), path, token, &hosts).await;
    assert_eq!(
        upstream.status, ours.status,
        "status of {path}\nupstream: {upstream:#?}\npackrat: {ours:#?}"
    );
    for (u, p) in upstream.headers.iter().zip(&ours.headers) {
        assert_eq!(u, p, "header of {path}");
    }
    assert_eq!(upstream.body, ours.body, "body of {path}");
    ours
}

const PROJECT_QUERIES: &[&str] = &[
    "",
    "per_page=2",
    "per_page=2&page=2",
    "per_page=2&page=4",
    "page=99",
    "page=0",
    "per_page=100",
    "per_page=500",
    "per_page=-5",
    "per_page=0",
    "order_by=name",
    "order_by=name&sort=desc",
    "order_by=version",
    "order_by=version&sort=desc&include_versionless=true",
    "order_by=type&per_page=3&page=2",
    "order_by=created_at&sort=desc",
    "package_type=npm",
    "package_type=terraform_module",
    "package_type=maven&include_versionless=true",
    "package_name=ACME",
    "package_name=acme+ui",
    "package_name=%22acme-tool%22",
    "package_name=%40acme%2Fu&per_page=1&page=2",
    "package_version=1.0.0",
    "package_version=1.0.0&include_versionless=1",
    "include_versionless=1",
    "include_versionless=false",
    "status=hidden",
    "status=error",
    "status=processing",
    "status=pending_destruction",
    "status=deprecated&package_type=generic",
    "status=default&order_by=type&sort=desc",
    "foo=bar&per_page=1",
    "order_by=bogus",
    "sort=sideways&package_type=jar",
    "include_versionless=maybe",
    "order_by=project_path",
    "page=abc",
];

#[tokio::test]
async fn project_lists_equal_the_upstreams_for_every_parameter() {
    let (world, _) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    for q in PROJECT_QUERIES {
        for base in [
            "/api/v4/projects/42/packages",
            "/api/v4/projects/acme%2Fweb/packages",
        ] {
            let path = format!("{base}?{q}");
            assert_same(&fake, &packrat, &path, Some(MAINT_PAT)).await;
        }
    }
    // A developer sees no delete links: answered from their own class of the index.
    for q in ["", "per_page=3&order_by=name", "status=hidden"] {
        let a = assert_same(
            &fake,
            &packrat,
            &format!("/api/v4/projects/42/packages?{q}"),
            Some(ALICE_PAT),
        )
        .await;
        assert!(a.body[0]["_links"].get("delete_api_path").is_none(), "{q}");
    }
    // Answers are computed locally: a second pass asks the upstream nothing.
    fake.reset_counters();
    for q in PROJECT_QUERIES {
        let r = client()
            .get(format!("{}/api/v4/projects/42/packages?{q}", packrat.url()))
            .header("PRIVATE-TOKEN", MAINT_PAT)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            assert_eq!(r.headers()["x-packrat-cache"], "hit", "{q}");
        }
    }
    assert_eq!(fake.requests("/packages"), 0, "{:#?}", fake.request_log());
}

#[tokio::test]
async fn links_name_packrats_public_url() {
    let (world, _) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let r = client()
        .get(format!(
            "{}/api/v4/projects/42/packages?per_page=1&page=2",
            packrat.url()
        ))
        .header("PRIVATE-TOKEN", MAINT_PAT)
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert!(
        link.starts_with(&format!("<{}/api/v4/projects/42/packages?", packrat.url())),
        "{link}"
    );
    assert!(!link.contains(&fake.url()), "{link}");
    let delete = body[0]["_links"]["delete_api_path"].as_str().unwrap();
    assert!(
        delete.starts_with(&format!("{}/api/v4/projects/42/packages/", packrat.url())),
        "{delete}"
    );
}

#[tokio::test]
async fn files_pipelines_and_show_links_name_the_configured_public_url() {
    let (world, ids) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let public = "https://mirror.example.test:8443";
    let packrat = Packrat::builder()
        .upstream(&fake.url())
        .server_keys(&format!("public_url = \"{public}\""))
        .start()
        .await;
    let get = |path: String| {
        client()
            .get(format!("{}{path}", packrat.url()))
            .header("PRIVATE-TOKEN", MAINT_PAT)
            .send()
    };
    let p = format!("/api/v4/projects/42/packages/{}", ids.tool);
    let r = get(format!("{p}/package_files?per_page=1&page=2"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap();
    for rel in ["prev", "next", "first", "last"] {
        assert!(link.contains(&format!("rel=\"{rel}\"")), "{link}");
    }
    for url in link.split(", ") {
        assert!(
            url.starts_with(&format!("<{public}{p}/package_files?")),
            "{link}"
        );
    }
    let r = get(format!("{p}/pipelines?per_page=2")).await.unwrap();
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap();
    assert!(
        link.starts_with(&format!("<{public}{p}/pipelines?")) && link.ends_with("rel=\"next\""),
        "{link}"
    );
    let r = get(p.clone()).await.unwrap();
    let shown: Value = r.json().await.unwrap();
    assert_eq!(
        shown["_links"]["delete_api_path"],
        format!("{public}{p}"),
        "{shown}"
    );
    let r = get("/api/v4/projects/42/packages?per_page=1".into())
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let listed: Value = r.json().await.unwrap();
    assert!(
        link.starts_with(&format!("<{public}/api/v4/projects/42/packages?")),
        "{link}"
    );
    assert!(
        listed[0]["_links"]["delete_api_path"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{public}/api/v4/projects/42/packages/")),
        "{listed}"
    );
}

#[tokio::test]
async fn group_lists_equal_the_upstreams_and_depend_on_who_asks() {
    let (world, _) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    // The maintainer (projects 42 and 43) asks first; the developer (42 only) must never be
    // answered from the maintainer's listing.
    for token in [MAINT_PAT, ALICE_PAT] {
        for q in [
            "",
            "exclude_subgroups=true",
            "order_by=project_path&sort=desc",
            "order_by=project_path&per_page=4&page=2",
            "per_page=3&page=2",
            "package_name=tool",
            "exclude_subgroups=maybe",
        ] {
            for group in ["acme", "1"] {
                assert_same(
                    &fake,
                    &packrat,
                    &format!("/api/v4/groups/{group}/packages?{q}"),
                    Some(token),
                )
                .await;
            }
        }
        assert_same(
            &fake,
            &packrat,
            "/api/v4/groups/acme%2Fsub/packages",
            Some(token),
        )
        .await;
    }
    let alice = answer(
        packrat.url(),
        "/api/v4/groups/acme/packages?per_page=100",
        Some(ALICE_PAT),
        &[],
    )
    .await;
    assert!(
        alice
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["project_id"] == 42),
        "alice sees project 42 only"
    );
    let maint = answer(
        packrat.url(),
        "/api/v4/groups/acme/packages?per_page=100",
        Some(MAINT_PAT),
        &[],
    )
    .await;
    assert!(maint
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["project_id"] == 43));
}

#[tokio::test]
async fn one_package_files_and_pipelines_equal_the_upstreams() {
    let (world, ids) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let ui_id = fake.with_world(|w| {
        w.npm
            .iter()
            .find(|r| r.name == "@acme/ui" && r.version == "1.0.0")
            .unwrap()
            .id
    });
    let p = "/api/v4/projects/42/packages";
    let shown = assert_same(&fake, &packrat, &format!("{p}/{ui_id}"), Some(MAINT_PAT)).await;
    assert_eq!(shown.body["versions"][0]["version"], "1.1.0");
    assert_eq!(shown.body["tags"][0]["name"], "stable");
    let tool = assert_same(
        &fake,
        &packrat,
        &format!("{p}/{}", ids.tool),
        Some(MAINT_PAT),
    )
    .await;
    assert_eq!(tool.body["versions"].as_array().unwrap().len(), 1);
    for path in [
        format!("{p}/{}", ids.maven),
        format!("{p}/{}", ids.broken),
        format!("{p}/999999"),
        format!("{p}/abc"),
        format!("{p}/{}/package_files", ids.tool),
        format!("{p}/{}/package_files?per_page=1&page=2", ids.tool),
        format!(
            "{p}/{}/package_files?order_by=file_name&sort=desc",
            ids.tool
        ),
        format!(
            "{p}/{}/package_files?order_by=created_at&per_page=2",
            ids.tool
        ),
        format!("{p}/{}/package_files?order_by=size", ids.tool),
        format!("{p}/{}/package_files?per_page=0", ids.tool),
        format!("{p}/{}/package_files", ids.maven),
        format!("{p}/999999/package_files"),
        format!("{p}/{}/pipelines", ids.tool),
        format!("{p}/{}/pipelines?per_page=21", ids.tool),
        format!("{p}/{}/pipelines", ids.broken),
    ] {
        assert_same(&fake, &packrat, &path, Some(MAINT_PAT)).await;
    }
    // Keyset pages: follow packrat's next links; each page equals the upstream's.
    let mut path = format!("{p}/{}/pipelines?per_page=2", ids.tool);
    let mut seen = Vec::new();
    loop {
        let a = assert_same(&fake, &packrat, &path, Some(MAINT_PAT)).await;
        seen.extend(
            a.body
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_u64().unwrap()),
        );
        let link = &a.headers.iter().find(|(h, _)| h == "link").unwrap().1;
        if link == "<absent>" {
            break;
        }
        let url = link.trim_start_matches('<').split('>').next().unwrap();
        path = url.trim_start_matches("HOST").to_string();
    }
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
}

#[tokio::test]
async fn refusals_are_gitlabs() {
    let (world, ids) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    for (path, token) in [
        ("/api/v4/projects/42/packages".to_string(), None),
        ("/api/v4/projects/42/packages".to_string(), Some(BOB_PAT)),
        (
            "/api/v4/projects/42/packages".to_string(),
            Some("no-such-token"),
        ),
        ("/api/v4/groups/acme/packages".to_string(), None),
        (
            "/api/v4/groups/acme%2Fsub/packages".to_string(),
            Some(ALICE_PAT),
        ),
        (format!("/api/v4/projects/42/packages/{}", ids.tool), None),
        (
            format!("/api/v4/projects/43/packages/{}/package_files", ids.tool),
            Some(ALICE_PAT),
        ),
        ("/api/v4/projects/7/packages".to_string(), None),
    ] {
        assert_same(&fake, &packrat, &path, token).await;
        // Twice: the second answer comes from the remembered decision.
        assert_same(&fake, &packrat, &path, token).await;
    }
    // Invalid parameters: GitLab checks access first, so only a member sees the 400. Each
    // caller asks before packrat holds any decision for them, then again after one.
    let invalid = [
        "/api/v4/projects/42/packages?order_by=bogus".to_string(),
        "/api/v4/projects/42/packages?per_page=0".to_string(),
        "/api/v4/projects/42/packages/abc".to_string(),
        "/api/v4/projects/42/packages/abc/package_files".to_string(),
        format!(
            "/api/v4/projects/42/packages/{}/package_files?order_by=size",
            ids.tool
        ),
        format!(
            "/api/v4/projects/42/packages/{}/pipelines?per_page=21",
            ids.tool
        ),
        "/api/v4/groups/acme/packages?sort=sideways".to_string(),
    ];
    for token in [None, Some(BOB_PAT), Some(ALICE_PAT)] {
        for path in &invalid {
            assert_same(&fake, &packrat, path, token).await;
        }
        for path in [
            "/api/v4/projects/42/packages",
            "/api/v4/groups/acme/packages",
        ] {
            assert_same(&fake, &packrat, path, token).await;
        }
        for path in &invalid {
            assert_same(&fake, &packrat, path, token).await;
        }
    }
}

#[tokio::test]
async fn stale_lists_are_served_when_the_upstream_is_down() {
    let (world, _) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(
        &fake.url(),
        "[cache]\nmetadata_ttl = \"0s\"\nauth_ttl = \"1h\"\n",
    )
    .await;
    let path = "/api/v4/projects/42/packages?per_page=3&page=2";
    let fresh = assert_same(&fake, &packrat, path, Some(MAINT_PAT)).await;
    fake.go_down().await;
    let r = client()
        .get(format!("{}{path}", packrat.url()))
        .header("PRIVATE-TOKEN", MAINT_PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-packrat-cache"], "stale");
    assert!(r.headers()["warning"].to_str().unwrap().starts_with("110"));
    assert_eq!(r.headers()["x-total"].to_str().unwrap(), fresh.headers[1].1);
    // A credential never checked is refused rather than served from doubt.
    let r = client()
        .get(format!("{}{path}", packrat.url()))
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn more_than_ten_thousand_rows_drop_the_totals() {
    let mut world = World::standard();
    for i in 0..10_050u32 {
        world.add_package(
            42,
            PkgSpec::new("generic", &format!("bulk-{i:05}"), "1.0.0"),
        );
    }
    let fake = FakeGitlab::start(world).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    for q in [
        "per_page=100",
        "per_page=100&page=101",
        "per_page=100&page=102",
        "per_page=50&page=150&order_by=name&sort=desc",
        "package_name=bulk-0999",
    ] {
        let a = assert_same(
            &fake,
            &packrat,
            &format!("/api/v4/projects/42/packages?{q}"),
            Some(MAINT_PAT),
        )
        .await;
        if !q.contains("package_name") {
            assert_eq!(
                a.headers[1],
                ("x-total".to_string(), "<absent>".to_string()),
                "{q}"
            );
        }
    }
}

#[tokio::test]
async fn an_offline_mirror_answers_lists_from_its_index() {
    let (world, ids) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let mut packrat = Packrat::start(&fake.url(), "").await;
    let online = assert_same(
        &fake,
        &packrat,
        "/api/v4/projects/42/packages?per_page=3&page=2&order_by=name",
        Some(ALICE_PAT),
    )
    .await;
    assert_same(
        &fake,
        &packrat,
        &format!("/api/v4/projects/42/packages/{}/package_files", ids.tool),
        Some(ALICE_PAT),
    )
    .await;
    packrat.restart_with("[cache]\noffline = true\n").await;
    let connections = fake.connections();
    let hosts = [packrat.url()];
    // Another caller (no offline.tokens: the mirror is open) gets the stored copy, however old.
    let offline = answer(
        packrat.url(),
        "/api/v4/projects/42/packages?per_page=3&page=2&order_by=name",
        None,
        &hosts,
    )
    .await;
    assert_eq!(offline.status, 200);
    assert_eq!(offline.body, online.body);
    let files = answer(
        packrat.url(),
        &format!("/api/v4/projects/42/packages/{}/package_files", ids.tool),
        None,
        &hosts,
    )
    .await;
    assert_eq!(files.body.as_array().unwrap().len(), 3);
    // Never synced: a 404 that says so. Writes: 503.
    let r = client()
        .get(format!(
            "{}/api/v4/projects/42/packages?status=hidden",
            packrat.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("offline mirror does not hold"));
    let r = client()
        .delete(format!(
            "{}/api/v4/projects/42/packages/{}",
            packrat.url(),
            ids.tool
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(fake.connections(), connections, "no connection to GitLab");
}

/// The fake alone, against API.md's own examples: what the comparisons above compare to.
#[tokio::test]
async fn the_fake_answers_like_api_md() {
    let (world, ids) = rich_world();
    let fake = FakeGitlab::start(world).await;
    let base = fake.url();
    let get = |path: String, token: &'static str| {
        client()
            .get(format!("{base}{path}"))
            .header("PRIVATE-TOKEN", token)
            .send()
    };
    // Project 42 shows 5 npm + 7 displayable non-Terraform, versioned packages = 12.
    let r = get(
        "/api/v4/projects/42/packages?per_page=5&page=2".into(),
        MAINT_PAT,
    )
    .await
    .unwrap();
    let h = |name: &str| r.headers()[name].to_str().unwrap().to_string();
    assert_eq!(
        (h("x-total"), h("x-total-pages"), h("x-per-page")),
        ("12".into(), "3".into(), "5".into())
    );
    assert_eq!(
        (h("x-page"), h("x-next-page"), h("x-prev-page")),
        ("2".into(), "3".into(), "1".into())
    );
    let q = |page: u32| {
        format!("<{base}/api/v4/projects/42/packages?id=42&order_by=created_at&page={page}&per_page=5&sort=asc>")
    };
    assert_eq!(
        h("link"),
        format!(
            "{}; rel=\"prev\", {}; rel=\"next\", {}; rel=\"first\", {}; rel=\"last\"",
            q(1),
            q(3),
            q(1),
            q(3)
        )
    );
    let r = get("/api/v4/projects/42/packages?per_page=0".into(), MAINT_PAT)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"per_page does not have a valid value"}"#
    );
    let r = get("/api/v4/projects/42/packages/abc".into(), MAINT_PAT)
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"package_id is invalid"}"#
    );
    let r = get(
        format!("/api/v4/projects/42/packages/{}", ids.broken),
        MAINT_PAT,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (404, r#"{"message":"Package not found"}"#.into())
    );
    let r = get("/api/v4/projects/42/packages/99999".into(), MAINT_PAT)
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"message":"404 Not found"}"#);
    let r = get("/api/v4/groups/acme/packages".into(), BOB_PAT)
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (404, r#"{"message":"404 Group Not Found"}"#.into())
    );
    // Pipelines: newest first, keyset Link only.
    let r = get(
        format!(
            "/api/v4/projects/42/packages/{}/pipelines?per_page=2",
            ids.tool
        ),
        MAINT_PAT,
    )
    .await
    .unwrap();
    assert!(r.headers().get("x-total").is_none());
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert!(body[0]["id"].as_u64() > body[1]["id"].as_u64());
    assert!(
        link.ends_with("&per_page=2>; rel=\"next\"") && link.contains("?cursor="),
        "{link}"
    );
    // Deletes: a developer's 403 comes before the unknown package's 404.
    let r = client()
        .delete(format!("{base}/api/v4/projects/42/packages/99999"))
        .header("PRIVATE-TOKEN", ALICE_PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
