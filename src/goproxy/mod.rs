//! The Go module proxy adapter: GitLab's project routes
//! (`/api/v4/projects/:id/packages/go/<module>/@v/...`), `@latest` (GitLab has none), the
//! single GOPROXY endpoint `/go/` for every module, and the checksum database proxy
//! (`/go/sumdb/<name>/...`).
//!
//! Fall-through matters: the go command moves to the next GOPROXY entry only on 404/410, so
//! "not here" is always a 404, never a 5xx. `.info`, `.mod` and `.zip` are immutable blobs;
//! `list` (and so `@latest`) is metadata with TTL, revalidation and stale-if-error. Reading a
//! blob requires passing the gate for the module's `list` in that project.

pub mod escape;
pub mod sumdb;
pub mod sync;
pub mod zipcheck;

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::auth::Credential;
use crate::cache::{BlobSpec, Build, Built, BuiltVariant, CacheOutcome, Core, MetaHit, MetaSpec};
use crate::cache::{Expect, Origin};
use crate::error::NotFound;
use crate::error::{Error, RequestError, StoreError};
use crate::forwarding::{self, Kind, Verdict};
use crate::gitlab::Namespace;
use crate::reply::Reply;
pub use escape::{ModulePath, ModuleVersion};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Info,
    Mod,
    Zip,
}

