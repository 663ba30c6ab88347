//! GitLab's Go module proxy (API.md §2): `@v/list`, `@v/<v>.info`, `.mod` and `.zip` under
//! `/api/v4/projects/:id/packages/go/*module_name`, with no `@latest`.
//!
//! Modules live in per-project repositories ([`GoRepo`]: commits with file trees, tags and
//! branches), and everything is derived from them the way GitLab does:
//! - a module path is `gitlab.example.com/<project full path>[/<subdirectory>]`;
//! - `list` = every `v`-semver tag whose commit has `<subdirectory>/go.mod` starting with
//!   `module <module path>` and whose major agrees with the path's `/vN` suffix;
//! - a zip holds the module directory's files as `<module>@<version>/<path>`, minus nested
//!   modules (directories with their own `go.mod`), built deterministically on each request;
//! - `!x` in the module path and version means `X`; an un-escaped upper-case path is 404.
//!
//! Fault hooks ([`GoFault`], `FakeGitlab::go_fault`) make one version's zip or go.mod
//! ill-formed: entries outside the prefix, `..` entries, a zip that expands past Go's limit,
//! garbage bytes, duplicate entries, a case-insensitive name collision, an oversized go.mod.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use bytes::Bytes;
use serde_json::json;
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use super::{authenticate, decode, FakeRequest, Family, Reply, Shared, Visibility, World};

/// The fake's host as module paths see it (`Settings.build_gitlab_go_url`).
pub const GO_HOST: &str = "gitlab.example.com";

/// One commit: its time (unix seconds, UTC) and its whole file tree.
#[derive(Clone, Debug)]
pub struct GoCommit {
    /// 40 hex digits, derived from the content.
    pub sha: String,
    pub time: u64,
    pub files: BTreeMap<String, Bytes>,
}

/// A project's repository as far as the Go proxy is concerned.
#[derive(Clone, Debug, Default)]
pub struct GoRepo {
    pub commits: Vec<GoCommit>,
    /// tag name → commit sha
    pub tags: BTreeMap<String, String>,
    /// branch name → commit sha
    pub branches: BTreeMap<String, String>,
}

impl GoRepo {
    pub fn commit(&self, sha: &str) -> Option<&GoCommit> {
        self.commits.iter().find(|c| c.sha == sha)
    }
}

/// What a faulty version serves instead of the real thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoFault {
    /// A valid zip with one entry under another module's prefix.
    ZipOutsidePrefix,
    /// A valid zip with an entry `<prefix>../escape.go`.
    ZipDotDot,
    /// A valid zip (about 550 KB) whose entries expand to 512 MiB, past Go's 500 MiB limit.
    ZipTooBig,
    /// Bytes that are not a zip at all.
    ZipGarbage,
    /// A zip with two entries of the same name (`<prefix>dup.go`).
    ZipDuplicate,
    /// A zip with `<prefix>Collide.go` and `<prefix>collide.go`.
    ZipCaseCollision,
    /// A 17 MiB go.mod (Go's limit is 16 MiB), for `.mod`.
    ModTooBig,
}

/// A (module, version) GitLab would serve, with what the checksum database records for it.
#[derive(Clone, Debug)]
pub struct GoModuleVersion {
    pub project_id: u64,
    pub module: String,
    pub version: String,
    pub time: u64,
    pub sha: String,
}

// ---- the world's Go data ----------------------------------------------------------------------

impl World {
    /// Adds a commit to a project's repository and returns its sha.
    pub fn add_go_commit(&mut self, project_id: u64, time: u64, files: &[(&str, &str)]) -> String {
        let files: BTreeMap<String, Bytes> = files
            .iter()
            .map(|(p, c)| ((*p).to_string(), Bytes::from(c.to_string())))
            .collect();
        self.add_go_commit_bytes(project_id, time, files)
    }

    /// [`World::add_go_commit`] with arbitrary (binary) file contents.
    pub fn add_go_commit_bytes(
        &mut self,
        project_id: u64,
        time: u64,
        files: BTreeMap<String, Bytes>,
    ) -> String {
        assert!(
            self.project(project_id).is_some(),
            "add project {project_id} before its repository"
        );
        let repo = self.go.entry(project_id).or_default();
        let mut h = Sha1::new();
        h.update(format!("{project_id} {time} {}\n", repo.commits.len()));
        for (path, content) in &files {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(content);
            h.update([0]);
        }
        let sha = hex::encode(h.finalize());
        repo.commits.push(GoCommit {
            sha: sha.clone(),
            time,
            files,
        });
        self.touch_go();
        sha
    }

