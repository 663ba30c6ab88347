//! The fake's data model: groups, projects, tokens, and the npm packages they hold.
//!
//! A [`World`] is built before the fake starts ([`World::standard`] plus `add_*` calls) and can
//! be changed while it runs through `FakeGitlab::with_world`. Tarballs are generated here,
//! deterministically, when a package is added: a real gzip'd tar whose `dist.shasum` is the sha1
//! of its bytes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use serde_json::Value;
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Developer on project 42 (`acme/web`).
pub const ALICE_PAT: &str = "alice-pat";
/// Maintainer on projects 42 (`acme/web`) and 43 (`acme/sub/tools`).
pub const MAINT_PAT: &str = "maint-pat";
/// Guest on project 42: may read packages, may not publish.
pub const GUEST_PAT: &str = "guest-pat";
/// A valid PAT whose user has no role anywhere.
pub const BOB_PAT: &str = "bob-pat";
/// An expired PAT: every request carrying it gets 401 `invalid_token`.
pub const EXPIRED_PAT: &str = "expired-pat";
/// Job token of a running job in project 42.
pub const JOB_RUNNING: &str = "job-running";
/// Job token of a finished job in project 42: 401.
pub const JOB_FINISHED: &str = "job-finished";
/// Deploy token with `read_package_registry` on project 42.
pub const DEPLOY_READ: &str = "deploy-read";
/// Deploy token with `read_package_registry` + `write_package_registry` on project 42.
pub const DEPLOY_WRITE: &str = "deploy-write";

/// Private project `priv/lib` that `examples/fake_gitlab.rs --bench` adds (see
/// [`World::add_bench_private_packages`]); not in [`World::standard`].
pub const BENCH_PRIVATE_PROJECT: u64 = 9;
/// Private group `priv`, holding [`BENCH_PRIVATE_PROJECT`].
pub const BENCH_PRIVATE_GROUP: u64 = 5;
/// Reporter on [`BENCH_PRIVATE_PROJECT`] (and nothing else): the CI token of the benchmarks.
pub const BENCH_PAT: &str = "bench-pat";

/// The `bench-*` packages of the benchmark world: name suffix and tarball size.
const BENCH_TARBALL_SIZES: [(&str, usize); 4] = [
    ("5k", 5 * 1024),
    ("50k", 50 * 1024),
    ("500k", 500 * 1024),
    ("2m", 2 * 1024 * 1024),
];

/// `package.json` mtime used in generated tarballs (the date `npm pack` uses).
const TAR_MTIME: u64 = 499_162_500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Private,
    Public,
}

/// Project roles, ordered: a higher role can do everything a lower one can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Guest,
    Reporter,
    Developer,
    Maintainer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeployAccess {
    /// `read_package_registry`
    Read,
    /// `read_package_registry` + `write_package_registry`
    ReadWrite,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: u64,
    /// Full path, e.g. `acme/sub`.
    pub full_path: String,
    pub visibility: Visibility,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: u64,
    /// Full path, e.g. `acme/web`.
    pub full_path: String,
    pub visibility: Visibility,
}

impl Project {
    /// Full path of the group holding this project (`acme/sub` for `acme/sub/tools`).
    pub fn parent_path(&self) -> &str {
        self.full_path
            .rsplit_once('/')
            .map_or("", |(parent, _)| parent)
    }
}

/// What a token string stands for.
#[derive(Clone, Debug)]
pub enum Token {
    Pat {
        user: String,
        expired: bool,
    },
    Job {
        project_id: u64,
        state: JobState,
    },
    Deploy {
        project_id: u64,
        access: DeployAccess,
    },
}

/// Who is calling, once a credential has been accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(String),
    Job {
        project_id: u64,
    },
    Deploy {
        project_id: u64,
        access: DeployAccess,
    },
}

impl Caller {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Caller::Anonymous)
    }
}

/// An npm package version to add to a project: the builder tests use.
///
/// ```ignore
/// NpmPkg::new("@acme/ui", "2.0.0").dep("@acme/utils", "^1.0.0").size(50_000).tag("next")
/// ```
#[derive(Clone, Debug)]
pub struct NpmPkg {
    pub name: String,
    pub version: String,
    pub dependencies: BTreeMap<String, String>,
    /// Extra per-version keys copied into the packument (`deprecated`, `bin`, `engines`, ...).
    pub fields: serde_json::Map<String, Value>,
    /// dist-tags to point at this version when it is added.
    pub tags: Vec<String>,
    /// Approximate tarball size in bytes; padded with an incompressible file. `None` = minimal.
    pub tarball_size: Option<usize>,
    /// Whether the tarball's `package.json` lists the dependencies (false keeps huge
    /// metadata-only packages cheap to build).
    pub deps_in_tarball: bool,
}