impl FileKind {
    fn ext(self) -> &'static str {
        match self {
            FileKind::Info => "info",
            FileKind::Mod => "mod",
            FileKind::Zip => "zip",
        }
    }
    fn content_type(self) -> &'static str {
        match self {
            FileKind::Info => "application/json",
            FileKind::Mod => "text/plain; charset=utf-8",
            FileKind::Zip => "application/zip",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoRoute {
    List(ModulePath),
    Latest(ModulePath),
    File(ModulePath, ModuleVersion, FileKind),
}

impl GoRoute {
    /// Parse `<escaped module>/@v/list`, `.../@v/<version>.<ext>` or `.../@latest`.
    pub fn parse(rest: &str) -> Result<GoRoute, Error> {
        if let Some(module) = rest.strip_suffix("/@latest") {
            return Ok(GoRoute::Latest(ModulePath::from_url(module)?));
        }
        let (module, file) = rest.rsplit_once("/@v/").ok_or_else(not_found)?;
        let module = ModulePath::from_url(module)?;
        if file == "list" {
            return Ok(GoRoute::List(module));
        }
        let (version, kind) = if let Some(v) = file.strip_suffix(".info") {
            (v, FileKind::Info)
        } else if let Some(v) = file.strip_suffix(".mod") {
            (v, FileKind::Mod)
        } else if let Some(v) = file.strip_suffix(".zip") {
            (v, FileKind::Zip)
        } else {
            return Err(not_found());
        };
        // Not a semantic version: GitLab's route requirement does not match (404), and the
        // upstream is never asked.
        let version = ModuleVersion::from_url(version).ok_or_else(not_found)?;
        Ok(GoRoute::File(module, version, kind))
    }

    fn module(&self) -> &ModulePath {
        match self {
            GoRoute::List(m) | GoRoute::Latest(m) | GoRoute::File(m, ..) => m,
        }
    }
}

/// The Go proxy's plain not-found (<https://docs.gitlab.com/api/packages/go_proxy/>).
pub fn not_found() -> Error {
    Error::gitlab(StatusCode::NOT_FOUND, "404 Not Found")
}

/// `/go/`'s answer for a module no setting maps to GitLab and no rule sends to a public
/// proxy: a 404 (the go command then tries its next GOPROXY) that names the settings.
pub fn not_mapped(core: &Core, module: &ModulePath) -> Error {
    Error::gitlab(
        StatusCode::NOT_FOUND,
        format!("{}: {module}", not_mapped_reason(core)),
    )
}

/// Why `/go/` (and `packrat sync`) cannot place a module: the settings that would.
pub fn not_mapped_reason(core: &Core) -> String {
    format!(
        "404 Not Found: this module is not under go.host ({:?}) and no [[go.modules]] prefix maps it to a GitLab project; set go.host or add a [[go.modules]] entry (a public module also needs forwarding.go_proxy and a forward = true rule)",
        core.config().go.host
    )
}

pub async fn handle(
    core: &Arc<Core>,
    target: &Namespace,
    route: GoRoute,
    credential: &Credential,
) -> Result<Reply, Error> {
    let anonymous = Credential::anonymous();
    let ctx = context(core, target, route.module(), credential, &anonymous).await?;
    match route {
        GoRoute::List(m) => {
            let hit = ctx.list(&m).await?;
            let variant = hit
                .record
                .variant(LIST)
                .ok_or_else(|| StoreError::Incomplete {
                    key: format!("the go list of {m}"),
                    what: "list variant",
                })?
                .clone();
            let payload = core.payload(&variant).await?;
            Ok(Reply::payload(payload, hit.outcome)
                .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .revalidate(credential.is_anonymous())
                .etag(&variant.etag)
                .warn_if_stale())
        }
        GoRoute::Latest(m) => {
            let hit = ctx.list(&m).await?;
            let versions = ctx.versions(&hit).await?;
            let latest = latest(&versions).ok_or_else(not_found)?;
            let mut reply = ctx.file(&m, &latest, FileKind::Info).await?;
            // @latest moves: it must be revalidated, unlike the immutable .info it names.
            reply = reply.revalidate(credential.is_anonymous());
            reply.etag = None;
            // Computed from a stale list, it is as stale as the list (and says so).
            if hit.outcome == CacheOutcome::StaleIfError {
                reply.outcome = hit.outcome;
            }
            Ok(reply.warn_if_stale())
        }
        GoRoute::File(m, v, kind) => {
            // The gate: whoever may list the module in this project may read its files.
            ctx.list(&m).await?;
            ctx.file(&m, &v, kind).await
        }
    }
}

/// Where a module is read from.
enum Source {
    /// A GitLab project (id or full path), with the caller's credential.
    Gitlab(String),
    /// The public Go proxy (base URL), anonymously; readable by anyone who may use `/go/`.
    Public(String),
}

/// Where `module` is read from for this request: its GitLab project, or (only for modules
/// that are not GitLab's) the public Go proxy as the forwarding rules and pins allow.
async fn context<'a>(
    core: &'a Arc<Core>,
    target: &Namespace,
    module: &ModulePath,
    credential: &'a Credential,
    anonymous: &'a Credential,
) -> Result<Ctx<'a>, Error> {
    let project = match target {
        Namespace::Project(p) => Some(p.clone()),
        // `/go/` (GitLab has no group-level Go proxy: never routed here).
        Namespace::Instance | Namespace::Group(_) => {
            resolve_project(core, module, credential).await?
        }
    };
    let project = match project {
        Some(p) if core.is_offline() => Some(offline_spelling(core, p, module)?),
        other => other,
    };
    Ok(match project {
        Some(p) => Ctx {
            core,
            source: Source::Gitlab(p),
            credential,
        },
        None => {
            let verdict = if core.is_offline() {
                // An offline mirror asks no one, so it blocks nothing: a pinned module it does
                // not hold is a plain miss; a public one is served as it was synced.
                if forwarding::is_pinned(core, Kind::Go, module.as_str()).await? {
                    Verdict::NotAllowed
                } else {
                    forwarding::public_registry(core, Kind::Go, module.as_str())
                        .map_or(Verdict::NotAllowed, Verdict::Forward)
                }
            } else {
                forwarding::decide(core, Kind::Go, module.as_str()).await?
            };
            match verdict {
                Verdict::Forward(base) => Ctx {
                    core,
                    source: Source::Public(base.trim_end_matches('/').to_string()),
                    credential: anonymous,
                },
                Verdict::NotAllowed => return Err(not_mapped(core, module)),
                Verdict::Blocked => return Err(not_found()),
            }
        }
    })
}

struct Ctx<'a> {
    core: &'a Arc<Core>,
    source: Source,
    credential: &'a Credential,
}

const LIST: &str = "list";

