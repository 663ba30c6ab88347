//! npm routes (API.md §1): metadata at the project, group and instance prefixes, tarballs at
//! the project prefix only, dist-tags GET and the two audit POSTs. Publish, deprecate and
//! dist-tag writes are in `npm_writes.rs`, package deletes in `packages.rs` (this module
//! returns `None` for them).
//!
//! Where API.md leaves a status open, the choice made here is marked UNCONFIRMED.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{
    authenticate, decode, if_none_match, Caller, FakeRequest, Family, Reply, Shared, World,
    PUBLIC_REGISTRY,
};

/// Which of the three prefixes a request came through; ids are still raw (percent-encoded).
#[derive(Clone, Copy, Debug)]
pub(super) enum Level<'a> {
    /// `/api/v4/projects/:id/packages/npm`
    Project(&'a str),
    /// `/api/v4/groups/:id/-/packages/npm`
    Group(&'a str),
    /// `/api/v4/packages/npm`
    Instance,
}

/// Splits a raw path into its prefix level and the rest after `.../packages/npm/`.
pub(super) fn split(path: &str) -> Option<(Level<'_>, &str)> {
    if let Some(rest) = path.strip_prefix("/api/v4/packages/npm/") {
        return Some((Level::Instance, rest));
    }
    if let Some(rest) = path.strip_prefix("/api/v4/projects/") {
        let (id, rest) = rest.split_once('/')?;
        return Some((Level::Project(id), rest.strip_prefix("packages/npm/")?));
    }
    if let Some(rest) = path.strip_prefix("/api/v4/groups/") {
        let (id, rest) = rest.split_once('/')?;
        return Some((Level::Group(id), rest.strip_prefix("-/packages/npm/")?));
    }
    None
}

/// Claims the npm routes this module implements.
pub fn route(fake: &Shared, req: &FakeRequest) -> Option<Reply> {
    let (level, rest) = split(&req.path)?;
    if rest.is_empty() {
        return None;
    }
    if req.method == hyper::Method::POST {
        return match rest {
            "-/npm/v1/security/advisories/bulk" | "-/npm/v1/security/audits/quick" => {
                Some(audit(fake, req, level, rest))
            }
            _ => None,
        };
    }
    if !req.is_read() {
        return None;
    }
    if let Some(name) = rest
        .strip_prefix("-/package/")
        .and_then(|r| r.strip_suffix("/dist-tags"))
    {
        return Some(dist_tags(fake, req, level, &decode(name)));
    }
    if let Level::Project(id) = level {
        if let Some((name, file)) = rest.split_once("/-/") {
            return Some(tarball(fake, req, id, &decode(name), &decode(file)));
        }
    }
    // The metadata glob comes last and takes any other GET (including tarball-shaped paths at
    // the group and instance levels, which then simply name no package).
    Some(metadata(fake, req, level, &decode(rest)))
}

/// Grape's `file_path: true` validator, approximately: no control characters, no `.`/`..`
/// or empty segments, no leading slash, no backslash.
fn valid_file_path(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.chars().any(|c| c.is_control() || c == '\\')
        && name
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// `Packages::Npm.scope_of`: the text between `@` and `/`.
fn scope_of(name: &str) -> Option<&str> {
    name.strip_prefix('@')?
        .split_once('/')
        .map(|(scope, _)| scope)
}

/// 401 for anonymous callers (`authenticate_non_public`), else the structured 404.
pub(super) fn deny(caller: &Caller, thing: &str) -> Reply {
    if caller.is_anonymous() {
        Reply::unauthorized()
    } else {
        Reply::npm_not_found(thing)
    }
}

/// What a prefix + name resolves to before any permission check.
pub(super) struct Resolved {
    /// The project whose packages answer (for `{G}`/`{I}`: the one holding the newest).
    pub(super) owner: Option<u64>,
    /// `Err(reply)` when the container itself is missing or unreadable for this caller.
    pub(super) container: Result<(), Reply>,
}

pub(super) fn resolve(world: &World, caller: &Caller, level: Level<'_>, name: &str) -> Resolved {
    match level {
        Level::Project(id) => {
            let project = world.project_by_ref(&decode(id));
            let container = match project {
                Some(p) if world.can_read(caller, p.id) => Ok(()),
                _ => Err(deny(caller, "Project")),
            };
            Resolved {
                owner: project.map(|p| p.id),
                container,
            }
        }
        Level::Group(id) => {
            let group = world.group_by_ref(&decode(id));
            // find_group! + check_group_access: 401 anonymous, else 404 Group Not Found.
            let container = match group {
                Some(g) if world.can_read_group(caller, g) => Ok(()),
                _ => Err(deny(caller, "Group")),
            };
            Resolved {
                owner: group
                    .and_then(|g| world.npm_owner_among(&world.projects_under(&g.full_path), name)),
                container,
            }
        }
        Level::Instance => {
            let namespace = scope_of(name).and_then(|s| world.top_level_group(s));
            Resolved {
                owner: namespace
                    .and_then(|g| world.npm_owner_among(&world.projects_under(&g.full_path), name)),
                container: Ok(()),
            }
        }
    }
}

/// `https://<public-npm-registry>/<name>`, or the test's `forward_base` (a switch) with the
/// name's `/` encoded.
fn forward_location(base: Option<&str>, name: &str) -> String {
    match base {
        Some(base) => format!("{base}/{}", name.replace('/', "%2f")),
        None => format!("{PUBLIC_REGISTRY}/{name}"),
    }
}

/// `GET {prefix}/*package_name` (§1.4).
fn metadata(fake: &Shared, req: &FakeRequest, level: Level<'_>, name: &str) -> Reply {
    if !valid_file_path(name) {
        return Reply::bad_param("package_name should be a valid file path");
    }
    let (forwarding, forced, metadata_in_object_storage, forward_base, multiple) = fake
        .with_switches(|s| {
            (
                s.npm_forwarding,
                s.forwarded_names.iter().any(|n| n == name),
                s.metadata_in_object_storage,
                s.forward_base.clone(),
                s.npm_multiple_projects,
            )
        });
    fake.with_world(|world| {
        let caller = match authenticate(world, req, Family::Npm) {
            Ok(caller) => caller,
            Err(reply) => return reply,
        };
        let resolved = resolve(world, &caller, level, name);
        let has_packages = resolved
            .owner
            .is_some_and(|p| !world.npm_versions(p, name).is_empty());
        // Forwarding is decided on existence alone, before authorization.
        if forced || (forwarding && !has_packages) {
            return Reply::redirect(302, &forward_location(forward_base.as_deref(), name));
        }
        if let Err(reply) = resolved.container {
            return reply;
        }
        let Some(project_id) = resolved.owner else {
            // {G}/{I} with no project holding the name. UNCONFIRMED: 404 Project vs Packages.
            return Reply::npm_not_found("Project");
        };
        let merged = multiple && !matches!(level, Level::Project(_));
        let (body, etag) = if merged {
            // `Packages::Npm::PackagesForUserFinder`: every project of the namespace holding
            // the name that this caller may read; none readable → 403 / 401.
            let readable = holders(world, level, name)
                .into_iter()
                .filter(|p| world.can_read(&caller, *p))
                .collect::<Vec<_>>();
            if readable.is_empty() {
                return if caller.is_anonymous() {
                    Reply::unauthorized()
                } else {
                    Reply::forbidden()
                };
            }
            let key = (0, format!("merged {readable:?} {name}"));
            fake.cached_render(world, key, || {
                render_merged_packument(world, fake.base_url(), &readable, name)
            })
        } else {
            if !world.can_read(&caller, project_id) {
                return deny(&caller, "Project");
            }
            if !has_packages {
                return Reply::npm_not_found("Packages");
            }
            fake.cached_render(world, (project_id, name.to_string()), || {
                render_packument(world, fake.base_url(), project_id, name)
            })
        };
        if metadata_in_object_storage && matches!(level, Level::Project(_)) {
            return fake.object_storage_redirect(body, "application/octet-stream");
        }
        if if_none_match(&req.headers, &etag) {
            return Reply::new(304, "application/json", Bytes::new())
                .header("etag", &etag)
                .header("cache-control", "max-age=0, private, must-revalidate");
        }
        Reply::new(200, "application/json", body)
            .header("etag", &etag)
            .header("cache-control", "max-age=0, private, must-revalidate")
    })
}

/// The tarball URL GitLab puts in `dist.tarball`: always the project route, numeric id, raw
/// scope and slash (§1.5).
pub fn tarball_url(base_url: &str, project_id: u64, name: &str, file_name: &str) -> String {
    format!("{base_url}/api/v4/projects/{project_id}/packages/npm/{name}/-/{file_name}")
}

/// The projects of a group or instance namespace that hold versions of `name`.
fn holders(world: &World, level: Level<'_>, name: &str) -> Vec<u64> {
    let namespace = match level {
        Level::Project(_) => return Vec::new(),
        Level::Group(id) => world.group_by_ref(&decode(id)),
        Level::Instance => scope_of(name).and_then(|s| world.top_level_group(s)),
    };
    let Some(namespace) = namespace else {
        return Vec::new();
    };
    world
        .projects_under(&namespace.full_path)
        .into_iter()
        .map(|p| p.id)
        .filter(|p| !world.npm_versions(*p, name).is_empty())
        .collect()
}

/// The packument: exactly `name`, `versions`, `dist-tags`; `dist` = `{shasum, tarball}`.
pub fn render_packument(world: &World, base_url: &str, project_id: u64, name: &str) -> Bytes {
    let doc = json!({
        "name": name,
        "versions": render_versions(world, base_url, &[project_id], name),
        "dist-tags": world.npm_dist_tags(project_id, name),
    });
    Bytes::from(serde_json::to_vec(&doc).expect("packument to json"))
}

/// The packument merged from several projects (flag `npm_allow_packages_in_multiple_projects`):
/// every version of each, each tarball URL naming its own project; dist-tags merged, with
/// `latest` the highest version overall.
pub fn render_merged_packument(
    world: &World,
    base_url: &str,
    project_ids: &[u64],
    name: &str,
) -> Bytes {
    let mut tags = std::collections::BTreeMap::new();
    for p in project_ids {
        tags.extend(world.npm_dist_tags(*p, name));
    }
    let latest = project_ids
        .iter()
        .flat_map(|p| world.npm_versions(*p, name))
        .map(|r| r.version.clone())
        .max_by(|a, b| super::world::semver_cmp(a, b));
    if let Some(latest) = latest {
        tags.insert("latest".to_string(), latest);
    }
    let doc = json!({
        "name": name,
        "versions": render_versions(world, base_url, project_ids, name),
        "dist-tags": tags,
    });
    Bytes::from(serde_json::to_vec(&doc).expect("packument to json"))
}

fn render_versions(world: &World, base_url: &str, project_ids: &[u64], name: &str) -> Value {
    let mut versions = Map::new();
    for record in project_ids
        .iter()
        .flat_map(|p| world.npm_versions(*p, name))
    {
        let project_id = record.project_id;
        let mut v = Map::new();
        v.insert("name".into(), json!(record.name));
        v.insert("version".into(), json!(record.version));
        v.insert(
            "dist".into(),
            json!({
                "shasum": record.shasum,
                "tarball": tarball_url(base_url, project_id, &record.name, &record.file_name),
            }),
        );
        if !record.dependencies.is_empty() {
            v.insert("dependencies".into(), json!(record.dependencies));
        }
        for (key, value) in &record.fields {
            v.insert(key.clone(), value.clone());
        }
        versions.insert(record.version.clone(), Value::Object(v));
    }
    Value::Object(versions)
}

/// `GET {P}/*package_name/-/*file_name` (§1.6): no `authenticate_non_public`, so anonymous
/// callers of a private project get 404 like everyone else without access.
fn tarball(fake: &Shared, req: &FakeRequest, id: &str, name: &str, file: &str) -> Reply {
    let (in_object_storage, forced, forward_base) = fake.with_switches(|s| {
        (
            s.tarballs_in_object_storage,
            s.forwarded_names.iter().any(|n| n == name),
            s.forward_base.clone(),
        )
    });
    if forced {
        // Newest EE forwards tarballs too (API.md §1.6): `<name>/-/<unscoped-file>`.
        let unscoped = file.rsplit('/').next().unwrap_or(file);
        let to = forward_location(forward_base.as_deref(), name);
        return Reply::redirect(302, &format!("{to}/-/{unscoped}"));
    }
    let found = fake.with_world(|world| {
        let caller = authenticate(world, req, Family::Npm)?;
        let project = world
            .project_by_ref(&decode(id))
            .filter(|p| world.can_read(&caller, p.id))
            .ok_or_else(|| Reply::npm_not_found("Project"))?;
        world
            .npm_versions(project.id, name)
            .into_iter()
            .find(|r| r.file_name == file)
            .map(|r| r.tarball.clone())
            .ok_or_else(|| Reply::npm_not_found("Package"))
    });
    match found {
        Err(reply) => reply,
        Ok(bytes) if in_object_storage => {
            fake.object_storage_redirect(bytes, "application/octet-stream")
        }
        Ok(bytes) => {
            let base = file.rsplit('/').next().unwrap_or(file);
            Reply::new(200, "application/octet-stream", bytes).header(
                "content-disposition",
                &format!("attachment; filename=\"{base}\""),
            )
        }
    }
}

/// `GET {prefix}/-/package/*package_name/dist-tags` (§1.8).
fn dist_tags(fake: &Shared, req: &FakeRequest, level: Level<'_>, name: &str) -> Reply {
    fake.with_world(|world| {
        let caller = match authenticate(world, req, Family::Npm) {
            Ok(caller) => caller,
            Err(reply) => return reply,
        };
        let resolved = resolve(world, &caller, level, name);
        if let Err(reply) = resolved.container {
            return reply;
        }
        let Some(project_id) = resolved.owner else {
            return Reply::npm_not_found("Project");
        };
        if !world.can_read(&caller, project_id) {
            return deny(&caller, "Project");
        }
        if world.npm_versions(project_id, name).is_empty() {
            return Reply::npm_not_found("Package");
        }
        Reply::json(200, &json!(world.npm_dist_tags(project_id, name)))
    })
}

/// The audit POSTs (§1.9): always authenticated; forwarding on → 307 to the public registry;
/// off → `[]` at the project level, 404 Project Not Found at the group and instance levels.
fn audit(fake: &Shared, req: &FakeRequest, level: Level<'_>, rest: &str) -> Reply {
    let forwarding = fake.with_switches(|s| s.npm_forwarding);
    fake.with_world(|world| {
        let caller = match authenticate(world, req, Family::Npm) {
            Ok(caller) => caller,
            Err(reply) => return reply,
        };
        if caller.is_anonymous() {
            return Reply::unauthorized();
        }
        if forwarding {
            return Reply::redirect(307, &format!("{PUBLIC_REGISTRY}/{rest}"));
        }
        match level {
            Level::Project(id) => match world.project_by_ref(&decode(id)) {
                Some(p) if world.can_read(&caller, p.id) => Reply::json(200, &json!([])),
                _ => Reply::npm_not_found("Project"),
            },
            Level::Group(_) | Level::Instance => Reply::npm_not_found("Project"),
        }
    })
}