impl NpmPkg {
    pub fn new(name: &str, version: &str) -> NpmPkg {
        NpmPkg {
            name: name.to_string(),
            version: version.to_string(),
            dependencies: BTreeMap::new(),
            fields: serde_json::Map::new(),
            tags: Vec::new(),
            tarball_size: None,
            deps_in_tarball: true,
        }
    }

    pub fn dep(mut self, name: &str, range: &str) -> NpmPkg {
        self.dependencies
            .insert(name.to_string(), range.to_string());
        self
    }

    /// Adds a per-version packument key (GitLab copies e.g. `deprecated`, `bin`, `engines`).
    pub fn field(mut self, key: &str, value: Value) -> NpmPkg {
        self.fields.insert(key.to_string(), value);
        self
    }

    pub fn tag(mut self, tag: &str) -> NpmPkg {
        self.tags.push(tag.to_string());
        self
    }

    /// Makes the `.tgz` about `bytes` long (never smaller than the minimal tarball).
    pub fn size(mut self, bytes: usize) -> NpmPkg {
        self.tarball_size = Some(bytes);
        self
    }

    pub fn metadata_only_deps(mut self) -> NpmPkg {
        self.deps_in_tarball = false;
        self
    }
}

/// One stored npm package version (GitLab keeps one package record per version).
#[derive(Clone, Debug)]
pub struct NpmRecord {
    /// Package id, unique in the world, increasing in creation order.
    pub id: u64,
    pub project_id: u64,
    pub name: String,
    pub version: String,
    pub dependencies: BTreeMap<String, String>,
    pub fields: serde_json::Map<String, Value>,
    /// `<name>-<version>.tgz`, scope included (`@acme/ui-1.0.0.tgz`), as GitLab stores it.
    pub file_name: String,
    pub tarball: Bytes,
    /// sha1 hex of `tarball`: the packument's `dist.shasum`.
    pub shasum: String,
    /// sha256 hex of `tarball`: the object-storage key.
    pub sha256: String,
}

/// A package record of any format (`packages_packages`), as the Packages API shows it.
#[derive(Clone, Debug)]
pub struct Package {
    /// Unique in the world, increasing in creation order (shared with [`NpmRecord::id`]).
    pub id: u64,
    pub project_id: u64,
    pub name: String,
    /// `None` for versionless packages (e.g. Maven metadata).
    pub version: Option<String>,
    /// One of the Packages API `package_type` values (`npm`, `maven`, `generic`, ...).
    pub package_type: String,
    /// `default`, `hidden`, `processing`, `error`, `pending_destruction` or `deprecated`.
    pub status: String,
    pub created_at: String,
    pub last_downloaded_at: Option<String>,
    pub files: Vec<PackageFile>,
    /// Pipelines that built it, oldest first (the last one is its `pipeline`).
    pub pipeline_ids: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct PackageFile {
    pub id: u64,
    pub file_name: String,
    pub size: u64,
    pub created_at: String,
    pub file_md5: Option<String>,
    pub file_sha1: Option<String>,
    pub file_sha256: Option<String>,
    /// Deleted files are kept, hidden from the API.
    pub pending_destruction: bool,
}

/// A CI pipeline (`PipelineBasic` + `user`).
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub sha: String,
    pub git_ref: String,
    pub status: String,
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
    /// Username of who ran it.
    pub user: String,
}

/// A non-npm package to add to a project, the builder tests use:
///
/// ```ignore
/// PkgSpec::new("maven", "com/acme/lib", "1.0").file("lib-1.0.jar", 2421).pipelines(2)
/// PkgSpec::versionless("maven", "com/acme/lib").status("hidden")
/// ```
#[derive(Clone, Debug)]
pub struct PkgSpec {
    pub package_type: String,
    pub name: String,
    pub version: Option<String>,
    pub status: String,
    /// (file name, size)
    pub files: Vec<(String, u64)>,
    /// How many pipelines built it.
    pub pipelines: usize,
    /// Whether it was ever downloaded (sets `last_downloaded_at`).
    pub downloaded: bool,
}

impl PkgSpec {
    pub fn new(package_type: &str, name: &str, version: &str) -> PkgSpec {
        PkgSpec {
            package_type: package_type.to_string(),
            name: name.to_string(),
            version: Some(version.to_string()),
            status: "default".to_string(),
            files: Vec::new(),
            pipelines: 0,
            downloaded: false,
        }
    }

    pub fn versionless(package_type: &str, name: &str) -> PkgSpec {
        PkgSpec {
            version: None,
            ..PkgSpec::new(package_type, name, "")
        }
    }

