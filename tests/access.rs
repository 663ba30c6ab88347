//! Access control for cached private content (SPEC §5, issue 5): a cache must never widen
//! access. Token A warms the cache; every other credential gets exactly GitLab's refusal on
//! every route family (the table below), asked upstream wherever no decision was cached;
//! decisions expire after `auth_ttl`; with GitLab down a recent decision is reused and an
//! unknown caller gets a 502 (504 on a timeout), never the content; tokens never reach the logs or the index.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::support::fake_gitlab::world::{DeployAccess, JobState};
use crate::support::fake_gitlab::world::{
    ALICE_PAT, BOB_PAT, DEPLOY_READ, EXPIRED_PAT, JOB_FINISHED, JOB_RUNNING, MAINT_PAT,
};
use crate::support::fake_gitlab::{FakeGitlab, World};
use crate::support::fake_public_go::FakePublicGo;
use crate::support::fake_public_npm::{FakePublicNpm, PublicPkg};
use crate::support::files::walk;
use crate::support::http::{cache_outcome, get, get_text, metric};
use crate::support::packrat::Packrat;
use crate::support::poll;

/// The route families a cached private package is reachable through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Route {
    /// `GET /api/v4/projects/42/packages/npm/@acme%2fui`
    NpmMetadata,
    /// `GET /api/v4/packages/npm/@acme%2fui` (instance level)
    NpmInstanceMetadata,
    /// `GET /api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz`
    NpmTarball,
    /// `GET /api/v4/projects/42/packages/npm/-/package/@acme%2fui/dist-tags`
    NpmDistTags,
    /// `GET /go/gitlab.example.com/acme/web/@v/list` (the single GOPROXY endpoint)
    GoList,
    /// `GET /go/gitlab.example.com/acme/web/@latest` (packrat's; GitLab has none)
    GoLatest,
    /// `GET /go/gitlab.example.com/acme/web/@v/v1.10.0.info`
    GoInfo,
    /// `GET /go/gitlab.example.com/acme/web/@v/v1.10.0.mod`
    GoMod,
    /// `GET /go/gitlab.example.com/acme/web/@v/v1.10.0.zip`
    GoZip,
    /// `GET /api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/list`
    GoProjectList,
    /// `GET /api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/v1.10.0.info`
    GoProjectInfo,
    /// `GET /api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/v1.10.0.mod`
    GoProjectMod,
    /// `GET /api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@v/v1.10.0.zip`
    GoProjectZip,
    /// `GET /api/v4/projects/42/packages` (the Packages API listing)
    PkgList,
    /// `GET /api/v4/projects/42/packages/1/package_files` (`@acme/core` 2.0.0's files)
    PkgFiles,
    /// `GET /api/v4/groups/acme/-/packages/npm/@acme%2fui`
    NpmGroupMetadata,
    /// `GET /api/v4/groups/acme/-/packages/npm/-/package/@acme%2fui/dist-tags`
    NpmGroupDistTags,
    /// `GET /api/v4/groups/acme/-/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz` (packrat keeps
    /// the client's prefix in tarball URLs; GitLab serves tarballs at the project only)
    NpmGroupTarball,
    /// `GET /api/v4/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz`
    NpmInstanceTarball,
    /// `GET /api/v4/projects/42/packages/go/gitlab.example.com/acme/web/@latest` (packrat's)
    GoProjectLatest,
    /// `GET /api/v4/projects/42/packages/1` (the Packages API single package)
    PkgShow,
    /// `GET /api/v4/projects/42/packages/1/pipelines`
    PkgPipelines,
    /// `GET /api/v4/groups/acme/packages` (the group listing)
    PkgGroupList,
}

/// Who asks after Alice (`ALICE_PAT`, developer on project 42) warmed the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    /// No credentials at all.
    Anonymous,
    /// `BOB_PAT`: a valid token whose user has no role in project 42.
    Bob,
    /// `EXPIRED_PAT`
    Expired,
    /// `JOB_FINISHED`: the job token of a finished job of project 42.
    JobFinished,
    /// [`DEPLOY_OTHER`]: a read deploy token of project 43 (npm routes only: the other
    /// families do not accept deploy tokens).
    DeployOther,
    /// [`JOB_OTHER`]: the token of a running job of project 43.
    JobOther,
}

/// Deploy token (`read_package_registry`) of project 43, added by the table test.
const DEPLOY_OTHER: &str = "deploy-other-project";
/// Job token of a running job of project 43, added by the table test.
const JOB_OTHER: &str = "job-other-project";

use Route::*;
use Who::*;