    /// Points a tag at a commit (any name: GitLab lists only valid `v`-semver ones).
    pub fn add_go_tag(&mut self, project_id: u64, tag: &str, sha: &str) -> &mut World {
        let repo = self.go.entry(project_id).or_default();
        assert!(repo.commit(sha).is_some(), "unknown commit {sha}");
        repo.tags.insert(tag.to_string(), sha.to_string());
        self.touch_go();
        self
    }

    pub fn add_go_branch(&mut self, project_id: u64, branch: &str, sha: &str) -> &mut World {
        let repo = self.go.entry(project_id).or_default();
        assert!(repo.commit(sha).is_some(), "unknown commit {sha}");
        repo.branches.insert(branch.to_string(), sha.to_string());
        self.touch_go();
        self
    }

    /// Every (module, version) the fake serves through `list`: what a checksum database
    /// for this world holds.
    pub fn go_module_versions(&self) -> Vec<GoModuleVersion> {
        let mut out = Vec::new();
        for (&project_id, repo) in &self.go {
            let Some(project) = self.project(project_id) else {
                continue;
            };
            let root = format!("{GO_HOST}/{}", project.full_path);
            for (tag, sha) in &repo.tags {
                let Some(commit) = repo.commit(sha) else {
                    continue;
                };
                for path in commit.files.keys() {
                    let Some(dir) = path.strip_suffix("go.mod") else {
                        continue;
                    };
                    if !(dir.is_empty() || dir.ends_with('/')) {
                        continue;
                    }
                    let module = format!("{root}/{}", dir.trim_end_matches('/'));
                    let module = module.trim_end_matches('/').to_string();
                    if valid_version(commit, &module, dir.trim_end_matches('/'), tag) {
                        out.push(GoModuleVersion {
                            project_id,
                            module,
                            version: tag.clone(),
                            time: commit.time,
                            sha: sha.clone(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.module, &a.version).cmp(&(&b.module, &b.version)));
        out
    }

    /// The module zip GitLab builds for `module@version` (no faults applied).
    pub fn go_zip(&self, module: &str, version: &str) -> Option<Vec<u8>> {
        let (commit, subdir) = self.go_lookup(module, version)?;
        Some(module_zip(commit, subdir, module, version))
    }

    /// The raw `go.mod` of `module@version`.
    pub fn go_mod(&self, module: &str, version: &str) -> Option<Bytes> {
        let (commit, subdir) = self.go_lookup(module, version)?;
        commit.files.get(&join(subdir, "go.mod")).cloned()
    }

    /// The commit and subdirectory serving a valid `module@version` (tag, branch or
    /// pseudo-version).
    fn go_lookup<'m>(&self, module: &'m str, version: &str) -> Option<(&GoCommit, &'m str)> {
        let (project_id, subdir) = self.go_project_of(module)?;
        let repo = self.go.get(&project_id)?;
        let commit = find_version(repo, version)?;
        valid_version(commit, module, subdir, version).then_some((commit, subdir))
    }

    /// The project and subdirectory a module path names (GitLab's `ModuleFinder`).
    fn go_project_of<'m>(&self, module: &'m str) -> Option<(u64, &'m str)> {
        let rest = module.strip_prefix(GO_HOST)?.strip_prefix('/')?;
        self.projects
            .iter()
            .filter_map(|p| {
                let sub = rest.strip_prefix(p.full_path.as_str())?;
                if sub.is_empty() {
                    Some((p.id, ""))
                } else {
                    sub.strip_prefix('/').map(|s| (p.id, s))
                }
            })
            .max_by_key(|(_, sub)| std::cmp::Reverse(sub.len()))
    }

    fn touch_go(&mut self) {
        self.touch();
    }

    /// The Go modules of [`World::standard`]:
    ///
    /// - project 42 `acme/web`: module `gitlab.example.com/acme/web` (packages `web`, `greet`,
    ///   `mathx`, `internal/version`) at tags v1.0.0, v1.1.0, v1.9.0, v1.10.0 and
    ///   v1.11.0-rc.1 (so the highest release, v1.10.0, is neither the lexically highest
    ///   tag nor the highest version); the major module `gitlab.example.com/acme/web/v2` in
    ///   `v2/` at tag v2.0.0; the nested module `gitlab.example.com/acme/web/tools` in
    ///   `tools/` (excluded from the root module's zips); tags that GitLab does not list
    ///   (`v1.3`, `release-1`, `v3.0.0`); branch `main`. `greet` v1.1.0+ imports
    ///   `gitlab.example.com/acme/Utils/strutil`.
    /// - project 44 `acme/Utils` (upper case: `!utils` in URLs): module
    ///   `gitlab.example.com/acme/Utils` (packages `utils`, `strutil`) at v1.0.0 and the
    ///   pre-release `v1.0.1-Prerelease` (`v1.0.1-!prerelease` in URLs).
    /// - project 7 `pub/lib` (public): `gitlab.example.com/pub/lib` v0.1.0.
    pub fn add_standard_go_modules(&mut self) -> &mut World {
        const T0: u64 = 1_591_360_496; // 2020-06-05T12:34:56Z
        const DAY: u64 = 86_400;
        let web = |version: &str, utils: bool| -> Vec<(String, String)> {
            let mut files = vec![
                (
                    "go.mod".to_string(),
                    if utils {
                        format!(
                            "module {GO_HOST}/acme/web\n\ngo 1.19\n\nrequire {GO_HOST}/acme/Utils v1.0.0\n"
                        )
                    } else {
                        format!("module {GO_HOST}/acme/web\n\ngo 1.19\n")
                    },
                ),
                ("README.md".to_string(), format!("# acme/web {version}\n")),
                ("LICENSE".to_string(), "MIT License\n".to_string()),
                (
                    "web.go".to_string(),
                    format!(
                        "// Package web is the root package of acme/web.\npackage web\n\n\
                         import \"{GO_HOST}/acme/web/internal/version\"\n\n\
                         // Version is the module version this package was built from.\n\
                         func Version() string {{ return version.V }}\n"
                    ),
                ),
                (
                    "internal/version/version.go".to_string(),
                    format!("package version\n\n// V is the release.\nconst V = \"{version}\"\n"),
                ),
                (
                    "mathx/mathx.go".to_string(),
                    "// Package mathx adds numbers.\npackage mathx\n\n\
                     // Add returns a+b.\nfunc Add(a, b int) int { return a + b }\n"
                        .to_string(),
                ),
                (
                    "mathx/mathx_test.go".to_string(),
                    "package mathx\n\nimport \"testing\"\n\n\
                     func TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal(\"add\")\n\t}\n}\n"
                        .to_string(),
                ),
                (
                    "greet/greet.go".to_string(),
                    if utils {
                        format!(
                            "// Package greet says hello.\npackage greet\n\n\
                             import (\n\t\"{GO_HOST}/acme/Utils/strutil\"\n\t\"{GO_HOST}/acme/web/internal/version\"\n)\n\n\
                             // Hello greets name.\nfunc Hello(name string) string {{\n\
                             \treturn strutil.Shout(\"hello \" + name) + \" from web \" + version.V\n}}\n"
                        )
                    } else {
                        format!(
                            "// Package greet says hello.\npackage greet\n\n\
                             import \"{GO_HOST}/acme/web/internal/version\"\n\n\
                             // Hello greets name.\nfunc Hello(name string) string {{\n\
                             \treturn \"hello \" + name + \" from web \" + version.V\n}}\n"
                        )
                    },
                ),
                (
                    "tools/go.mod".to_string(),
                    format!("module {GO_HOST}/acme/web/tools\n\ngo 1.19\n"),
                ),
                (
                    "tools/tools.go".to_string(),
                    "// Package tools is a nested module: never part of acme/web's zips.\npackage tools\n\n\
                     // Nested reports that this file came from the nested module.\nconst Nested = true\n"
                        .to_string(),
                ),
                (
                    "tools/cmd/lint/main.go".to_string(),
                    "package main\n\nfunc main() {}\n".to_string(),
                ),
            ];
            files.push((
                "v2/go.mod".to_string(),
                format!("module {GO_HOST}/acme/web/v2\n\ngo 1.19\n"),
            ));
            files.push((
                "v2/web.go".to_string(),
                "// Package web is acme/web's major version 2.\npackage web\n\n\
                 // Version reports the major version.\nfunc Version() string { return \"v2.0.0\" }\n"
                    .to_string(),
            ));
            files
        };
        let add = |w: &mut World, project: u64, time: u64, files: &[(String, String)]| {
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(p, c)| (p.as_str(), c.as_str()))
                .collect();
            w.add_go_commit(project, time, &refs)
        };
        let c1 = add(self, 42, T0, &web("v1.0.0", false));
        let c2 = add(self, 42, T0 + DAY, &web("v1.1.0", true));
        let c3 = add(self, 42, T0 + 2 * DAY, &web("v1.9.0", true));
        let c4 = add(self, 42, T0 + 3 * DAY, &web("v1.10.0", true));
        let c5 = add(self, 42, T0 + 4 * DAY, &web("v1.11.0-rc.1", true));
        self.add_go_tag(42, "v1.0.0", &c1)
            .add_go_tag(42, "v1.1.0", &c2)
            .add_go_tag(42, "v2.0.0", &c2)
            .add_go_tag(42, "v1.9.0", &c3)
            .add_go_tag(42, "v1.10.0", &c4)
            .add_go_tag(42, "v1.11.0-rc.1", &c5)
            .add_go_tag(42, "v1.3", &c3)
            .add_go_tag(42, "release-1", &c3)
            .add_go_tag(42, "v3.0.0", &c4)
            .add_go_branch(42, "main", &c5);

        let utils = |version: &str| -> Vec<(String, String)> {
            vec![
                (
                    "go.mod".to_string(),
                    format!("module {GO_HOST}/acme/Utils\n\ngo 1.19\n"),
                ),
                (
                    "utils.go".to_string(),
                    format!("// Package utils is acme/Utils.\npackage utils\n\nconst Version = \"{version}\"\n"),
                ),
                (
                    "strutil/strutil.go".to_string(),
                    "// Package strutil transforms strings.\npackage strutil\n\nimport \"strings\"\n\n\
                     // Shout upper-cases s and adds an exclamation mark.\n\
                     func Shout(s string) string { return strings.ToUpper(s) + \"!\" }\n"
                        .to_string(),
                ),
            ]
        };
        let u1 = add(self, 44, T0 + 10 * DAY, &utils("v1.0.0"));
        let u2 = add(self, 44, T0 + 11 * DAY, &utils("v1.0.1-Prerelease"));
        self.add_go_tag(44, "v1.0.0", &u1)
            .add_go_tag(44, "v1.0.1-Prerelease", &u2);

        let lib = vec![
            (
                "go.mod".to_string(),
                format!("module {GO_HOST}/pub/lib\n\ngo 1.19\n"),
            ),
            (
                "lib.go".to_string(),
                "// Package lib is public.\npackage lib\n\n// Answer is 42.\nconst Answer = 42\n"
                    .to_string(),
            ),
        ];
        let p1 = add(self, 7, T0 + 20 * DAY, &lib);
        self.add_go_tag(7, "v0.1.0", &p1);
        self
    }
}

// ---- the benchmark modules ----------------------------------------------------------------------

/// Group of the benchmark Go modules (`examples/fake_gitlab.rs --bench`): `bench`, public.
pub const BENCH_GO_GROUP: u64 = 4;
/// Project of the benchmark Go modules: `bench/go`, public (no credentials needed).
pub const BENCH_GO_PROJECT: u64 = 8;
/// Every benchmark module lives under this path: `gitlab.example.com/bench/go/<name>`.
pub const BENCH_GO_ROOT: &str = "gitlab.example.com/bench/go";
/// The one version of every benchmark module.
pub const BENCH_GO_VERSION: &str = "v1.0.0";
/// How many small modules the dependency graph has (`m000` … `m099`).
pub const BENCH_GO_GRAPH: usize = 100;
/// Modules whose zips are about this many bytes (an incompressible `pad.bin` each).
pub const BENCH_GO_ZIPS: [(&str, usize); 4] = [
    ("zip10k", 10 * 1024),
    ("zip100k", 100 * 1024),
    ("zip1m", 1024 * 1024),
    ("zip5m", 5 * 1024 * 1024),
];

impl World {
    /// What `examples/fake_gitlab.rs --bench` adds for the Go benchmark: group 4 `bench`
    /// (public) → project 8 `bench/go` (public), one commit tagged `v1.0.0` holding
    ///
    /// - `zip10k/`, `zip100k/`, `zip1m/`, `zip5m/`: modules `gitlab.example.com/bench/go/zipNN`
    ///   whose zips are about 10 KiB … 5 MiB (see [`BENCH_GO_ZIPS`]);
    /// - `m000/` … `m099/`: 100 small modules `gitlab.example.com/bench/go/mNNN` forming a
    ///   binary tree (`mK` requires `m((K-1)/2)`), for `go mod download` of a module graph.
    pub fn add_bench_go_modules(&mut self) -> &mut World {
        const T: u64 = 1_594_000_000; // 2020-07-06
        self.add_group(BENCH_GO_GROUP, "bench", Visibility::Public)
            .add_project(BENCH_GO_PROJECT, "bench/go", Visibility::Public);
        let mut files: BTreeMap<String, Bytes> = BTreeMap::new();
        let mut put = |path: String, content: Bytes| {
            files.insert(path, content);
        };
        for i in 0..BENCH_GO_GRAPH {
            let name = format!("m{i:03}");
            let module = format!("{BENCH_GO_ROOT}/{name}");
            let dep = (i > 0).then(|| format!("m{:03}", (i - 1) / 2));
            let go_mod = match &dep {
                Some(d) => format!(
                    "module {module}\n\ngo 1.19\n\nrequire {BENCH_GO_ROOT}/{d} {BENCH_GO_VERSION}\n"
                ),
                None => format!("module {module}\n\ngo 1.19\n"),
            };
            let src = match &dep {
                Some(d) => format!(
                    "// Package {name} is benchmark module {i} of {BENCH_GO_GRAPH}.\npackage {name}\n\n\
                     import \"{BENCH_GO_ROOT}/{d}\"\n\n\
                     // Path names this module and its ancestors.\n\
                     func Path() string {{ return \"{name}/\" + {d}.Path() }}\n"
                ),
                None => format!(
                    "// Package {name} is the root of the benchmark module graph.\npackage {name}\n\n\
                     // Path names this module.\nfunc Path() string {{ return \"{name}\" }}\n"
                ),
            };
            put(format!("{name}/go.mod"), Bytes::from(go_mod));
            put(format!("{name}/{name}.go"), Bytes::from(src));
            put(
                format!("{name}/LICENSE"),
                Bytes::from_static(b"MIT License\n"),
            );
        }
        for (name, size) in BENCH_GO_ZIPS {
            let module = format!("{BENCH_GO_ROOT}/{name}");
            let mut module_files: BTreeMap<String, Bytes> = BTreeMap::new();
            module_files.insert(
                "go.mod".to_string(),
                Bytes::from(format!("module {module}\n\ngo 1.19\n")),
            );
            module_files.insert(
                format!("{name}.go"),
                Bytes::from(format!(
                    "// Package {name} carries a zip of about {size} bytes.\npackage {name}\n"
                )),
            );
            let pad = padding_for(&module, &module_files, size);
            module_files.insert("pad.bin".to_string(), pad);
            for (rel, content) in module_files {
                put(format!("{name}/{rel}"), content);
            }
        }
        let sha = self.add_go_commit_bytes(BENCH_GO_PROJECT, T, files);
        self.add_go_tag(BENCH_GO_PROJECT, BENCH_GO_VERSION, &sha)
    }
}

/// A `pad.bin` of incompressible bytes that brings the zip of `module@v1.0.0` with `files`
/// (relative paths) to within 64 bytes of `target`.
fn padding_for(module: &str, files: &BTreeMap<String, Bytes>, target: usize) -> Bytes {
    let zip_len = |pad: &Bytes| {
        let mut entries: Vec<(String, &[u8])> = files
            .iter()
            .map(|(rel, c)| (format!("{module}@{BENCH_GO_VERSION}/{rel}"), c.as_ref()))
            .collect();
        entries.push((format!("{module}@{BENCH_GO_VERSION}/pad.bin"), pad.as_ref()));
        write_zip(&entries).len()
    };
    let make = |len: usize| Bytes::from(super::world::noise(module, len));
    let base = zip_len(&Bytes::new());
    let mut pad = make(target.saturating_sub(base));
    // Random bytes don't deflate: the zip grows byte for byte with the pad (plus a few bytes
    // of block headers), so a couple of corrections land on the target.
    for _ in 0..4 {
        let diff = target as i64 - zip_len(&pad) as i64;
        if diff.abs() < 64 {
            break;
        }
        pad = make((pad.len() as i64 + diff).max(1) as usize);
    }
    pad
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    }
}

/// GitLab's version route requirement (already case-encoded: lower case and `!` only).
pub fn version_route_matches(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let (rest, build) = match rest.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (rest, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let num_ok = |n: &&str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (*n == "0" || !n.starts_with('0'))
    };
    let tail_ok = |t: Option<&str>| {
        t.is_none_or(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.!".contains(&b))
        })
    };
    nums.len() == 3 && nums.iter().all(num_ok) && tail_ok(pre) && tail_ok(build)
}