    pub fn status(mut self, status: &str) -> PkgSpec {
        self.status = status.to_string();
        self
    }

    pub fn file(mut self, name: &str, size: u64) -> PkgSpec {
        self.files.push((name.to_string(), size));
        self
    }

    pub fn pipelines(mut self, n: usize) -> PkgSpec {
        self.pipelines = n;
        self
    }

    pub fn downloaded(mut self) -> PkgSpec {
        self.downloaded = true;
        self
    }
}

/// `2024-01-01T00:00:00.000Z` plus `secs` seconds, as GitLab formats timestamps.
pub fn timestamp(secs: u64) -> String {
    let total = 1_704_067_200 + secs; // 2024-01-01T00:00:00Z
    let days = (total / 86_400) as i64;
    let rem = total % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Groups, projects, tokens and packages. Every mutation bumps `generation`, which
/// invalidates rendered packuments.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub groups: Vec<Group>,
    pub projects: Vec<Project>,
    pub tokens: HashMap<String, Token>,
    /// user → project id → role
    pub roles: HashMap<String, HashMap<u64, Role>>,
    pub npm: Vec<NpmRecord>,
    /// (project id, package name) → tag → version
    pub npm_tags: HashMap<(u64, String), BTreeMap<String, String>>,
    /// Every package record of every format, as the Packages API lists them (npm versions
    /// added with [`World::add_npm`] or published appear here too, with the same id).
    pub packages: Vec<Package>,
    /// Pipelines that built packages.
    pub pipelines: Vec<Pipeline>,
    /// project id → its repository, for the Go proxy (see [`super::go`]).
    pub go: BTreeMap<u64, super::go::GoRepo>,
    next_package_id: u64,
    next_file_id: u64,
    next_pipeline_id: u64,
    /// Seconds since 2024-01-01T00:00:00Z; every created record takes the next one, so
    /// `created_at` is unique and increasing.
    clock: u64,
    generation: u64,
}

impl World {
    /// An empty world: no groups, projects, tokens or packages.
    pub fn new() -> World {
        World {
            next_package_id: 1,
            next_file_id: 1,
            next_pipeline_id: 1,
            ..World::default()
        }
    }

    /// The default world every test starts from:
    ///
    /// - group 1 `acme` (private) → project 42 `acme/web` (private):
    ///   `@acme/ui` 1.0.0, 1.1.0 (deps `@acme/utils ^1.0.0`), `@acme/utils` 1.0.0, 1.2.0
    ///   (deps `@acme/core ^2.0.0`), `@acme/core` 2.0.0
    /// - group 3 `acme/sub` (private) → project 43 `acme/sub/tools` (private):
    ///   `@acme/tools` 0.1.0 (deps `@acme/ui ^1.0.0`); only `maint-pat` can read it
    /// - group 2 `pub` (public) → project 7 `pub/lib` (public): `@pub/hello` 1.0.0
    /// - project 44 `acme/Utils` (private, in group `acme`; alice and maint): Go only
    /// - Go modules in projects 42, 44 and 7: see [`World::add_standard_go_modules`]
    /// - tokens: see the `*_PAT`, `JOB_*` and `DEPLOY_*` constants.
    pub fn standard() -> World {
        let mut w = World::new();
        w.add_group(1, "acme", Visibility::Private)
            .add_group(2, "pub", Visibility::Public)
            .add_group(3, "acme/sub", Visibility::Private)
            .add_project(42, "acme/web", Visibility::Private)
            .add_project(43, "acme/sub/tools", Visibility::Private)
            .add_project(7, "pub/lib", Visibility::Public)
            .add_project(44, "acme/Utils", Visibility::Private);
        w.add_npm(42, NpmPkg::new("@acme/core", "2.0.0"))
            .add_npm(
                42,
                NpmPkg::new("@acme/utils", "1.0.0").dep("@acme/core", "^2.0.0"),
            )
            .add_npm(
                42,
                NpmPkg::new("@acme/utils", "1.2.0").dep("@acme/core", "^2.0.0"),
            )
            .add_npm(
                42,
                NpmPkg::new("@acme/ui", "1.0.0").dep("@acme/utils", "^1.0.0"),
            )
            .add_npm(
                42,
                NpmPkg::new("@acme/ui", "1.1.0").dep("@acme/utils", "^1.0.0"),
            )
            .add_npm(
                43,
                NpmPkg::new("@acme/tools", "0.1.0").dep("@acme/ui", "^1.0.0"),
            )
            .add_npm(7, NpmPkg::new("@pub/hello", "1.0.0"));
        w.add_pat(
            ALICE_PAT,
            "alice",
            &[(42, Role::Developer), (44, Role::Developer)],
        )
        .add_pat(
            MAINT_PAT,
            "maint",
            &[
                (42, Role::Maintainer),
                (43, Role::Maintainer),
                (44, Role::Maintainer),
            ],
        )
        .add_pat(GUEST_PAT, "guest", &[(42, Role::Guest)])
        .add_pat(BOB_PAT, "bob", &[])
        .add_expired_pat(EXPIRED_PAT, "eve")
        .add_job_token(JOB_RUNNING, 42, JobState::Running)
        .add_job_token(JOB_FINISHED, 42, JobState::Finished)
        .add_deploy_token(DEPLOY_READ, 42, DeployAccess::Read)
        .add_deploy_token(DEPLOY_WRITE, 42, DeployAccess::ReadWrite);
        w.add_standard_go_modules();
        w
    }