/// Route × credential × the status GitLab answers (API.md §4): npm metadata and dist-tags
/// say 401 to anonymous callers, npm tarballs 404; the Go proxy says 401 to anonymous
/// callers; an authenticated non-member gets 404; an expired token or a finished job's
/// token 401; the Packages API says 404 to anonymous callers and to non-members (a private
/// group's listing: `404 Group Not Found`). A read deploy token or a running job's token of
/// another project (43) is an authenticated caller without access: 404 wherever GitLab
/// accepts that kind of token (deploy tokens: npm only). Tarballs at the group and instance
/// prefixes (packrat's) answer like the project tarball GitLab serves.
const TABLE: &[(Route, Who, u16)] = &[
    (NpmMetadata, Anonymous, 401),
    (NpmMetadata, Bob, 404),
    (NpmMetadata, Expired, 401),
    (NpmMetadata, JobFinished, 401),
    (NpmInstanceMetadata, Anonymous, 401),
    (NpmInstanceMetadata, Bob, 404),
    (NpmInstanceMetadata, Expired, 401),
    (NpmInstanceMetadata, JobFinished, 401),
    (NpmTarball, Anonymous, 404),
    (NpmTarball, Bob, 404),
    (NpmTarball, Expired, 401),
    (NpmTarball, JobFinished, 401),
    (NpmDistTags, Anonymous, 401),
    (NpmDistTags, Bob, 404),
    (NpmDistTags, Expired, 401),
    (NpmDistTags, JobFinished, 401),
    (GoList, Anonymous, 401),
    (GoList, Bob, 404),
    (GoList, Expired, 401),
    (GoList, JobFinished, 401),
    (GoLatest, Anonymous, 401),
    (GoLatest, Bob, 404),
    (GoLatest, Expired, 401),
    (GoLatest, JobFinished, 401),
    (GoInfo, Anonymous, 401),
    (GoInfo, Bob, 404),
    (GoInfo, Expired, 401),
    (GoInfo, JobFinished, 401),
    (GoMod, Anonymous, 401),
    (GoMod, Bob, 404),
    (GoMod, Expired, 401),
    (GoMod, JobFinished, 401),
    (GoZip, Anonymous, 401),
    (GoZip, Bob, 404),
    (GoZip, Expired, 401),
    (GoZip, JobFinished, 401),
    (GoProjectList, Anonymous, 401),
    (GoProjectList, Bob, 404),
    (GoProjectList, Expired, 401),
    (GoProjectList, JobFinished, 401),
    (GoProjectInfo, Anonymous, 401),
    (GoProjectInfo, Bob, 404),
    (GoProjectInfo, Expired, 401),
    (GoProjectInfo, JobFinished, 401),
    (GoProjectMod, Anonymous, 401),
    (GoProjectMod, Bob, 404),
    (GoProjectMod, Expired, 401),
    (GoProjectMod, JobFinished, 401),
    (GoProjectZip, Anonymous, 401),
    (GoProjectZip, Bob, 404),
    (GoProjectZip, Expired, 401),
    (GoProjectZip, JobFinished, 401),
    (PkgList, Anonymous, 404),
    (PkgList, Bob, 404),
    (PkgList, Expired, 401),
    (PkgList, JobFinished, 401),
    (PkgFiles, Anonymous, 404),
    (PkgFiles, Bob, 404),
    (PkgFiles, Expired, 401),
    (PkgFiles, JobFinished, 401),
    (NpmGroupMetadata, Anonymous, 401),
    (NpmGroupMetadata, Bob, 404),
    (NpmGroupMetadata, Expired, 401),
    (NpmGroupMetadata, JobFinished, 401),
    (NpmGroupDistTags, Anonymous, 401),
    (NpmGroupDistTags, Bob, 404),
    (NpmGroupDistTags, Expired, 401),
    (NpmGroupDistTags, JobFinished, 401),
    (NpmGroupTarball, Anonymous, 404),
    (NpmGroupTarball, Bob, 404),
    (NpmGroupTarball, Expired, 401),
    (NpmGroupTarball, JobFinished, 401),
    (NpmInstanceTarball, Anonymous, 404),
    (NpmInstanceTarball, Bob, 404),
    (NpmInstanceTarball, Expired, 401),
    (NpmInstanceTarball, JobFinished, 401),
    (GoProjectLatest, Anonymous, 401),
    (GoProjectLatest, Bob, 404),
    (GoProjectLatest, Expired, 401),
    (GoProjectLatest, JobFinished, 401),
    (PkgShow, Anonymous, 404),
    (PkgShow, Bob, 404),
    (PkgShow, Expired, 401),
    (PkgShow, JobFinished, 401),
    (PkgPipelines, Anonymous, 404),
    (PkgPipelines, Bob, 404),
    (PkgPipelines, Expired, 401),
    (PkgPipelines, JobFinished, 401),
    (PkgGroupList, Anonymous, 404),
    (PkgGroupList, Bob, 404),
    (PkgGroupList, Expired, 401),
    (PkgGroupList, JobFinished, 401),
    (NpmMetadata, DeployOther, 404),
    (NpmInstanceMetadata, DeployOther, 404),
    (NpmGroupMetadata, DeployOther, 404),
    (NpmTarball, DeployOther, 404),
    (NpmGroupTarball, DeployOther, 404),
    (NpmInstanceTarball, DeployOther, 404),
    (NpmDistTags, DeployOther, 404),
    (NpmGroupDistTags, DeployOther, 404),
    (NpmMetadata, JobOther, 404),
    (NpmInstanceMetadata, JobOther, 404),
    (NpmGroupMetadata, JobOther, 404),
    (NpmTarball, JobOther, 404),
    (NpmGroupTarball, JobOther, 404),
    (NpmInstanceTarball, JobOther, 404),
    (NpmDistTags, JobOther, 404),
    (NpmGroupDistTags, JobOther, 404),
    (GoList, JobOther, 404),
    (GoLatest, JobOther, 404),
    (GoInfo, JobOther, 404),
    (GoMod, JobOther, 404),
    (GoZip, JobOther, 404),
    (GoProjectList, JobOther, 404),
    (GoProjectLatest, JobOther, 404),
    (GoProjectInfo, JobOther, 404),
    (GoProjectMod, JobOther, 404),
    (GoProjectZip, JobOther, 404),
    (PkgList, JobOther, 404),
    (PkgShow, JobOther, 404),
    (PkgFiles, JobOther, 404),
    (PkgPipelines, JobOther, 404),
];

const MODULE: &str = "gitlab.example.com/acme/web";
const GO_PROJECT: &str = "/api/v4/projects/42/packages/go/gitlab.example.com/acme/web";