/// A semantic version with a `v` (what GitLab lists; pre-release identifiers any case).
fn is_semver_tag(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3
        && nums.iter().all(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (*n == "0" || !n.starts_with('0'))
        })
        && rest[core.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
        && !rest.ends_with(['-', '.', '+'])
}

fn major_of(v: &str) -> u64 {
    v[1..]
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// `/vN` at the end of a module path (N ≥ 2).
fn path_major(module: &str) -> Option<u64> {
    let last = module.rsplit('/').next()?;
    let n: u64 = last.strip_prefix('v')?.parse().ok()?;
    (n >= 2 && !last[1..].starts_with('0')).then_some(n)
}

/// GitLab's `ModuleVersion#valid?`: major agrees with the path, and the module's `go.mod`
/// declares exactly this module.
fn valid_version(commit: &GoCommit, module: &str, subdir: &str, version: &str) -> bool {
    if !is_semver_tag(version) {
        return false;
    }
    let major = major_of(version);
    let ok_major = match path_major(module) {
        Some(n) => n == major,
        None => major <= 1,
    };
    if !ok_major {
        return false;
    }
    let Some(go_mod) = commit.files.get(&join(subdir, "go.mod")) else {
        return false;
    };
    let first = String::from_utf8_lossy(go_mod);
    first.lines().next().map(str::trim) == Some(&format!("module {module}"))
}

/// Tag, then branch, then pseudo-version (`...-yyyymmddhhmmss-<12 hex>`, the timestamp
/// equal to the commit's time).
fn find_version<'r>(repo: &'r GoRepo, version: &str) -> Option<&'r GoCommit> {
    if let Some(sha) = repo
        .tags
        .get(version)
        .or_else(|| repo.branches.get(version))
    {
        return repo.commit(sha);
    }
    let core = version.split('+').next()?;
    let mut parts = core.rsplitn(3, ['-', '.']);
    let rev = parts.next()?;
    let stamp = parts.next()?;
    if rev.len() != 12 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) || stamp.len() != 14 {
        return None;
    }
    repo.commits
        .iter()
        .find(|c| c.sha.starts_with(rev) && pseudo_stamp(c.time) == stamp)
}