    /// What `examples/fake_gitlab.rs --bench` adds to project 7 (public): `@pub/bench-5k`,
    /// `-50k`, `-500k`, `-2m` (tarballs of 5 KiB … 2 MiB) and `@pub/huge`, whose packument
    /// is over 20 MB (metadata only: its tarballs are tiny and its dependencies don't exist).
    pub fn add_bench_packages(&mut self) -> &mut World {
        for (suffix, size) in BENCH_TARBALL_SIZES {
            self.add_npm(
                7,
                NpmPkg::new(&format!("@pub/bench-{suffix}"), "1.0.0").size(size),
            );
        }
        for i in 0..2000u32 {
            let mut pkg = NpmPkg::new("@pub/huge", &format!("1.{}.{}", i / 100, i % 100))
                .metadata_only_deps()
                .field(
                    "deprecated",
                    Value::String(format!(
                        "version {i} of a deliberately enormous packument used by the benchmarks"
                    )),
                );
            for d in 0..150u32 {
                pkg = pkg.dep(
                    &format!("@pub/huge-dependency-with-a-long-name-{d:04}"),
                    "^1.2.3 || ^2.0.0-beta.1",
                );
            }
            self.add_npm(7, pkg);
        }
        self
    }

    /// What `examples/fake_gitlab.rs --bench` adds for authenticated reads: the private group
    /// `priv` → private project 9 `priv/lib` holding `@priv/bench-5k`, `-50k`, `-500k`, `-2m`
    /// (tarballs of 5 KiB … 2 MiB, like the public `@pub/bench-*`), and [`BENCH_PAT`], a
    /// Reporter on it. Anonymous reads get what project 42 answers (401 for a packument, 404
    /// for a tarball).
    pub fn add_bench_private_packages(&mut self) -> &mut World {
        self.add_group(BENCH_PRIVATE_GROUP, "priv", Visibility::Private)
            .add_project(BENCH_PRIVATE_PROJECT, "priv/lib", Visibility::Private);
        for (suffix, size) in BENCH_TARBALL_SIZES {
            self.add_npm(
                BENCH_PRIVATE_PROJECT,
                NpmPkg::new(&format!("@priv/bench-{suffix}"), "1.0.0").size(size),
            );
        }
        self.add_pat(
            BENCH_PAT,
            "bench-ci",
            &[(BENCH_PRIVATE_PROJECT, Role::Reporter)],
        )
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn touch(&mut self) {
        self.generation += 1;
    }

    pub fn add_group(&mut self, id: u64, full_path: &str, visibility: Visibility) -> &mut World {
        assert!(self.group(id).is_none(), "group id {id} already exists");
        if let Some((parent, _)) = full_path.rsplit_once('/') {
            assert!(
                self.group_by_path(parent).is_some(),
                "add group {parent:?} before its subgroup {full_path:?}"
            );
        }
        self.groups.push(Group {
            id,
            full_path: full_path.to_string(),
            visibility,
        });
        self.touch();
        self
    }

    /// Adds a project; its parent group (the path minus the last segment) must exist.
    pub fn add_project(&mut self, id: u64, full_path: &str, visibility: Visibility) -> &mut World {
        assert!(self.project(id).is_none(), "project id {id} already exists");
        let (parent, _) = full_path
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("project path {full_path:?} needs a group"));
        assert!(
            self.group_by_path(parent).is_some(),
            "add group {parent:?} before project {full_path:?}"
        );
        self.projects.push(Project {
            id,
            full_path: full_path.to_string(),
            visibility,
        });
        self.touch();
        self
    }

