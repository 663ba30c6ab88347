//! npm writes (API.md §1.7, §1.8): `PUT {P}/:package_name` (publish, and deprecate with
//! `Npm-Command: deprecate`), `PUT`/`DELETE {prefix}/-/package/:package_name/dist-tags/:tag`
//! at all three prefixes. Authentication and authorization come first (401 anonymous,
//! 403 below Developer — Maintainer for deprecate and tag deletes), then the body.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Map, Value};

use super::npm::{deny, resolve, split, Level};
use super::{authenticate, decode, Caller, FakeRequest, Family, Reply, Shared, World};

pub fn route(fake: &Shared, req: &FakeRequest) -> Option<Reply> {
    if req.method != Method::PUT && req.method != Method::DELETE {
        return None;
    }
    let (level, rest) = split(&req.path)?;
    if let Some(pkg) = rest.strip_prefix("-/package/") {
        let (name, tag) = pkg.split_once("/dist-tags/")?;
        if tag.is_empty() || tag.contains('/') {
            return None;
        }
        return Some(dist_tag(fake, req, level, &decode(name), &decode(tag)));
    }
    match (level, req.method == Method::PUT) {
        (Level::Project(id), true) if !rest.contains('/') && !rest.starts_with("-") => {
            Some(publish(fake, req, id, &decode(rest)))
        }
        _ => None,
    }
}

/// GitLab's publish errors: the same text in `message` and `error`.
fn publish_error(status: u16, text: &str) -> Reply {
    Reply::json(status, &json!({"message": text, "error": text}))
}

/// 401 for anonymous callers (`authenticate_non_get!`), else the caller.
fn writer(world: &World, req: &FakeRequest) -> Result<Caller, Reply> {
    let caller = authenticate(world, req, Family::Npm)?;
    if caller.is_anonymous() {
        return Err(Reply::unauthorized());
    }
    Ok(caller)
}

fn publish(fake: &Shared, req: &FakeRequest, id: &str, url_name: &str) -> Reply {
    let deprecate = req
        .headers
        .get("npm-command")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("deprecate"));
    fake.with_world(|world| {
        let caller = match writer(world, req) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let project_id = match world.project_by_ref(&decode(id)) {
            Some(p) if world.can_read(&caller, p.id) => p.id,
            _ => return Reply::npm_not_found("Project"),
        };
        let allowed = if deprecate {
            world.can_destroy(&caller, project_id)
        } else {
            world.can_write(&caller, project_id)
        };
        if !allowed {
            return Reply::forbidden();
        }
        let Ok(doc) = serde_json::from_slice::<Value>(&req.body) else {
            return publish_error(400, "Invalid json");
        };
        let Some(versions) = doc.get("versions").and_then(Value::as_object) else {
            return publish_error(400, "Versions key is missing from the JSON upload");
        };
        if deprecate {
            return deprecate_versions(world, project_id, url_name, versions);
        }
        let Some((version, meta)) = versions.iter().next().filter(|(v, _)| !v.is_empty()) else {
            return publish_error(400, "Version is empty.");
        };
        let name = doc.get("name").and_then(Value::as_str).unwrap_or(url_name);
        let file = format!("{name}-{version}.tgz");
        let data = doc
            .pointer(&format!("/_attachments/{}", file.replace('~', "~0").replace('/', "~1")))
            .and_then(|a| a.get("data"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if data.is_empty() {
            return publish_error(400, "Attachment data is empty.");
        }
        if world
            .npm_versions(project_id, name)
            .iter()
            .any(|r| r.version == *version)
        {
            return publish_error(403, "Package already exists.");
        }
        let Ok(tarball) = base64::engine::general_purpose::STANDARD.decode(data.trim()) else {
            return publish_error(400, "Attachment data is empty.");
        };
        let shasum = meta
            .pointer("/dist/shasum")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let dependencies: BTreeMap<String, String> = meta
            .get("dependencies")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        // The per-version keys GitLab copies into the packument (API.md §1.4).
        let mut fields = Map::new();
        for key in [
            "devDependencies",
            "bundleDependencies",
            "peerDependencies",
            "deprecated",
            "bin",
            "directories",
            "engines",
            "_hasShrinkwrap",
        ] {
            if let Some(v) = meta.get(key).filter(|v| !is_empty(v)) {
                fields.insert(key.to_string(), v.clone());
            }
        }
        let install_script = meta.get("scripts").and_then(Value::as_object).is_some_and(|s| {
            ["preinstall", "install", "postinstall"]
                .iter()
                .any(|k| s.contains_key(*k))
        });
        if install_script {
            fields.insert("hasInstallScript".into(), Value::Bool(true));
        }
        let tag = doc
            .get("dist-tags")
            .and_then(Value::as_object)
            .and_then(|t| t.keys().next().cloned());
        let package_id = world.publish_npm(
            project_id,
            name,
            version,
            dependencies,
            fields,
            tag.as_deref(),
            Bytes::from(tarball),
            shasum,
        );
        // UNCONFIRMED: the exact body of a successful publish (API.md §8).
        Reply::json(
            200,
            &json!({"id": package_id, "name": name, "version": version, "package_type": "npm", "status": "default"}),
        )
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `Npm-Command: deprecate`: versions carrying `deprecated` are (un)deprecated.
fn deprecate_versions(
    world: &mut World,
    project_id: u64,
    name: &str,
    versions: &Map<String, Value>,
) -> Reply {
    let wanted: Vec<(String, String)> = versions
        .iter()
        .filter_map(|(v, meta)| {
            let reason = meta.get("deprecated")?.as_str()?;
            Some((v.clone(), reason.to_string()))
        })
        .filter(|(v, _)| {
            world
                .npm_versions(project_id, name)
                .iter()
                .any(|r| &r.version == v)
        })
        .collect();
    if wanted.is_empty() {
        let text = "\"package versions to deprecate\" not given";
        return Reply::json(
            400,
            &json!({"message": format!("400 Bad request - {text}"), "error": text}),
        );
    }
    for (version, reason) in wanted {
        world.set_npm_field(project_id, name, &version, "deprecated", &reason);
    }
    Reply::json(200, &json!({}))
}

/// `PUT`/`DELETE {prefix}/-/package/*package_name/dist-tags/:tag` (§1.8).
fn dist_tag(fake: &Shared, req: &FakeRequest, level: Level<'_>, name: &str, tag: &str) -> Reply {
    fake.with_world(|world| {
        let caller = match writer(world, req) {
            Ok(c) => c,
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
        if req.method == Method::DELETE {
            if !world.can_destroy(&caller, project_id) {
                return Reply::forbidden();
            }
            if !world.remove_npm_tag(project_id, name, tag) {
                return Reply::json(
                    404,
                    &json!({"message": "404 Package Tag Not Found", "error": "Package tag not found"}),
                );
            }
            return Reply::new(204, "application/json", Bytes::new());
        }
        if !world.can_write(&caller, project_id) {
            return Reply::forbidden();
        }
        let version = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|v| !v.is_empty());
        let Some(version) = version else {
            let text = "\"Version\" not given";
            return Reply::json(
                400,
                &json!({"message": format!("400 Bad request - {text}"), "error": text}),
            );
        };
        if !world
            .npm_versions(project_id, name)
            .iter()
            .any(|r| r.version == version)
        {
            return Reply::npm_not_found("Package");
        }
        world.set_npm_tag(project_id, name, tag, &version);
        Reply::new(204, "application/json", Bytes::new())
    })
}
