//! `package-lock.json` and `npm-shrinkwrap.json`, lockfile versions 1, 2 and 3.
//!
//! - v1 (npm 5 and 6): a nested `dependencies` tree, walked recursively; an alias is
//!   written `"version": "npm:real-name@1.0.0"`, a git or file dependency has its spec
//!   (`github:…`, `git+ssh://…`, `file:…`) as its `version`.
//! - v2 (npm 7 and 8): both `packages` and `dependencies`; `packages` is read.
//! - v3 (npm 9+): `packages` only. Keys are install folders (`node_modules/a`,
//!   `node_modules/a/node_modules/b`, `packages/app/node_modules/c`); an alias carries the
//!   real `name`; a workspace member or `file:` folder appears twice: as a
//!   `node_modules/x` entry with `link: true` (reported as skipped) and as its own folder
//!   entry (`packages/app`, `../lib`: local source, passed over because the link reports
//!   it). The root entry `""` is passed over silently.
//!
//! `bundled` (v1) and `inBundle` (v2, v3) entries ship inside their parent's tarball and
//! are skipped. `dev`, `optional` and `peer` flags do not matter: everything is mirrored,
//! so `npm ci` works on every platform and with every flag.

use serde_json::{Map, Value};

use super::{not_from_registry, resolve_url, split_name, Collector, ParseError, Parsed};

const NODE_MODULES: &str = "node_modules/";

pub(crate) fn parse(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let root: Value = serde_json::from_str(text).map_err(|e| json_error(origin, &e))?;
    let Value::Object(root) = root else {
        return Err(ParseError::format(
            origin,
            "not a package-lock.json: the top level is not a JSON object",
        ));
    };
    let version = match root.get("lockfileVersion") {
        None => 1,
        Some(v) => v.as_u64().ok_or_else(|| {
            ParseError::entry(
                origin,
                "lockfileVersion",
                format!("expected a number, found {v}"),
            )
        })?,
    };
    let mut out = Collector::default();
    match (version, root.get("packages"), root.get("dependencies")) {
        (1, _, Some(deps)) | (2, None, Some(deps)) => {
            let deps = object(deps, origin, "dependencies")?;
            walk_v1(deps, "", "dependencies", &mut out, origin)?;
        }
        (1, _, None) => {}
        (2 | 3, Some(packages), _) => {
            let packages = object(packages, origin, "packages")?;
            walk_packages(packages, &mut out, origin)?;
        }
        (2 | 3, None, _) => {
            return Err(ParseError::format(
                origin,
                format!("lockfileVersion {version} without a \"packages\" object"),
            ))
        }
        (other, _, _) => {
            return Err(ParseError::format(
                origin,
                format!("lockfileVersion {other} is not supported (packrat reads 1, 2 and 3)"),
            ))
        }
    }
    Ok(out.finish())
}

/// v2 and v3: the flat `packages` map keyed by install folder.
fn walk_packages(
    packages: &Map<String, Value>,
    out: &mut Collector,
    origin: &str,
) -> Result<(), ParseError> {
    for (key, entry) in packages {
        if key.is_empty() {
            continue; // the root project itself
        }
        let at = format!("packages[{key:?}]");
        let entry = object(entry, origin, &at)?;
        let Some(folder) = key
            .rfind(NODE_MODULES)
            .map(|i| &key[i + NODE_MODULES.len()..])
        else {
            // A workspace member's or a linked folder's own entry: local source. The
            // `node_modules/…` entry with `link: true` that points here is the one reported.
            continue;
        };
        let resolved = string(entry, origin, &at, "resolved")?;
        if flag(entry, "link") {
            let target = resolved.unwrap_or("?");
            let reason = if target.starts_with("..") || target.starts_with('/') {
                format!("link to the local folder {target} (a file: dependency): local source")
            } else {
                format!("workspace link to {target}: local source")
            };
            out.skip(key.as_str(), reason);
            continue;
        }
        if flag(entry, "inBundle") {
            out.skip(key.as_str(), BUNDLED);
            continue;
        }
        let name = string(entry, origin, &at, "name")?.unwrap_or(folder);
        let Some(version) = string(entry, origin, &at, "version")? else {
            out.skip(key.as_str(), "no version in the lockfile entry");
            continue;
        };
        let integrity = string(entry, origin, &at, "integrity")?;
        match resolved.map(resolve_url).transpose() {
            Ok(resolved) => out.npm(name, version, integrity, resolved),
            Err(reason) => out.skip(key.as_str(), reason),
        }
    }
    Ok(())
}

const BUNDLED: &str = "bundled: ships inside its parent's tarball";

/// v1: the nested `dependencies` tree. `parent` is the install folder of the entries'
/// parent (`""` at the top), so entries are named as v2/v3 would name them.
fn walk_v1(
    deps: &Map<String, Value>,
    parent: &str,
    key_path: &str,
    out: &mut Collector,
    origin: &str,
) -> Result<(), ParseError> {
    for (name, entry) in deps {
        let folder = format!("{parent}{NODE_MODULES}{name}");
        let at = format!("{key_path}[{name:?}]");
        let entry = object(entry, origin, &at)?;
        let version = string(entry, origin, &at, "version")?;
        let integrity = string(entry, origin, &at, "integrity")?;
        let resolved = string(entry, origin, &at, "resolved")?;
        match version {
            _ if flag(entry, "bundled") => out.skip(folder.as_str(), BUNDLED),
            None => out.skip(folder.as_str(), "no version in the lockfile entry"),
            Some(version) => {
                let (real, version) = match version.strip_prefix("npm:") {
                    Some(alias) => split_name(alias).ok_or_else(|| {
                        ParseError::entry(
                            origin,
                            format!("{at}.version"),
                            format!("alias {version:?} is not npm:NAME@VERSION"),
                        )
                    })?,
                    None => (name.as_str(), version),
                };
                match not_from_registry(version) {
                    Some(reason) => out.skip(folder.as_str(), reason),
                    None => match resolved.map(resolve_url).transpose() {
                        Ok(resolved) => out.npm(real, version, integrity, resolved),
                        Err(reason) => out.skip(folder.as_str(), reason),
                    },
                }
            }
        }
        if let Some(children) = entry.get("dependencies") {
            let children = object(children, origin, &format!("{at}.dependencies"))?;
            walk_v1(
                children,
                &format!("{folder}/"),
                &format!("{at}.dependencies"),
                out,
                origin,
            )?;
        }
    }
    Ok(())
}

fn object<'a>(
    value: &'a Value,
    origin: &str,
    at: &str,
) -> Result<&'a Map<String, Value>, ParseError> {
    value
        .as_object()
        .ok_or_else(|| ParseError::entry(origin, at, "expected a JSON object"))
}

/// An optional string field; present with another type is an error.
fn string<'a>(
    entry: &'a Map<String, Value>,
    origin: &str,
    at: &str,
    field: &str,
) -> Result<Option<&'a str>, ParseError> {
    match entry.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ParseError::entry(
            origin,
            format!("{at}.{field}"),
            format!("expected a string, found {other}"),
        )),
    }
}

fn flag(entry: &Map<String, Value>, field: &str) -> bool {
    entry.get(field).and_then(Value::as_bool).unwrap_or(false)
}

fn json_error(origin: &str, e: &serde_json::Error) -> ParseError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    ParseError::line_at(
        origin,
        e.line(),
        format!("invalid JSON at column {}: {message}", e.column()),
    )
}