impl Route {
    fn path(self) -> String {
        match self {
            NpmMetadata => "/api/v4/projects/42/packages/npm/@acme%2fui".into(),
            NpmInstanceMetadata => "/api/v4/packages/npm/@acme%2fui".into(),
            NpmTarball => "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz".into(),
            NpmDistTags => "/api/v4/projects/42/packages/npm/-/package/@acme%2fui/dist-tags".into(),
            GoList => format!("/go/{MODULE}/@v/list"),
            GoLatest => format!("/go/{MODULE}/@latest"),
            GoInfo => format!("/go/{MODULE}/@v/v1.10.0.info"),
            GoMod => format!("/go/{MODULE}/@v/v1.10.0.mod"),
            GoZip => format!("/go/{MODULE}/@v/v1.10.0.zip"),
            GoProjectList => format!("{GO_PROJECT}/@v/list"),
            GoProjectInfo => format!("{GO_PROJECT}/@v/v1.10.0.info"),
            GoProjectMod => format!("{GO_PROJECT}/@v/v1.10.0.mod"),
            GoProjectZip => format!("{GO_PROJECT}/@v/v1.10.0.zip"),
            PkgList => "/api/v4/projects/42/packages".into(),
            PkgFiles => "/api/v4/projects/42/packages/1/package_files".into(),
            NpmGroupMetadata => "/api/v4/groups/acme/-/packages/npm/@acme%2fui".into(),
            NpmGroupDistTags => {
                "/api/v4/groups/acme/-/packages/npm/-/package/@acme%2fui/dist-tags".into()
            }
            NpmGroupTarball => {
                "/api/v4/groups/acme/-/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz".into()
            }
            NpmInstanceTarball => "/api/v4/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz".into(),
            GoProjectLatest => format!("{GO_PROJECT}/@latest"),
            PkgShow => "/api/v4/projects/42/packages/1".into(),
            PkgPipelines => "/api/v4/projects/42/packages/1/pipelines".into(),
            PkgGroupList => "/api/v4/groups/acme/packages".into(),
        }
    }

    /// The same question asked of GitLab itself (GitLab has no `/go/` and no `@latest`).
    fn gitlab_path(self) -> String {
        match self {
            GoList | GoLatest | GoProjectLatest => GoProjectList.path(),
            NpmGroupTarball | NpmInstanceTarball => NpmTarball.path(),
            GoInfo => GoProjectInfo.path(),
            GoMod => GoProjectMod.path(),
            GoZip => GoProjectZip.path(),
            other => other.path(),
        }
    }

    fn is_go(self) -> bool {
        !matches!(
            self,
            NpmMetadata
                | NpmInstanceMetadata
                | NpmTarball
                | NpmDistTags
                | NpmGroupMetadata
                | NpmGroupDistTags
                | NpmGroupTarball
                | NpmInstanceTarball
                | PkgList
                | PkgFiles
                | PkgShow
                | PkgPipelines
                | PkgGroupList
        )
    }

    /// The access scope whose decision answers this route: the packument at that prefix for
    /// npm (tarballs and dist-tags pass the metadata's gate), the module's list in project
    /// 42 for Go (both entry points name the same project).
    fn scope(self) -> &'static str {
        match self {
            NpmInstanceMetadata | NpmInstanceTarball => "npm instance @acme/ui",
            NpmMetadata | NpmTarball | NpmDistTags => "npm project 42 @acme/ui",
            NpmGroupMetadata | NpmGroupTarball | NpmGroupDistTags => "npm group acme @acme/ui",
            PkgList | PkgShow => "packages api project 42",
            PkgFiles | PkgPipelines => "packages api project 42 package 1",
            PkgGroupList => "packages api group acme",
            _ => "go project 42 acme/web",
        }
    }
}

impl Who {
    /// The headers this caller sends: PATs as the clients send them (npm: Bearer; go:
    /// Basic from `.netrc`), job tokens as `JOB-TOKEN`.
    fn headers(self, route: Route) -> Vec<(&'static str, String)> {
        let pat = |token: &str| {
            if route.is_go() {
                basic("someone", token)
            } else {
                ("Authorization", format!("Bearer {token}"))
            }
        };
        match self {
            Anonymous => vec![],
            Bob => vec![pat(BOB_PAT)],
            Expired => vec![pat(EXPIRED_PAT)],
            JobFinished => vec![("JOB-TOKEN", JOB_FINISHED.to_string())],
            DeployOther => vec![("Deploy-Token", DEPLOY_OTHER.to_string())],
            JobOther => vec![("JOB-TOKEN", JOB_OTHER.to_string())],
        }
    }
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    (
        "Authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
    )
}

fn alice(route: Route) -> Vec<(&'static str, String)> {
    if route.is_go() {
        vec![basic("alice", ALICE_PAT)]
    } else {
        vec![("Authorization", format!("Bearer {ALICE_PAT}"))]
    }
}

fn refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `[[go.modules]]` for the standard world's private Go modules.
const GO_MODULES: &str = "[[go.modules]]\nprefix = \"gitlab.example.com/acme/web\"\nproject = 42\n\n\
                          [[go.modules]]\nprefix = \"gitlab.example.com/acme/Utils\"\nproject = 44\n";

/// A packrat that would forward anything GitLab does not have (`*` → public npm and Go
/// registries that both serve a malicious higher version of the private names): refusals
/// must stay refusals, never become public fallbacks.
async fn packrat_with_tempting_forwarding(
    fake: &FakeGitlab,
    public_npm: &FakePublicNpm,
    public_go: &FakePublicGo,
    cache: &str,
) -> Packrat {
    Packrat::start(
        &fake.url(),
        &format!(
            "{cache}\n{GO_MODULES}\n[forwarding]\nnpm_registry = \"{}\"\ngo_proxy = \"{}\"\n\n\
             [[forwarding.rules]]\nmatch = \"*\"\nforward = true\n",
            public_npm.url(),
            public_go.url()
        ),
    )
    .await
}

