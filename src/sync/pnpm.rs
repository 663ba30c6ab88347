//! `pnpm-lock.yaml`, lockfile v5.x (pnpm 5 to 7), v6 (pnpm 8) and v9 (pnpm 9+).
//!
//! Every version keeps one `packages:` entry per package version; the key differs:
//! - v5: `/name/1.0.0`, `/@scope/name/1.0.0`, peer suffix `_react@18.2.0` (scoped peers
//!   written `_@types+react@18.0.0`);
//! - v6: `/name@1.0.0`, `/@scope/name@1.0.0`, peer suffix `(react@18.2.0)`;
//! - v9: `name@1.0.0` (peer suffixes live only in `snapshots:`, which is not read).
//!
//! Peer suffixes are stripped. Entries that do not come from a registry carry `name` and
//! `version` fields and a telling `resolution`: `{type: git, repo, commit}`,
//! `{type: directory, directory}`, `{tarball: file:…}` or a tarball URL outside any
//! registry; they are skipped. A registry entry's `resolution` is `{integrity}` (the
//! default registry) or `{integrity, tarball}` (another registry: GitLab, packrat).
//! `link:` dependencies never reach `packages:`; they are reported from the importers
//! (`importers:`, or the top level of a single-project v5/v6 lockfile).

use yaml_rust2::Yaml;

use super::yaml::{self, field, get};
use super::{not_from_registry, resolve_url, split_name, Collector, ParseError, Parsed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    V5,
    V6,
    V9,
}

const DEPENDENCY_FIELDS: [&str; 3] = ["dependencies", "devDependencies", "optionalDependencies"];

pub(crate) fn parse(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let doc = yaml::load(text, origin)?;
    if doc.as_hash().is_none() {
        return Err(ParseError::format(
            origin,
            "not a pnpm lockfile: the top level is not a mapping",
        ));
    }
    let Some(version) = field(&doc, "lockfileVersion") else {
        return Err(ParseError::format(
            origin,
            "not a pnpm lockfile: no lockfileVersion",
        ));
    };
    let major = version.split('.').next().unwrap_or("");
    let style = match major {
        "5" => Style::V5,
        "6" => Style::V6,
        "9" => Style::V9,
        _ => {
            return Err(ParseError::format(
                origin,
                format!(
                "pnpm lockfileVersion {version} is not supported (packrat reads 5.x, 6.x and 9.x)"
            ),
            ))
        }
    };
    let mut out = Collector::default();
    links(&doc, &mut out);
    if let Some(packages) = get(&doc, "packages") {
        if packages.as_hash().is_none() {
            return Err(ParseError::entry(origin, "packages", "expected a mapping"));
        }
        for (key, entry) in yaml::entries(packages) {
            package(style, &key, entry, &mut out);
        }
    }
    Ok(out.finish())
}

/// Reports the importers' `link:` dependencies (workspace members, `link:` folders).
fn links(doc: &Yaml, out: &mut Collector) {
    let mut importers: Vec<(String, &Yaml)> = vec![(".".to_owned(), doc)];
    if let Some(map) = get(doc, "importers") {
        importers.extend(yaml::entries(map));
    }
    for (importer, body) in importers {
        for deps in DEPENDENCY_FIELDS.iter().filter_map(|f| get(body, f)) {
            for (name, value) in yaml::entries(deps) {
                // v5: `name: version`; v6 and v9: `name: {specifier, version}`.
                let version = yaml::scalar(value).or_else(|| field(value, "version"));
                if let Some(target) = version.as_deref().and_then(|v| v.strip_prefix("link:")) {
                    out.skip(
                        format!("{importer}: {name}"),
                        format!(
                            "link to the local folder {target} (a workspace package or link: dependency): local source"
                        ),
                    );
                }
            }
        }
    }
}

fn package(style: Style, key: &str, entry: &Yaml, out: &mut Collector) {
    let (key_name, key_version) = match name_version(style, key) {
        Some((n, v)) => (Some(n), Some(v)),
        None => (None, None),
    };
    let name = field(entry, "name").or(key_name);
    let version = field(entry, "version").or(key_version);
    let resolution = get(entry, "resolution");
    let kind = resolution.and_then(|r| field(r, "type"));
    let tarball = resolution.and_then(|r| field(r, "tarball"));
    if kind.as_deref() == Some("git") || resolution.is_some_and(|r| get(r, "commit").is_some()) {
        let repo = resolution
            .and_then(|r| field(r, "repo"))
            .unwrap_or_default();
        let commit = resolution
            .and_then(|r| field(r, "commit"))
            .unwrap_or_default();
        out.skip(
            key,
            format!("git dependency ({repo}#{commit}): fetched from a git host, not a registry"),
        );
        return;
    }
    if kind.as_deref() == Some("directory")
        || resolution.is_some_and(|r| get(r, "directory").is_some())
    {
        let dir = resolution
            .and_then(|r| field(r, "directory"))
            .unwrap_or_default();
        out.skip(
            key,
            format!("local directory dependency ({dir}): local source"),
        );
        return;
    }
    let resolved = match tarball.as_deref().map(resolve_url).transpose() {
        Ok(resolved) => resolved,
        Err(reason) => {
            out.skip(key, reason);
            return;
        }
    };
    let (Some(name), Some(version)) = (name, version) else {
        out.skip(
            key,
            "cannot tell the package name and version from the entry",
        );
        return;
    };
    if let Some(reason) = not_from_registry(&version) {
        out.skip(key, reason);
        return;
    }
    let integrity = resolution.and_then(|r| field(r, "integrity"));
    out.npm(&name, &version, integrity.as_deref(), resolved);
}

/// Name and version from a `packages:` key, peer suffixes stripped; `None` for keys that
/// do not name a registry package in the usual form (a host prefix, `file:…`, git).
fn name_version(style: Style, key: &str) -> Option<(String, String)> {
    let (name, version) = match style {
        Style::V5 => {
            let path = key.strip_prefix('/')?;
            let scoped = path.starts_with('@');
            let mut parts = path.splitn(if scoped { 3 } else { 2 }, '/');
            let name = if scoped {
                let scope = parts.next()?;
                let bare = parts.next()?;
                format!("{scope}/{bare}")
            } else {
                parts.next()?.to_owned()
            };
            (name, parts.next()?.to_owned())
        }
        Style::V6 | Style::V9 => {
            let key = if style == Style::V6 {
                key.strip_prefix('/')?
            } else {
                key
            };
            let key = key.split('(').next().unwrap_or(key);
            let (name, version) = split_name(key)?;
            (name.to_owned(), version.to_owned())
        }
    };
    // v5's `_peer@1.0.0` suffix (and a stray one in v6); a semver version has no `_`.
    let version = version.split('_').next().unwrap_or(&version).to_owned();
    let plain = version.starts_with(|c: char| c.is_ascii_digit()) && !version.contains(':');
    (plain && !name.is_empty()).then_some((name, version))
}