    /// A personal access token for `user`, with the given roles (an empty slice = no access).
    pub fn add_pat(&mut self, token: &str, user: &str, roles: &[(u64, Role)]) -> &mut World {
        self.tokens.insert(
            token.to_string(),
            Token::Pat {
                user: user.to_string(),
                expired: false,
            },
        );
        let map = self.roles.entry(user.to_string()).or_default();
        for &(project, role) in roles {
            map.insert(project, role);
        }
        self.touch();
        self
    }

    pub fn add_expired_pat(&mut self, token: &str, user: &str) -> &mut World {
        self.tokens.insert(
            token.to_string(),
            Token::Pat {
                user: user.to_string(),
                expired: true,
            },
        );
        self.touch();
        self
    }

    pub fn add_job_token(&mut self, token: &str, project_id: u64, state: JobState) -> &mut World {
        self.tokens
            .insert(token.to_string(), Token::Job { project_id, state });
        self.touch();
        self
    }

    pub fn add_deploy_token(
        &mut self,
        token: &str,
        project_id: u64,
        access: DeployAccess,
    ) -> &mut World {
        self.tokens
            .insert(token.to_string(), Token::Deploy { project_id, access });
        self.touch();
        self
    }

    /// Adds one npm package version to a project, generating its tarball. Panics on a
    /// duplicate name+version in the same project (GitLab never allows npm duplicates).
    pub fn add_npm(&mut self, project_id: u64, pkg: NpmPkg) -> &mut World {
        assert!(
            self.project(project_id).is_some(),
            "add project {project_id} before its packages"
        );
        assert!(
            !self.npm.iter().any(|r| r.project_id == project_id
                && r.name == pkg.name
                && r.version == pkg.version),
            "{}@{} already exists in project {project_id}",
            pkg.name,
            pkg.version
        );
        let tarball = Bytes::from(npm_tarball(&pkg));
        let shasum = hex::encode(Sha1::digest(&tarball));
        self.push_npm(
            project_id,
            &pkg.name,
            &pkg.version,
            pkg.dependencies,
            pkg.fields,
            &pkg.tags,
            tarball,
            shasum,
        );
        self
    }

    /// Stores one npm version: the npm record and its Packages API package (same id).
    #[allow(clippy::too_many_arguments)]
    fn push_npm(
        &mut self,
        project_id: u64,
        name: &str,
        version: &str,
        dependencies: BTreeMap<String, String>,
        fields: serde_json::Map<String, Value>,
        tags: &[String],
        tarball: Bytes,
        shasum: String,
    ) -> u64 {
        let id = self.next_package_id;
        self.next_package_id += 1;
        let file_name = format!("{name}-{version}.tgz");
        let sha256 = hex::encode(Sha256::digest(&tarball));
        let created_at = self.tick();
        self.packages.push(Package {
            id,
            project_id,
            name: name.to_string(),
            version: Some(version.to_string()),
            package_type: "npm".to_string(),
            status: "default".to_string(),
            created_at: created_at.clone(),
            last_downloaded_at: None,
            files: vec![PackageFile {
                id: self.next_file_id,
                file_name: file_name.clone(),
                size: tarball.len() as u64,
                created_at,
                file_md5: None,
                file_sha1: Some(shasum.clone()),
                file_sha256: Some(sha256.clone()),
                pending_destruction: false,
            }],
            pipeline_ids: Vec::new(),
        });
        self.next_file_id += 1;
        let record = NpmRecord {
            id,
            project_id,
            file_name,
            shasum,
            sha256,
            tarball,
            name: name.to_string(),
            version: version.to_string(),
            dependencies,
            fields,
        };
        for tag in tags {
            self.npm_tags
                .entry((project_id, name.to_string()))
                .or_default()
                .insert(tag.clone(), version.to_string());
        }
        self.npm.push(record);
        self.touch();
        id
    }

    /// What a successful `npm publish` stores: the version with the client's tarball and
    /// `shasum` (as sent), its `tag` moved to it. Returns the package id.
    #[allow(clippy::too_many_arguments)]
    pub fn publish_npm(
        &mut self,
        project_id: u64,
        name: &str,
        version: &str,
        dependencies: BTreeMap<String, String>,
        fields: serde_json::Map<String, Value>,
        tag: Option<&str>,
        tarball: Bytes,
        shasum: String,
    ) -> u64 {
        let tags: Vec<String> = tag.into_iter().map(str::to_string).collect();
        self.push_npm(
            project_id,
            name,
            version,
            dependencies,
            fields,
            &tags,
            tarball,
            shasum,
        )
    }