async fn attacked_publics() -> (FakePublicNpm, FakePublicGo) {
    let npm = FakePublicNpm::start().await;
    npm.publish(PublicPkg::new("@acme/ui", "99.0.0").exports("EVIL"));
    let go = FakePublicGo::start().await;
    go.publish_evil(MODULE, "v9.9.9", &[("", "web"), ("greet", "greet")]);
    (npm, go)
}

/// Warms every route as Alice; returns the `X-Packrat-Cache` outcome of a second read.
async fn warm(packrat: &Packrat, routes: &[Route]) -> Vec<(Route, String)> {
    let mut outcomes = Vec::new();
    for &route in routes {
        let url = format!("{}{}", packrat.url(), route.path());
        let h = alice(route);
        let r = get(&url, &refs(&h)).await;
        assert_eq!(r.status(), 200, "Alice warms {route:?}");
        r.bytes().await.unwrap();
        let again = get(&url, &refs(&h)).await;
        assert_eq!(again.status(), 200, "Alice again {route:?}");
        outcomes.push((route, cache_outcome(&again)));
    }
    outcomes
}

fn all_routes() -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    for (route, _, _) in TABLE {
        if !routes.contains(route) {
            routes.push(*route);
        }
    }
    routes
}

fn assert_refusal_body(route: Route, who: Who, body: &str) {
    let doc: Value = serde_json::from_str(body)
        .unwrap_or_else(|_| panic!("{route:?} × {who:?}: refusal is GitLab-shaped JSON: {body:?}"));
    assert!(
        doc.get("message").is_some() || doc.get("error").is_some(),
        "{route:?} × {who:?}: {body}"
    );
    for leak in ["1.1.0", "v1.10.0", "versions", "EVIL"] {
        assert!(
            !body.contains(leak),
            "{route:?} × {who:?}: refusal leaks {leak:?}: {body}"
        );
    }
}

#[tokio::test]
async fn refusals_are_gitlabs_on_every_route_and_asked_upstream_until_decided() {
    let fake = FakeGitlab::start(World::standard()).await;
    fake.with_world(|w| {
        w.add_deploy_token(DEPLOY_OTHER, 43, DeployAccess::Read)
            .add_job_token(JOB_OTHER, 43, JobState::Running);
    });
    let (public_npm, public_go) = attacked_publics().await;
    let packrat = packrat_with_tempting_forwarding(&fake, &public_npm, &public_go, "").await;
    let routes = all_routes();
    for (route, outcome) in warm(&packrat, &routes).await {
        assert_eq!(outcome, "hit", "{route:?} is cached for Alice");
    }

    // Pass 1: each (credential, scope) is unknown to packrat the first time, so GitLab is
    // asked; after that the cached decision answers. Anonymous goes first: its decision is
    // also what packrat consults to tell "no such package" from "not for you".
    let mut decided: HashSet<(Who, &str)> = HashSet::new();
    for who in [Anonymous, Bob, Expired, JobFinished, DeployOther, JobOther] {
        for &(route, _, expected) in TABLE.iter().filter(|(_, w, _)| *w == who) {
            let before = fake.requests_total();
            let h = who.headers(route);
            let r = get(&format!("{}{}", packrat.url(), route.path()), &refs(&h)).await;
            let status = r.status().as_u16();
            let www = r.headers().contains_key("www-authenticate");
            let body = r.text().await.unwrap();
            assert_eq!(status, expected, "{route:?} × {who:?}: {body}");
            assert_refusal_body(route, who, &body);
            if who == Expired {
                assert!(www && body.contains("invalid_token"), "{route:?}: {body}");
            }
            let asked = fake.requests_total() - before;
            if decided.insert((who, route.scope())) {
                assert!(asked >= 1, "{route:?} × {who:?}: GitLab was not asked");
            } else {
                assert_eq!(asked, 0, "{route:?} × {who:?}: the decision was cached");
            }
        }
    }

    // Pass 2: every answer again, identical, all from cached decisions.
    let before = fake.requests_total();
    for &(route, who, expected) in TABLE {
        let h = who.headers(route);
        let (status, body) =
            get_text(&format!("{}{}", packrat.url(), route.path()), &refs(&h)).await;
        assert_eq!(status, expected, "again {route:?} × {who:?}: {body}");
        assert_refusal_body(route, who, &body);
    }
    assert_eq!(fake.requests_total(), before, "pass 2 never asked GitLab");

    // Alice still reads everything, from the cache.
    for &route in &routes {
        let h = alice(route);
        let r = get(&format!("{}{}", packrat.url(), route.path()), &refs(&h)).await;
        assert_eq!(r.status(), 200, "Alice {route:?}");
    }

    // The table is GitLab's: the same requests straight to the fake get the same statuses.
    for &(route, who, expected) in TABLE {
        let h = who.headers(route);
        let (status, _) =
            get_text(&format!("{}{}", fake.url(), route.gitlab_path()), &refs(&h)).await;
        assert_eq!(status, expected, "GitLab itself: {route:?} × {who:?}");
    }

    // No refusal turned into a public fallback, and none counts as a confusion attempt.
    assert_eq!(
        public_npm.requests_total(),
        0,
        "{:?}",
        public_npm.request_log()
    );
    assert_eq!(
        public_go.requests_total(),
        0,
        "{:?}",
        public_go.request_log()
    );
    assert_eq!(
        metric(packrat.url(), "packrat_dependency_confusion_blocked_total").await,
        0.0
    );
}