/// Files of the module in `subdir`, minus nested modules, as `(relative path, bytes)`.
pub fn module_files<'c>(commit: &'c GoCommit, subdir: &str) -> Vec<(&'c str, &'c Bytes)> {
    let prefix = if subdir.is_empty() {
        String::new()
    } else {
        format!("{subdir}/")
    };
    let in_module: Vec<(&str, &Bytes)> = commit
        .files
        .iter()
        .filter_map(|(p, c)| p.strip_prefix(&prefix).map(|rel| (rel, c)))
        .collect();
    // Directories (below the module root) that hold their own go.mod.
    let nested: Vec<String> = in_module
        .iter()
        .filter_map(|(rel, _)| rel.strip_suffix("/go.mod"))
        .map(|d| format!("{d}/"))
        .collect();
    in_module
        .into_iter()
        .filter(|(rel, _)| !nested.iter().any(|d| rel.starts_with(d.as_str())))
        .collect()
}

fn zip_options() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644)
}

fn write_zip(entries: &[(String, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(name.as_str(), zip_options())
            .expect("zip entry");
        w.write_all(data).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// The zip GitLab serves: every file of the module directory (nested modules excluded) as
/// `<module>@<version>/<path>`, in path order.
pub fn module_zip(commit: &GoCommit, subdir: &str, module: &str, version: &str) -> Vec<u8> {
    let entries: Vec<(String, &[u8])> = module_files(commit, subdir)
        .into_iter()
        .map(|(rel, c)| (format!("{module}@{version}/{rel}"), c.as_ref()))
        .collect();
    write_zip(&entries)
}

/// A faulty zip for `module@version` built from the real one's entries.
fn faulty_zip(fault: GoFault, good: &[(String, &[u8])], module: &str, version: &str) -> Vec<u8> {
    let prefix = format!("{module}@{version}/");
    match fault {
        GoFault::ZipOutsidePrefix => {
            let mut e = good.to_vec();
            e.push((
                format!("{GO_HOST}/evil/mod@{version}/evil.go"),
                b"package evil\n",
            ));
            write_zip(&e)
        }
        GoFault::ZipDotDot => {
            let mut e = good.to_vec();
            e.push((format!("{prefix}../escape.go"), b"package escape\n"));
            write_zip(&e)
        }
        GoFault::ZipGarbage => b"this is not a zip file\n".repeat(20),
        GoFault::ZipDuplicate => {
            // The zip crate writes no duplicate names: write `dux.go`, then rename it in
            // the local and central headers alike.
            let mut e = good.to_vec();
            e.push((format!("{prefix}dup.go"), b"package dup\n"));
            e.push((format!("{prefix}dux.go"), b"package dup\n"));
            let mut bytes = write_zip(&e);
            let (from, to) = (format!("{prefix}dux.go"), format!("{prefix}dup.go"));
            let mut i = 0;
            while i + from.len() <= bytes.len() {
                if &bytes[i..i + from.len()] == from.as_bytes() {
                    bytes[i..i + from.len()].copy_from_slice(to.as_bytes());
                }
                i += 1;
            }
            bytes
        }
        GoFault::ZipCaseCollision => {
            let mut e = good.to_vec();
            e.push((format!("{prefix}Collide.go"), b"package web\n"));
            e.push((format!("{prefix}collide.go"), b"package web\n"));
            write_zip(&e)
        }
        GoFault::ZipTooBig => {
            // One 8 MiB entry of zeros, deflated once and copied raw 64 times: 512 MiB
            // uncompressed in a zip of about 550 KB.
            const CHUNK: usize = 8 << 20;
            let one = {
                let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
                w.start_file("pad", zip_options()).expect("zip entry");
                w.write_all(&vec![0u8; CHUNK]).expect("zip write");
                w.finish().expect("zip finish").into_inner()
            };
            let mut src = zip::ZipArchive::new(Cursor::new(one)).expect("reread zip");
            let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
            for (name, data) in good {
                w.start_file(name.as_str(), zip_options())
                    .expect("zip entry");
                w.write_all(data).expect("zip write");
            }
            for i in 0..64 {
                let f = src.by_index_raw(0).expect("raw entry");
                w.raw_copy_file_rename(f, format!("{prefix}pad/{i:02}.bin"))
                    .expect("raw copy");
            }
            w.finish().expect("zip finish").into_inner()
        }
        GoFault::ModTooBig => write_zip(good),
    }
}

// ---- time formats ---------------------------------------------------------------------------

/// (year, month, day, hour, minute, second) of a unix time, UTC.
fn civil(t: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

/// `2020-06-05T12:34:56.000+00:00` (GitLab's `.info` `Time`).
pub fn info_time(t: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.000+00:00")
}

/// `20200605123456` (a pseudo-version's timestamp).
pub fn pseudo_stamp(t: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// GitLab's `case_decode`: every `!x` becomes `X`.
fn case_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '!' {
            if let Some(&n) = chars.peek() {
                if n.is_ascii_alphabetic() {
                    out.push(n.to_ascii_uppercase());
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Ruby's `Pathname#cleanpath` for a relative path: no empty or `.` segments, `..` pops.
fn cleanpath(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

// ---- routes ---------------------------------------------------------------------------------

enum File {
    List,
    Info(String),
    Mod(String),
    Zip(String),
}

/// Claims `GET /api/v4/projects/:id/packages/go/*module_name/@v/...`.
pub fn route(fake: &Shared, req: &FakeRequest) -> Option<Reply> {
    let rest = req.path.strip_prefix("/api/v4/projects/")?;
    let (id, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("packages/go/")?;
    if !req.is_read() {
        return None;
    }
    // `@latest` and anything else that is not `@v/...` match no route: the catch-all 404.
    let (module_raw, file) = rest.rsplit_once("/@v/")?;
    let file = if file == "list" {
        File::List
    } else {
        let file = decode(file);
        let (v, kind) = file.rsplit_once('.')?;
        if !version_route_matches(v) {
            return None;
        }
        match kind {
            "info" => File::Info(v.to_string()),
            "mod" => File::Mod(v.to_string()),
            "zip" => File::Zip(v.to_string()),
            _ => return None,
        }
    };
    let module_raw = cleanpath(&decode(module_raw));
    if module_raw.is_empty() {
        return Some(Reply::json(
            400,
            &json!({"message": "400 Bad request - \"Module Name\" not given"}),
        ));
    }
    let fault = |module: &str, version: &str| {
        fake.with_switches(|s| {
            s.go_faults
                .get(&(module.to_string(), version.to_string()))
                .copied()
        })
    };
    Some(fake.with_world(|world| {
        let caller = match authenticate(world, req, Family::GoProxy) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let project = match world.project_by_ref(&decode(id)) {
            Some(p) if world.can_read(&caller, p.id) => p.clone(),
            _ if caller.is_anonymous() => return Reply::unauthorized(),
            _ => return Reply::not_found("Project"),
        };
        // An upper-case letter that is not case-encoded does not match (API.md §2).
        if module_raw.bytes().any(|b| b.is_ascii_uppercase()) {
            return Reply::not_found("");
        }
        let module = case_decode(&module_raw);
        let root = format!("{GO_HOST}/{}", project.full_path);
        let subdir = if module == root {
            ""
        } else if let Some(s) = module.strip_prefix(&format!("{root}/")) {
            s
        } else {
            return Reply::not_found("");
        };
        // GitLab's ModuleFinder: any path under the project is a module; one with no valid
        // versions lists nothing (200, empty body) and has no version files.
        let empty = super::go::GoRepo::default();
        let repo = world.go.get(&project.id).unwrap_or(&empty);
        let version = match &file {
            File::List => {
                let tags: Vec<&str> = repo
                    .tags
                    .iter()
                    .filter(|(tag, sha)| {
                        repo.commit(sha)
                            .is_some_and(|c| valid_version(c, &module, subdir, tag))
                    })
                    .map(|(tag, _)| tag.as_str())
                    .collect();
                return Reply::new(200, "text/plain", tags.join("\n"));
            }
            File::Info(v) | File::Mod(v) | File::Zip(v) => case_decode(v),
        };
        let Some(commit) =
            find_version(repo, &version).filter(|c| valid_version(c, &module, subdir, &version))
        else {
            return Reply::not_found("");
        };
        let fault = fault(&module, &version);
        match file {
            File::List => unreachable!("answered above"),
            File::Info(_) => Reply::json(
                200,
                &json!({"Version": version, "Time": info_time(commit.time)}),
            ),
            File::Mod(_) => {
                let body = match fault {
                    Some(GoFault::ModTooBig) => {
                        let mut b = commit
                            .files
                            .get(&join(subdir, "go.mod"))
                            .cloned()
                            .unwrap_or_default()
                            .to_vec();
                        b.extend(std::iter::repeat_n(b'/', 17 << 20));
                        b.push(b'\n');
                        Bytes::from(b)
                    }
                    _ => commit
                        .files
                        .get(&join(subdir, "go.mod"))
                        .cloned()
                        .unwrap_or_default(),
                };
                Reply::new(200, "text/plain", body)
            }
            File::Zip(_) => {
                let body = match fault {
                    Some(f) if f != GoFault::ModTooBig => {
                        let good: Vec<(String, &[u8])> = module_files(commit, subdir)
                            .into_iter()
                            .map(|(rel, c)| (format!("{module}@{version}/{rel}"), c.as_ref()))
                            .collect();
                        faulty_zip(f, &good, &module, &version)
                    }
                    _ => module_zip(commit, subdir, &module, &version),
                };
                Reply::new(200, "application/zip", body)
                    .header(
                        "content-disposition",
                        &format!("attachment; filename=\"{version}.zip\""),
                    )
                    .header("content-transfer-encoding", "binary")
            }
        }
    }))
}

/// `h1:` hash of a module zip (`dirhash.HashZip`): sha256 over the sorted
/// `"<sha256 hex>  <entry name>\n"` lines.
pub fn h1_zip(zip_bytes: &[u8]) -> String {
    use std::io::Read as _;
    let mut z = zip::ZipArchive::new(Cursor::new(zip_bytes)).expect("module zip");
    let mut lines = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).expect("zip entry");
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("zip read");
        lines.push(format!(
            "{}  {}\n",
            hex::encode(Sha256::digest(&data)),
            f.name()
        ));
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    h1_of_lines(&lines)
}

/// `h1:` hash of a go.mod (`dirhash.Hash1` over the single file `go.mod`).
pub fn h1_mod(go_mod: &[u8]) -> String {
    h1_of_lines(&[format!("{}  go.mod\n", hex::encode(Sha256::digest(go_mod)))])
}

fn h1_of_lines(lines: &[String]) -> String {
    use base64::Engine as _;
    let mut h = Sha256::new();
    for l in lines {
        h.update(l.as_bytes());
    }
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(info_time(1_591_360_496), "2020-06-05T12:34:56.000+00:00");
        assert_eq!(pseudo_stamp(1_591_360_496), "20200605123456");
        assert!(version_route_matches("v1.0.1-!prerelease"));
        assert!(!version_route_matches("v1.0.1-Prerelease"));
        assert!(!version_route_matches("master"));
        assert_eq!(case_decode("!azure/!a!b"), "Azure/AB");
        assert_eq!(cleanpath("a//b/./c/../d"), "a/b/d");
    }
}