    /// Adds a package of any format (see [`PkgSpec`]); returns its id.
    pub fn add_package(&mut self, project_id: u64, spec: PkgSpec) -> u64 {
        assert!(
            self.project(project_id).is_some(),
            "add project {project_id} before its packages"
        );
        let id = self.next_package_id;
        self.next_package_id += 1;
        let created_at = self.tick();
        let mut files = Vec::new();
        for (file_name, size) in spec.files {
            let digest = hex::encode(Sha256::digest(format!("{id}/{file_name}")));
            files.push(PackageFile {
                id: self.next_file_id,
                file_name,
                size,
                created_at: self.tick(),
                file_md5: Some(digest[..32].to_string()),
                file_sha1: Some(digest[..40].to_string()),
                file_sha256: Some(digest),
                pending_destruction: false,
            });
            self.next_file_id += 1;
        }
        let mut pipeline_ids = Vec::new();
        for _ in 0..spec.pipelines {
            let pid = self.next_pipeline_id;
            self.next_pipeline_id += 1;
            let at = self.tick();
            self.pipelines.push(Pipeline {
                id: pid,
                iid: pid,
                project_id,
                sha: hex::encode(Sha1::digest(format!("pipeline {pid}"))),
                git_ref: "main".to_string(),
                status: "success".to_string(),
                source: "push".to_string(),
                created_at: at.clone(),
                updated_at: at,
                user: "root".to_string(),
            });
            pipeline_ids.push(pid);
        }
        let last_downloaded_at = spec.downloaded.then(|| self.tick());
        self.packages.push(Package {
            id,
            project_id,
            name: spec.name,
            version: spec.version,
            package_type: spec.package_type,
            status: spec.status,
            created_at,
            last_downloaded_at,
            files,
            pipeline_ids,
        });
        self.touch();
        id
    }

    /// Sets a package's status (e.g. `hidden`, `error`, `deprecated`).
    pub fn set_package_status(&mut self, package_id: u64, status: &str) {
        if let Some(p) = self.packages.iter_mut().find(|p| p.id == package_id) {
            p.status = status.to_string();
        }
        self.touch();
    }

    /// A package delete: the package goes `pending_destruction`, its npm version (and the
    /// tags on it) disappears from the npm routes.
    pub fn destroy_package(&mut self, package_id: u64) {
        if let Some(p) = self.packages.iter_mut().find(|p| p.id == package_id) {
            p.status = "pending_destruction".to_string();
        }
        self.drop_npm_record(package_id);
        self.touch();
    }

    /// A package file delete; an npm version without installable files leaves the npm routes.
    pub fn destroy_package_file(&mut self, package_id: u64, file_id: u64) {
        let mut none_left = false;
        if let Some(p) = self.packages.iter_mut().find(|p| p.id == package_id) {
            for f in p.files.iter_mut().filter(|f| f.id == file_id) {
                f.pending_destruction = true;
            }
            none_left = p.files.iter().all(|f| f.pending_destruction);
        }
        if none_left {
            self.drop_npm_record(package_id);
        }
        self.touch();
    }

    fn drop_npm_record(&mut self, package_id: u64) {
        let Some(pos) = self.npm.iter().position(|r| r.id == package_id) else {
            return;
        };
        let record = self.npm.remove(pos);
        if let Some(tags) = self
            .npm_tags
            .get_mut(&(record.project_id, record.name.clone()))
        {
            tags.retain(|_, v| *v != record.version);
        }
    }

    /// Sets (or, with an empty value, removes) a per-version packument key, e.g. `deprecated`;
    /// the package's status follows `deprecated` (API.md §1.7).
    pub fn set_npm_field(
        &mut self,
        project_id: u64,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) {
        let mut id = None;
        for r in self
            .npm
            .iter_mut()
            .filter(|r| r.project_id == project_id && r.name == name && r.version == version)
        {
            if value.is_empty() {
                r.fields.remove(key);
            } else {
                r.fields
                    .insert(key.to_string(), Value::String(value.to_string()));
            }
            id = Some(r.id);
        }
        if key == "deprecated" {
            if let Some(p) = self.packages.iter_mut().find(|p| Some(p.id) == id) {
                p.status = if value.is_empty() {
                    "default"
                } else {
                    "deprecated"
                }
                .to_string();
            }
        }
        self.touch();
    }

    /// Removes a dist-tag; returns whether it existed.
    pub fn remove_npm_tag(&mut self, project_id: u64, name: &str, tag: &str) -> bool {
        let removed = self
            .npm_tags
            .get_mut(&(project_id, name.to_string()))
            .is_some_and(|tags| tags.remove(tag).is_some());
        self.touch();
        removed
    }

    fn tick(&mut self) -> String {
        self.clock += 1;
        timestamp(self.clock)
    }