/// Other valid credentials of project 42 get their own decisions (and the content).
#[tokio::test]
async fn other_members_read_through_their_own_decisions() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), GO_MODULES).await;
    warm(&packrat, &[NpmMetadata, NpmTarball, GoList, GoZip]).await;
    let url = |route: Route| format!("{}{}", packrat.url(), route.path());
    for (route, header) in [
        (NpmMetadata, ("JOB-TOKEN", JOB_RUNNING.to_string())),
        (NpmTarball, ("Deploy-Token", DEPLOY_READ.to_string())),
        (NpmMetadata, ("PRIVATE-TOKEN", MAINT_PAT.to_string())),
        (GoZip, basic("maint", MAINT_PAT)),
        (GoList, ("JOB-TOKEN", JOB_RUNNING.to_string())),
    ] {
        let before = fake.requests_total();
        let r = get(&url(route), &[(header.0, header.1.as_str())]).await;
        assert_eq!(r.status(), 200, "{route:?} with {}", header.0);
        assert!(
            fake.requests_total() > before,
            "{route:?}: GitLab confirmed the newcomer"
        );
    }
}

#[tokio::test]
async fn access_lost_upstream_is_refused_once_auth_ttl_has_passed() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(
        &fake.url(),
        &format!("[cache]\nauth_ttl = \"1s\"\n\n{GO_MODULES}"),
    )
    .await;
    let routes = [NpmMetadata, NpmTarball, GoList, GoZip];
    warm(&packrat, &routes).await;

    // Alice is removed from project 42 in GitLab.
    fake.with_world(|w| {
        w.roles.get_mut("alice").unwrap().remove(&42);
    });
    // Within auth_ttl her cached decision stands (GitLab is not asked).
    let before = fake.requests_total();
    for route in routes {
        let h = alice(route);
        let r = get(&format!("{}{}", packrat.url(), route.path()), &refs(&h)).await;
        assert_eq!(r.status(), 200, "{route:?} within auth_ttl");
    }
    assert_eq!(fake.requests_total(), before);

    for route in routes {
        let h = alice(route);
        let h = refs(&h);
        let url = format!("{}{}", packrat.url(), route.path());
        let before = fake.requests_total();
        let (status, body) = if matches!(route, NpmMetadata | GoList) {
            // The first route of a scope answers 200 from her cached decision (GitLab not
            // asked, as above) until auth_ttl has passed; the first refusal is the sign.
            poll::eventually(
                &format!("{route:?}: her decision is asked again once auth_ttl passed"),
                poll::DEADLINE,
                || get_text(&url, &h),
                |(status, _)| *status != 200,
            )
            .await
        } else {
            get_text(&url, &h).await
        };
        assert_eq!(status, 404, "{route:?} after auth_ttl: {body}");
        assert_refusal_body(route, Bob, &body);
        // The first route of each scope re-asks GitLab; the rest reuse that new decision.
        if matches!(route, NpmMetadata | GoList) {
            assert!(fake.requests_total() > before, "{route:?}: GitLab re-asked");
        }
    }
}

#[tokio::test]
async fn with_gitlab_down_recent_decisions_are_reused_and_unknown_callers_get_502() {
    let fake = FakeGitlab::start(World::standard()).await;
    // auth_ttl = 0: every decision must be re-confirmed while GitLab is up, and may only be
    // reused (up to stale_if_error) while it is down.
    let packrat = Packrat::start(
        &fake.url(),
        &format!("[cache]\nauth_ttl = \"0s\"\n\n{GO_MODULES}"),
    )
    .await;
    let routes = [NpmMetadata, NpmTarball, NpmDistTags, GoList, GoInfo, GoZip];
    warm(&packrat, &routes).await;
    let bob = |route: Route| Bob.headers(route);
    for route in [NpmMetadata, GoList] {
        let (status, _) = get_text(
            &format!("{}{}", packrat.url(), route.path()),
            &refs(&bob(route)),
        )
        .await;
        assert_eq!(status, 404);
    }
    let zip = fake.with_world(|w| w.go_zip(MODULE, "v1.10.0").unwrap());

    fake.go_down().await;
    for route in routes {
        let url = format!("{}{}", packrat.url(), route.path());
        // Alice's recent decision is reused: stale metadata is marked, blobs are whole.
        let r = get(&url, &refs(&alice(route))).await;
        assert_eq!(r.status(), 200, "Alice {route:?} with GitLab down");
        if matches!(route, NpmMetadata | NpmDistTags | GoList) {
            assert!(
                r.headers()
                    .get("warning")
                    .is_some_and(|w| w.to_str().unwrap().starts_with("110")),
                "{route:?}: {:?}",
                r.headers()
            );
        }
        let bytes = r.bytes().await.unwrap();
        if route == GoZip {
            assert_eq!(bytes.as_ref(), zip.as_slice());
        }
        // Bob's recent refusal is reused too.
        let (status, _) = get_text(&url, &refs(&bob(route))).await;
        assert_eq!(status, 404, "Bob {route:?} with GitLab down");
        // Nobody can vouch for callers packrat has never seen, even a valid job token:
        // 502 with a sentence, never the content. (Anonymous is not among them: packrat
        // asked GitLab about anonymous access when Bob was refused.)
        for headers in [
            vec![("JOB-TOKEN", JOB_RUNNING.to_string())],
            vec![("PRIVATE-TOKEN", MAINT_PAT.to_string())],
        ] {
            let (status, body) = get_text(&url, &refs(&headers)).await;
            assert_eq!(status, 502, "{route:?} {headers:?}: {body}");
            assert!(
                body.contains("cannot reach GitLab to check this credential's access")
                    && body.contains("retry"),
                "{route:?}: a clear sentence: {body}"
            );
            assert_refusal_body(route, Anonymous, &body);
        }
    }

    // GitLab back: the job token is confirmed and served.
    fake.come_back().await;
    let (status, _) = get_text(
        &format!("{}{}", packrat.url(), NpmMetadata.path()),
        &[("JOB-TOKEN", JOB_RUNNING)],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn with_gitlab_down_undecided_callers_cannot_tell_cached_from_uncached() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), GO_MODULES).await;
    warm(&packrat, &[NpmMetadata, NpmTarball, GoList, PkgFiles]).await;
    // Cached (Alice read them) and uncached private items side by side, same route family.
    let pairs = [
        (
            NpmMetadata.path(),
            "/api/v4/projects/42/packages/npm/@acme%2fcore".to_string(),
        ),
        (
            NpmTarball.path(),
            "/api/v4/projects/42/packages/npm/@acme/core/-/@acme/core-2.0.0.tgz".to_string(),
        ),
        (
            GoList.path(),
            "/go/gitlab.example.com/acme/!utils/@v/list".to_string(),
        ),
        (
            PkgFiles.path(),
            "/api/v4/projects/42/packages/2/package_files".to_string(),
        ),
    ];
    fake.go_down().await;
    for who in [Anonymous, Bob] {
        for (cached, uncached) in &pairs {
            let route = if cached.starts_with("/go/") {
                GoList
            } else {
                NpmMetadata
            };
            let h = who.headers(route);
            let a = get_text(&format!("{}{cached}", packrat.url()), &refs(&h)).await;
            let b = get_text(&format!("{}{uncached}", packrat.url()), &refs(&h)).await;
            assert_eq!(a.0, 502, "{who:?} {cached}: {}", a.1);
            assert_eq!(a, b, "{who:?}: {cached} vs {uncached}");
            assert!(
                a.1.contains("cannot reach GitLab to check this credential's access"),
                "{}",
                a.1
            );
        }
    }
}