struct ListBuilder;

impl Build for ListBuilder {
    fn build(&self, raw: &[u8]) -> Result<Built, Error> {
        Ok(Built {
            variants: vec![BuiltVariant {
                name: LIST,
                bytes: Bytes::copy_from_slice(raw),
                content_type: "text/plain; charset=utf-8",
            }],
            aux: Vec::new(),
        })
    }
    fn base(&self) -> String {
        String::new()
    }
}

impl Ctx<'_> {
    /// Absolute URL of the module's directory upstream.
    fn upstream_prefix(&self, module: &ModulePath) -> String {
        match &self.source {
            Source::Gitlab(project) => self.core.gitlab_url(&format!(
                "/api/v4/projects/{}/packages/go/{}",
                crate::gitlab::segment(project),
                module.escaped()
            )),
            Source::Public(base) => format!("{base}/{}", module.escaped()),
        }
    }

    /// Index key prefix; the two origins never share records.
    fn key(&self, module: &ModulePath) -> String {
        match &self.source {
            Source::Gitlab(project) => format!("go/p:{project}/{module}"),
            Source::Public(_) => format!("gopub/{module}"),
        }
    }

    fn origin(&self) -> Origin {
        match self.source {
            Source::Gitlab(_) => Origin::Gitlab,
            Source::Public(_) => Origin::Public,
        }
    }

    async fn list(&self, module: &ModulePath) -> Result<MetaHit, Error> {
        let key = self.key(module);
        let hit = self
            .core
            .metadata(MetaSpec {
                key: format!("{key}/list"),
                scope: key,
                url: format!("{}/@v/list", self.upstream_prefix(module)),
                credential: self.credential,
                forward_name: None,
                kind: "go_list",
                builder: Arc::new(ListBuilder),
                not_found,
                origin: self.origin(),
                per_caller: false,
            })
            .await?;
        match self.source {
            Source::Gitlab(_) => forwarding::pin(self.core, Kind::Go, module.as_str()).await?,
            Source::Public(_) => forwarding::seen_public(self.core, Kind::Go, module.as_str())?,
        }
        Ok(hit)
    }

    async fn versions(&self, hit: &MetaHit) -> Result<Vec<ModuleVersion>, Error> {
        let Some(v) = hit.record.variant(LIST) else {
            return Ok(Vec::new());
        };
        let bytes = match self.core.payload(v).await? {
            crate::cache::Payload::Bytes(b) => b,
            crate::cache::Payload::File(..) => {
                return Err(StoreError::TooLarge {
                    limit: crate::cache::HOT_MAX_ITEM,
                }
                .into())
            }
        };
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| ModuleVersion::parse(l.trim()))
            .collect())
    }

    async fn file(
        &self,
        module: &ModulePath,
        version: &ModuleVersion,
        kind: FileKind,
    ) -> Result<Reply, Error> {
        let path = format!(
            "{}/@v/{}.{}",
            self.upstream_prefix(module),
            version.escaped(),
            kind.ext()
        );
        let mut expect = Expect::default();
        let validate: Option<crate::cache::Validate> = match kind {
            FileKind::Zip => {
                expect.max_size = Some(zipcheck::MAX_ZIP);
                let (m, v) = (module.as_str().to_string(), version.as_str().to_string());
                Some(Arc::new(move |p: &std::path::Path| {
                    zipcheck::check(p, &m, &v).map_err(|e| crate::cache::Rejected(e.to_string()))
                }))
            }
            FileKind::Mod => {
                expect.max_size = Some(zipcheck::MAX_GO_MOD);
                None
            }
            FileKind::Info => {
                expect.max_size = Some(1 << 20);
                None
            }
        };
        let hit = self
            .core
            .blob(BlobSpec {
                key: format!("{}@{}.{}", self.key(module), version.as_str(), kind.ext()),
                url: path,
                credential: self.credential.clone(),
                expect,
                content_type: kind.content_type(),
                kind: "go_file",
                origin: self.origin(),
                validate,
                forward_name: None,
                expect_later: None,
            })
            .await?;
        let visibility = if self.credential.is_anonymous() {
            "public"
        } else {
            "private"
        };
        let mut reply = Reply::blob(hit)
            .header(http::header::CONTENT_TYPE, kind.content_type())
            .immutable(visibility == "public");
        if kind == FileKind::Zip {
            reply = reply.header(
                http::header::CONTENT_DISPOSITION,
                &format!("attachment; filename=\"{}.zip\"", version.as_str()),
            );
        }
        Ok(reply)
    }
}