    /// Removes one version (as a package delete would); returns whether it existed. Tags
    /// pointing at it are removed too.
    pub fn remove_npm(&mut self, project_id: u64, name: &str, version: &str) -> bool {
        for p in self.packages.iter_mut().filter(|p| {
            p.project_id == project_id
                && p.package_type == "npm"
                && p.name == name
                && p.version.as_deref() == Some(version)
        }) {
            p.status = "pending_destruction".to_string();
        }
        let before = self.npm.len();
        self.npm
            .retain(|r| !(r.project_id == project_id && r.name == name && r.version == version));
        if let Some(tags) = self.npm_tags.get_mut(&(project_id, name.to_string())) {
            tags.retain(|_, v| v != version);
        }
        self.touch();
        before != self.npm.len()
    }

    /// Points `tag` at `version` (no check that the version exists).
    pub fn set_npm_tag(&mut self, project_id: u64, name: &str, tag: &str, version: &str) {
        self.npm_tags
            .entry((project_id, name.to_string()))
            .or_default()
            .insert(tag.to_string(), version.to_string());
        self.touch();
    }

    // ---- lookups ------------------------------------------------------------------------

    pub fn group(&self, id: u64) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn group_by_path(&self, path: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.full_path.eq_ignore_ascii_case(path))
    }

    /// `:id` as it appears in a route after percent-decoding: numeric id or full path.
    pub fn group_by_ref(&self, id_or_path: &str) -> Option<&Group> {
        match id_or_path.parse::<u64>() {
            Ok(id) => self.group(id),
            Err(_) => self.group_by_path(id_or_path),
        }
    }

    pub fn project(&self, id: u64) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    pub fn project_by_ref(&self, id_or_path: &str) -> Option<&Project> {
        match id_or_path.parse::<u64>() {
            Ok(id) => self.project(id),
            Err(_) => self
                .projects
                .iter()
                .find(|p| p.full_path.eq_ignore_ascii_case(id_or_path)),
        }
    }

    /// Projects in a group and all its subgroups (`group.all_projects`).
    pub fn projects_under(&self, group_path: &str) -> Vec<&Project> {
        let prefix = format!("{}/", group_path.to_ascii_lowercase());
        self.projects
            .iter()
            .filter(|p| p.full_path.to_ascii_lowercase().starts_with(&prefix))
            .collect()
    }

    /// The top-level namespace an instance-level npm request for `@scope/...` resolves to.
    pub fn top_level_group(&self, scope: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| !g.full_path.contains('/') && g.full_path.eq_ignore_ascii_case(scope))
    }

    pub fn role(&self, caller: &Caller, project_id: u64) -> Option<Role> {
        match caller {
            Caller::User(user) => self.roles.get(user)?.get(&project_id).copied(),
            _ => None,
        }
    }

    /// `read_package`: public project, any role (guest+), a running job of the project, or a
    /// deploy token of the project.
    pub fn can_read(&self, caller: &Caller, project_id: u64) -> bool {
        let Some(project) = self.project(project_id) else {
            return false;
        };
        if project.visibility == Visibility::Public {
            return true;
        }
        match caller {
            Caller::Anonymous => false,
            Caller::User(_) => self.role(caller, project_id).is_some(),
            Caller::Job { project_id: p } | Caller::Deploy { project_id: p, .. } => {
                *p == project_id
            }
        }
    }

    /// `create_package`: developer+, a running job of the project, or a write deploy token.
    pub fn can_write(&self, caller: &Caller, project_id: u64) -> bool {
        match caller {
            Caller::Anonymous => false,
            Caller::User(_) => self
                .role(caller, project_id)
                .is_some_and(|r| r >= Role::Developer),
            Caller::Job { project_id: p } => *p == project_id,
            Caller::Deploy {
                project_id: p,
                access,
            } => *p == project_id && *access == DeployAccess::ReadWrite,
        }
    }

    /// `destroy_package`: maintainer+.
    pub fn can_destroy(&self, caller: &Caller, project_id: u64) -> bool {
        self.role(caller, project_id)
            .is_some_and(|r| r >= Role::Maintainer)
    }

    /// `read_group`: public group, or the caller can read some project inside it.
    pub fn can_read_group(&self, caller: &Caller, group: &Group) -> bool {
        group.visibility == Visibility::Public
            || self
                .projects_under(&group.full_path)
                .iter()
                .any(|p| self.can_read(caller, p.id))
    }

    /// All versions of `name` in one project (the project-level `PackageFinder`).
    pub fn npm_versions(&self, project_id: u64, name: &str) -> Vec<&NpmRecord> {
        self.npm
            .iter()
            .filter(|r| r.project_id == project_id && r.name == name)
            .collect()
    }

    /// The project holding the most recent package of `name` among `projects` (how the
    /// group and instance levels pick "the" project).
    pub fn npm_owner_among(&self, projects: &[&Project], name: &str) -> Option<u64> {
        self.npm
            .iter()
            .filter(|r| r.name == name && projects.iter().any(|p| p.id == r.project_id))
            .max_by_key(|r| r.id)
            .map(|r| r.project_id)
    }

    /// dist-tags for a name in a project; `latest` defaults to the highest version.
    pub fn npm_dist_tags(&self, project_id: u64, name: &str) -> BTreeMap<String, String> {
        let mut tags = self
            .npm_tags
            .get(&(project_id, name.to_string()))
            .cloned()
            .unwrap_or_default();
        if !tags.contains_key("latest") {
            if let Some(max) = self
                .npm_versions(project_id, name)
                .into_iter()
                .map(|r| r.version.as_str())
                .max_by(|a, b| semver_cmp(a, b))
            {
                tags.insert("latest".to_string(), max.to_string());
            }
        }
        tags
    }
}