#[tokio::test]
async fn decisions_older_than_stale_if_error_are_not_reused() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(
        &fake.url(),
        &format!("[cache]\nauth_ttl = \"0s\"\nstale_if_error = \"1s\"\n\n{GO_MODULES}"),
    )
    .await;
    let routes = [NpmMetadata, NpmTarball, GoList, GoZip];
    warm(&packrat, &routes).await;
    // A timer, not an event: the decisions must be older than stale_if_error before GitLab
    // goes down, and nothing packrat answers while GitLab is up shows their age.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    fake.go_down().await;
    for route in routes {
        let (status, body) = get_text(
            &format!("{}{}", packrat.url(), route.path()),
            &refs(&alice(route)),
        )
        .await;
        assert_eq!(status, 502, "{route:?}: {body}");
        assert_refusal_body(route, Who::Anonymous, &body);
    }
}

#[tokio::test]
async fn tokens_never_reach_the_logs_or_the_index() {
    let fake = FakeGitlab::start(World::standard()).await;
    let (public_npm, public_go) = attacked_publics().await;
    let mut packrat = {
        let cache = "[cache]\nauth_ttl = \"0s\"\n";
        Packrat::builder()
            .upstream(&fake.url())
            .toml(&format!(
                "{cache}\n{GO_MODULES}\n[forwarding]\nnpm_registry = \"{}\"\ngo_proxy = \"{}\"\n\n\
                 [[forwarding.rules]]\nmatch = \"*\"\nforward = true\n",
                public_npm.url(),
                public_go.url()
            ))
            .rust_log("trace")
            .start()
            .await
    };
    let tokens = [
        ALICE_PAT,
        BOB_PAT,
        EXPIRED_PAT,
        JOB_FINISHED,
        JOB_RUNNING,
        DEPLOY_READ,
        MAINT_PAT,
    ];
    let carriers = |token: &str, route: Route| -> Vec<(&'static str, String)> {
        vec![
            ("PRIVATE-TOKEN", token.to_string()),
            ("JOB-TOKEN", token.to_string()),
            ("Deploy-Token", token.to_string()),
            ("Authorization", format!("Bearer {token}")),
            basic("user", token),
        ]
        .into_iter()
        .filter(|(k, _)| !(route.is_go() && *k == "Deploy-Token"))
        .collect()
    };
    for route in all_routes() {
        for token in tokens {
            for header in carriers(token, route) {
                let url = format!("{}{}", packrat.url(), route.path());
                get(&url, &[(header.0, header.1.as_str())])
                    .await
                    .bytes()
                    .await
                    .ok();
            }
        }
    }
    // Public fallbacks and the upstream-down path log too.
    for token in tokens {
        let h = [("Authorization", format!("Bearer {token}"))];
        for path in [
            "/api/v4/packages/npm/is-thing",
            "/go/example.com/pub/greet/@v/list",
        ] {
            get(&format!("{}{path}", packrat.url()), &refs(&h))
                .await
                .bytes()
                .await
                .ok();
        }
    }
    fake.go_down().await;
    for token in tokens {
        let url = format!("{}{}", packrat.url(), NpmMetadata.path());
        get(&url, &[("PRIVATE-TOKEN", token)])
            .await
            .bytes()
            .await
            .ok();
    }
    packrat.stop().await;

    let logs = packrat.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace logging was on"
    );
    for token in tokens {
        assert!(!logs.contains(token), "{token} appears in the logs");
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{token}"));
        assert!(
            !logs.contains(&b64),
            "Basic credentials for {token} appear in the logs"
        );
    }
    // Nor in any file of the data directory (index, blobs, temp files).
    for path in walk(packrat.data_dir()) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for token in tokens {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "{token} is stored in {}",
                path.display()
            );
        }
    }
}