/// Highest release version, else highest pre-release (what the go command itself does with
/// a list).
pub fn latest(versions: &[ModuleVersion]) -> Option<ModuleVersion> {
    let best = |pre: bool| {
        versions
            .iter()
            .filter(|v| v.is_prerelease() == pre)
            .max_by(|a, b| a.cmp_semver(b))
            .cloned()
    };
    best(false).or_else(|| best(true))
}

/// `/go/`: which GitLab project holds a module. `[[go.modules]]` (longest prefix) first; else
/// a module under `go.host` names its project in its path (GitLab's rule), found by asking
/// the upstream for the longest path prefix that lists the module (remembered). A
/// module under GitLab's host that no project lists is a 404; `None` means "not GitLab's":
/// the forwarding rules decide about the public Go proxy.
async fn resolve_project(
    core: &Arc<Core>,
    module: &ModulePath,
    credential: &Credential,
) -> Result<Option<String>, Error> {
    if let Some(m) = core.config().go.lookup(module.as_str()) {
        return Ok(Some(m.project.to_id()));
    }
    let Some(rest) = under_gitlab_host(core, module.as_str()) else {
        // Not GitLab's: a candidate for the public Go proxy.
        return Ok(None);
    };
    let aux_key = format!("go-project/{module}");
    if let Some(p) = core.aux::<String>(&aux_key)? {
        return Ok(Some(p));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    // GitLab answers 401/403 for a project the caller cannot see, which for an anonymous
    // caller includes one that does not exist (https://docs.gitlab.com/api/packages/go_proxy/,
    // https://docs.gitlab.com/user/packages/go_proxy/): not a reason to stop looking.
    let mut unauthorized: Option<Error> = None;
    // A project path is at most MAX_PROJECT_DEPTH segments (GitLab nests groups 20 deep), so
    // a module path of any length costs at most that many upstream requests, and a project
    // path GitLab said is not there (or not for this caller) is not asked again for
    // `negative_ttl`, whatever module is asked for below it.
    for n in (2..=parts.len().min(MAX_PROJECT_DEPTH)).rev() {
        let candidate = parts[..n].join("/");
        let memo = format!("go-project/{candidate}");
        match core.recall_absent(credential, &memo) {
            Some(StatusCode::UNAUTHORIZED) => {
                unauthorized.get_or_insert_with(|| {
                    Error::gitlab(StatusCode::UNAUTHORIZED, "401 Unauthorized")
                });
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        let spelled = if core.is_offline() {
            offline_spelling(core, candidate.clone(), module)?
        } else {
            candidate.clone()
        };
        let ctx = Ctx {
            core,
            source: Source::Gitlab(spelled),
            credential,
        };
        match ctx.list(module).await {
            Ok(_) => {
                if !core.is_offline() {
                    core.put_aux(&aux_key, &candidate)?;
                }
                return Ok(Some(candidate));
            }
            Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
                core.remember_absent(credential, &memo, StatusCode::UNAUTHORIZED);
                unauthorized.get_or_insert(e);
            }
            Err(e) if matches!(e.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN) => {
                // Only "no such project" speaks of the candidate as a whole; a missing module
                // in a project that exists says nothing about that project's other modules.
                if e.not_found() == Some(NotFound::Project) || e.status() == 403 {
                    core.remember_absent(credential, &memo, e.status());
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Some candidate wanted credentials and none listed the module: it may be a project the
    // caller cannot see yet (GitLab's 401). Otherwise it is under GitLab's host but in no
    // project: a 404, never looked up publicly.
    Err(unauthorized.unwrap_or_else(not_found))
}

/// Offline, the spelling of a project (id or full path) that the mirror holds `module` under:
/// a project synced by path answers by id too, and the other way round, as GitLab does.
fn offline_spelling(core: &Core, project: String, module: &ModulePath) -> Result<String, Error> {
    let held =
        |p: &str| -> Result<bool, Error> { core.has_metadata(&format!("go/p:{p}/{module}/list")) };
    if held(&project)? {
        return Ok(project);
    }
    match core.project_alias(&project)? {
        Some(alias) if held(&alias)? => Ok(alias),
        _ => Ok(project),
    }
}

/// Deepest GitLab project path `/go/` considers: 20 levels of groups and the project.
const MAX_PROJECT_DEPTH: usize = 21;

/// The rest of `module` after the GitLab module host (`go.host`) and a `/`, if it is under
/// it.
fn under_gitlab_host<'m>(core: &Core, module: &'m str) -> Option<&'m str> {
    module
        .strip_prefix(core.config().go.host.as_str())?
        .strip_prefix('/')
}

/// Whether `module` is private, as far as packrat can tell without asking anyone: pinned
/// (GitLab served it), named by a `[[go.modules]]` mapping, under the GitLab host, or
/// claimed by a forwarding rule that says `forward = false`. Such a module's path must
/// never reach a public service (the checksum database). The pin is looked up cluster-wide
/// on a shared store: a module pinned through any node stays away from the checksum
/// database on every node (and with the bucket unreachable the lookup fails, never leaks).
pub async fn is_private(core: &Core, module: &str) -> Result<bool, Error> {
    let config = core.config();
    if config.go.lookup(module).is_some()
        || under_gitlab_host(core, module).is_some()
        || config
            .forwarding
            .first_match(module)
            .is_some_and(|rule| !rule.forward)
    {
        return Ok(true);
    }
    forwarding::is_pinned(core, Kind::Go, module).await
}

/// Split `/go/<rest>` into the sumdb or a module route.
pub enum GoEntry {
    Module(GoRoute),
    SumDb { name: String, rest: String },
}

pub fn parse_go_entry(rest: &str) -> Result<GoEntry, Error> {
    if let Some(s) = rest.strip_prefix("sumdb/") {
        let (name, rest) = s.split_once('/').ok_or(RequestError::NoRoute)?;
        return Ok(GoEntry::SumDb {
            name: name.to_string(),
            rest: rest.to_string(),
        });
    }
    Ok(GoEntry::Module(GoRoute::parse(rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let m = ModulePath::parse("gitlab.example.com/acme/Lib").unwrap();
        assert_eq!(
            GoRoute::parse("gitlab.example.com/acme/!lib/@v/list").unwrap(),
            GoRoute::List(m.clone())
        );
        assert_eq!(
            GoRoute::parse("gitlab.example.com/acme/!lib/@v/v1.0.1-!pre.zip").unwrap(),
            GoRoute::File(
                m.clone(),
                ModuleVersion::parse("v1.0.1-Pre").unwrap(),
                FileKind::Zip
            )
        );
        assert_eq!(
            GoRoute::parse("gitlab.example.com/acme/!lib/@latest").unwrap(),
            GoRoute::Latest(m)
        );
        assert_eq!(
            GoRoute::parse("gitlab.example.com/acme/lib/@v/master.info")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            GoRoute::parse("gitlab.example.com/acme/!!lib/@v/list")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            GoRoute::parse("gitlab.example.com/../x/@v/list")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn latest_prefers_releases() {
        let v = |s: &[&str]| {
            s.iter()
                .map(|x| ModuleVersion::parse(x).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            latest(&v(&["v1.0.0", "v1.10.0", "v2.0.0-rc.1"]))
                .unwrap()
                .as_str(),
            "v1.10.0"
        );
        assert_eq!(
            latest(&v(&["v2.0.0-rc.1", "v2.0.0-rc.2"]))
                .unwrap()
                .as_str(),
            "v2.0.0-rc.2"
        );
        assert!(latest(&[]).is_none());
    }
}