/// Orders semver strings (`1.2.3`, `1.2.3-rc.1`); prerelease sorts before its release.
pub fn semver_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (Vec<u64>, Option<&str>) {
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        (
            core.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
            pre,
        )
    }
    let (ca, pa) = split(a);
    let (cb, pb) = split(b);
    ca.cmp(&cb).then_with(|| match (pa, pb) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => {
            let xs: Vec<&str> = x.split('.').collect();
            let ys: Vec<&str> = y.split('.').collect();
            for (i, j) in xs.iter().zip(&ys) {
                let ord = match (i.parse::<u64>(), j.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => std::cmp::Ordering::Less,
                    (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
                    (Err(_), Err(_)) => i.cmp(j),
                };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            xs.len().cmp(&ys.len())
        }
    })
}

// ---- tarball generation ---------------------------------------------------------------------

/// Builds the `.tgz` for a package version: `package/package.json`, `package/index.js`
/// (exports `"<name>@<version>"`, followed by what its dependencies export, so `require`
/// proves the whole tree resolved), and, when a size is asked for, `package/pad.bin` filled
/// with deterministic incompressible bytes.
pub fn npm_tarball(pkg: &NpmPkg) -> Vec<u8> {
    let mut manifest = serde_json::json!({
        "name": pkg.name,
        "version": pkg.version,
        "description": format!("{} (generated by packrat's fake GitLab)", pkg.name),
        "main": "index.js",
        "license": "MIT",
    });
    let deps: Vec<&String> = if pkg.deps_in_tarball {
        manifest["dependencies"] = serde_json::to_value(&pkg.dependencies).expect("deps to json");
        pkg.dependencies.keys().collect()
    } else {
        Vec::new()
    };
    let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest to json");
    let index = format!(
        "const deps = {};\nconst inner = deps.map((d) => require(d));\n\
         module.exports = {:?} + (inner.length ? \" (\" + inner.join(\", \") + \")\" : \"\");\n",
        serde_json::to_string(&deps).expect("deps to json"),
        format!("{}@{}", pkg.name, pkg.version),
    );
    let files = |pad: usize| -> Vec<u8> {
        let mut entries: Vec<(&str, Vec<u8>)> = vec![
            ("package/package.json", manifest.clone()),
            ("package/index.js", index.clone().into_bytes()),
        ];
        if pad > 0 {
            entries.push((
                "package/pad.bin",
                noise(&format!("{}@{}", pkg.name, pkg.version), pad),
            ));
        }
        tgz(&entries)
    };
    let minimal = files(0);
    let Some(target) = pkg.tarball_size else {
        return minimal;
    };
    // Random bytes don't compress, so the size is nearly linear in the pad; a few rounds of
    // correction land within a few bytes of the target.
    let mut pad = target.saturating_sub(minimal.len() + 512);
    let mut out = minimal;
    for _ in 0..4 {
        if pad == 0 {
            break;
        }
        out = files(pad);
        let diff = target as i64 - out.len() as i64;
        if diff.abs() < 64 {
            break;
        }
        pad = (pad as i64 + diff).max(1) as usize;
    }
    out
}

/// A gzip'd tar of `(path, bytes)` entries, deterministic (fixed mtimes, uid 0).
pub fn tgz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).expect("tar path");
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(TAR_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, data.as_slice()).expect("tar append");
    }
    let mut gz = tar.into_inner().expect("tar finish");
    gz.flush().expect("gzip flush");
    gz.finish().expect("gzip finish")
}

/// Deterministic incompressible bytes (xorshift64*, seeded from `seed`).
pub(super) fn noise(seed: &str, len: usize) -> Vec<u8> {
    let digest = Sha256::digest(seed.as_bytes());
    let mut state = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