/// Anonymous access works exactly where GitLab allows it: project 7 (`pub/lib`) is public.
#[tokio::test]
async fn public_projects_are_readable_anonymously() {
    let fake = FakeGitlab::start(World::standard()).await;
    let packrat = Packrat::start(&fake.url(), "").await;
    let url = packrat.url();
    let meta = format!("{url}/api/v4/projects/7/packages/npm/@pub%2fhello");
    let r = get(&meta, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public"));
    let doc: Value = r.json().await.unwrap();
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap();
    let r = get(tarball, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let go = format!("{url}/api/v4/projects/7/packages/go/gitlab.example.com/pub/lib/@v");
    let (status, list) = get_text(&format!("{go}/list"), &[]).await;
    assert_eq!((status, list.as_str()), (200, "v0.1.0"));
    assert_eq!(get(&format!("{go}/v0.1.0.zip"), &[]).await.status(), 200);
    // ...and not a byte further: the private project next door stays closed.
    let (status, _) = get_text(
        &format!("{url}/api/v4/projects/42/packages/npm/@acme%2fui"),
        &[],
    )
    .await;
    assert_eq!(status, 401);
}

// ---- per-caller documents: npm_allow_packages_in_multiple_projects ------------------------

/// The npm prefixes whose documents GitLab merges per caller when the flag is on.
const MERGING_PREFIXES: [&str; 2] = ["/api/v4/groups/acme/-/packages/npm", "/api/v4/packages/npm"];
/// Alice reads project 42 only; her document is `@acme/ui` 1.0.0 and 1.1.0.
const NARROW: &str = "1.0.0 1.1.0";
/// Maint also reads project 43 (`acme/sub/tools`), which holds `@acme/ui` 2.0.0.
const WIDE: &str = "1.0.0 1.1.0 2.0.0";
const P2_FILE: &str = "@acme/ui-2.0.0.tgz";

/// The standard world plus `@acme/ui` 2.0.0 in project 43, with the flag on.
async fn merging_gitlab() -> FakeGitlab {
    let fake = FakeGitlab::start(World::standard()).await;
    fake.with_world(|w| {
        w.add_npm(
            43,
            crate::support::fake_gitlab::NpmPkg::new("@acme/ui", "2.0.0"),
        );
    });
    fake.set_npm_multiple_projects(true);
    fake
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {token}"))]
}

/// The versions of `@acme/ui` the caller is served at `prefix`, the cache outcome, and how
/// many requests GitLab answered meanwhile.
async fn served_versions(
    fake: &FakeGitlab,
    packrat: &Packrat,
    prefix: &str,
    headers: &[(&'static str, String)],
) -> (String, String, usize) {
    let before = fake.requests_total();
    let r = get(
        &format!("{}{prefix}/@acme%2fui", packrat.url()),
        &refs(headers),
    )
    .await;
    assert_eq!(r.status(), 200, "{prefix} {headers:?}");
    let outcome = cache_outcome(&r);
    let body = r.text().await.unwrap();
    let doc: Value = serde_json::from_str(&body).unwrap();
    let mut versions: Vec<String> = doc["versions"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    versions.sort();
    if !versions.iter().any(|v| v == "2.0.0") {
        assert!(
            !body.contains("2.0.0") && !body.contains("/projects/43/"),
            "{prefix}: nothing of project 43 in {body}"
        );
    }
    (versions.join(" "), outcome, fake.requests_total() - before)
}

async fn tarball_at(
    packrat: &Packrat,
    prefix: &str,
    headers: &[(&'static str, String)],
    file: &str,
) -> (u16, bytes::Bytes) {
    let r = get(
        &format!("{}{prefix}/@acme/ui/-/{file}", packrat.url()),
        &refs(headers),
    )
    .await;
    (r.status().as_u16(), r.bytes().await.unwrap())
}

/// The narrow caller's request for the file only the wide caller's document lists: the
/// same 404 as a file that does not exist at all (no oracle, no bytes).
async fn assert_p2_refused(packrat: &Packrat, prefix: &str, p2: &[u8], when: &str) {
    let alice = bearer(ALICE_PAT);
    let (status, body) = tarball_at(packrat, prefix, &alice, P2_FILE).await;
    let (missing_status, missing) = tarball_at(packrat, prefix, &alice, "@acme/ui-9.9.9.tgz").await;
    assert_eq!((status, missing_status), (404, 404), "{prefix} {when}");
    assert_eq!(
        body, missing,
        "{prefix} {when}: refused like a missing file"
    );
    assert_ne!(body.as_ref(), p2, "{prefix} {when}");
}

#[tokio::test]
async fn merged_npm_documents_narrow_caller_first_never_see_the_wider_callers_versions() {
    let fake = merging_gitlab().await;
    let p2 = fake.with_world(|w| w.npm_versions(43, "@acme/ui")[0].tarball.clone());
    let p1 = fake.with_world(|w| {
        w.npm_versions(42, "@acme/ui")
            .into_iter()
            .find(|r| r.version == "1.1.0")
            .unwrap()
            .tarball
            .clone()
    });
    let packrat = Packrat::start(&fake.url(), "").await;
    let (alice, maint) = (bearer(ALICE_PAT), bearer(MAINT_PAT));
    // A running job of project 42 reads what Alice reads: the same document.
    let job = vec![("JOB-TOKEN", JOB_RUNNING.to_string())];
    for prefix in MERGING_PREFIXES {
        // B warms; a second read within auth_ttl and metadata_ttl asks nobody.
        let (v, _, asked) = served_versions(&fake, &packrat, prefix, &alice).await;
        assert_eq!((v.as_str(), asked > 0), (NARROW, true), "{prefix}");
        let (v, outcome, asked) = served_versions(&fake, &packrat, prefix, &alice).await;
        assert_eq!((v.as_str(), outcome.as_str(), asked), (NARROW, "hit", 0));
        // A newcomer with the same document: GitLab's 304 vouches for this revision.
        let (v, outcome, asked) = served_versions(&fake, &packrat, prefix, &job).await;
        assert_eq!((v.as_str(), outcome.as_str()), (NARROW, "revalidated"));
        assert_eq!(asked, 1, "{prefix}: one conditional request");
        let (_, outcome, asked) = served_versions(&fake, &packrat, prefix, &job).await;
        assert_eq!((outcome.as_str(), asked), ("hit", 0), "{prefix}");

        // A refreshes the shared record with its wider document.
        let (v, _, asked) = served_versions(&fake, &packrat, prefix, &maint).await;
        assert_eq!((v.as_str(), asked > 0), (WIDE, true), "{prefix}");
        let (v, outcome, asked) = served_versions(&fake, &packrat, prefix, &maint).await;
        assert_eq!((v.as_str(), outcome.as_str(), asked), (WIDE, "hit", 0));

        // B, well within auth_ttl: never A's record, neither its files. B's first request
        // after A's refresh (the tarball's) asks GitLab for B's own document.
        let before = fake.requests_total();
        assert_p2_refused(&packrat, prefix, &p2, "right after A's refresh").await;
        assert!(
            fake.requests_total() > before,
            "{prefix}: GitLab asked for B's own document"
        );
        let (v, outcome, asked) = served_versions(&fake, &packrat, prefix, &alice).await;
        assert_eq!(
            (v.as_str(), outcome.as_str(), asked),
            (NARROW, "hit", 0),
            "{prefix}: B after A"
        );
        // B's document is the job's revision again: the job is served from cache.
        let (v, outcome, asked) = served_versions(&fake, &packrat, prefix, &job).await;
        assert_eq!((v.as_str(), outcome.as_str(), asked), (NARROW, "hit", 0));
        assert_p2_refused(&packrat, prefix, &p2, "after B's refetch").await;
        let (status, body) = tarball_at(&packrat, prefix, &alice, "@acme/ui-1.1.0.tgz").await;
        assert_eq!(
            (status, body.as_ref()),
            (200, p1.as_ref()),
            "{prefix}: B's own file"
        );

        // A still gets everything, its project-43 tarball included.
        let (status, body) = tarball_at(&packrat, prefix, &maint, P2_FILE).await;
        assert_eq!(
            (status, body.as_ref()),
            (200, p2.as_ref()),
            "{prefix}: A's file"
        );
        let (v, _, _) = served_versions(&fake, &packrat, prefix, &maint).await;
        assert_eq!(v.as_str(), WIDE, "{prefix}");
        // The blob is cached now; B still cannot reach it.
        assert_p2_refused(&packrat, prefix, &p2, "with A's tarball cached").await;
    }
}

#[tokio::test]
async fn merged_npm_documents_wide_caller_first_and_stale_refreshes_never_leak() {
    let fake = merging_gitlab().await;
    let p2 = fake.with_world(|w| w.npm_versions(43, "@acme/ui")[0].tarball.clone());
    let packrat = Packrat::start(&fake.url(), "[cache]\nmetadata_ttl = \"1s\"\n").await;
    let (alice, maint) = (bearer(ALICE_PAT), bearer(MAINT_PAT));
    for prefix in MERGING_PREFIXES {
        // A first, its tarball cached.
        let (v, _, _) = served_versions(&fake, &packrat, prefix, &maint).await;
        assert_eq!(v.as_str(), WIDE, "{prefix}");
        let (status, body) = tarball_at(&packrat, prefix, &maint, P2_FILE).await;
        assert_eq!((status, body.as_ref()), (200, p2.as_ref()), "{prefix}");
        // B second: asked, served its own document; A's file stays out of reach.
        let (v, _, asked) = served_versions(&fake, &packrat, prefix, &alice).await;
        assert_eq!((v.as_str(), asked > 0), (NARROW, true), "{prefix}");
        assert_p2_refused(&packrat, prefix, &p2, "B second").await;
        let (v, _, asked) = served_versions(&fake, &packrat, prefix, &maint).await;
        assert_eq!((v.as_str(), asked > 0), (WIDE, true), "{prefix}");

        // Both decided; the record goes stale and A's refresh replaces it (until then A's
        // reads are hits that ask GitLab nothing).
        let (v, _, asked) = poll::eventually(
            "A's read refreshes the record once metadata_ttl passed",
            poll::DEADLINE,
            || served_versions(&fake, &packrat, prefix, &maint),
            |(_, _, asked)| *asked > 0,
        )
        .await;
        assert_eq!((v.as_str(), asked > 0), (WIDE, true), "{prefix}");
        // B within auth_ttl is asked again and gets only project 42's versions.
        let (v, _, asked) = served_versions(&fake, &packrat, prefix, &alice).await;
        assert_eq!((v.as_str(), asked > 0), (NARROW, true), "{prefix}");
        let (v, outcome, asked) = served_versions(&fake, &packrat, prefix, &alice).await;
        assert_eq!((v.as_str(), outcome.as_str(), asked), (NARROW, "hit", 0));
        assert_p2_refused(&packrat, prefix, &p2, "after the stale refresh").await;
    }

    // GitLab down: B's decision names the record's revision and is reused; A's names
    // another revision, so A is as undecided as a stranger (502, never B's document).
    fake.go_down().await;
    for prefix in MERGING_PREFIXES {
        let r = get(
            &format!("{}{prefix}/@acme%2fui", packrat.url()),
            &refs(&alice),
        )
        .await;
        assert_eq!(r.status(), 200, "{prefix}: B during the outage");
        let doc: Value = r.json().await.unwrap();
        assert!(doc["versions"].get("2.0.0").is_none(), "{prefix}");
        assert_p2_refused(&packrat, prefix, &p2, "during the outage").await;
        for path in ["/@acme%2fui".to_string(), format!("/@acme/ui/-/{P2_FILE}")] {
            let (status, body) =
                get_text(&format!("{}{prefix}{path}", packrat.url()), &refs(&maint)).await;
            assert_eq!(status, 502, "{prefix}{path}: {body}");
            assert!(
                body.contains("cannot reach GitLab to check this credential's access"),
                "{prefix}{path}: {body}"
            );
        }
    }
}
