//! `packrat sync` (README.md, "Air-gap workflow"): its inputs, lockfiles and the
//! `packrat.list` manifest, parsed into a flat list of [`Item`]s to mirror, plus the entries
//! deliberately left out ([`Skipped`], each with a reason: git, file and link dependencies are
//! reported, never silently dropped); and the fetching of those items.
//!
//! The parsers are pure: their only I/O is reading the named file (and, for `go.mod`, the
//! neighbouring `go.sum`). Fetching is elsewhere: [`run`] fetches in-process through the
//! cache core and the adapters' sync entry points (`npm::sync`, `goproxy::sync`, the
//! Packages API index); [`via`] asks a running packrat over HTTP instead.
//!
//! One file per format:
//! - [`npm_lock`]: `package-lock.json` / `npm-shrinkwrap.json`, lockfile v1, v2 and v3;
//! - [`yarn`]: `yarn.lock`, classic (v1 text) and berry (YAML);
//! - [`pnpm`]: `pnpm-lock.yaml`, lockfile v5.x, v6 and v9;
//! - [`bun`]: `bun.lock`, bun's text lockfile;
//! - [`go`]: `go.mod` and `go.sum`;
//! - [`list`]: the `packrat.list` manifest.
//!
//! Format detection ([`detect`]) looks at the file name and the content: the name picks
//! the format, the content refines it (`yarn.lock` classic or berry) or, for a file with
//! another name, decides it; a name and a content that disagree are an error.

pub mod bun;
pub mod go;
pub mod list;
pub mod npm_lock;
pub mod pnpm;
pub mod run;
pub mod via;
mod yaml;
pub mod yarn;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use crate::config::ProjectRef;

/// One thing to mirror.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// One npm package version to mirror (tarball + its packument).
    Npm {
        name: String,
        version: String,
        /// The lockfile's `integrity` (SRI, possibly several space-separated hashes).
        integrity: Option<String>,
        resolved: Option<Resolved>,
    },
    /// An npm range from packrat.list (resolved against the packument at sync time). An
    /// exact version is a range that matches one version; a dist-tag (`latest`) is
    /// passed through as written.
    NpmRange {
        name: String,
        range: String,
        project: Option<ProjectRef>,
    },
    /// A Go module version; `mod_only` for go.sum `/go.mod`-only entries (fetch `.mod`
    /// only). Module paths and versions are in Go's decoded form (upper case, no `!`).
    Go {
        module: String,
        version: String,
        mod_only: bool,
        project: Option<ProjectRef>,
    },
    /// Mirror a project's whole Packages API index.
    Packages { project: ProjectRef },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Npm { name, version, .. } => write!(f, "npm {name}@{version}"),
            Item::NpmRange {
                name,
                range,
                project,
            } => {
                write!(f, "npm {name}@{range}")?;
                write_project(f, project.as_ref())
            }
            Item::Go {
                module,
                version,
                mod_only,
                project,
            } => {
                write!(f, "go {module}@{version}")?;
                if *mod_only {
                    f.write_str(" (go.mod only)")?;
                }
                write_project(f, project.as_ref())
            }
            Item::Packages { project } => write!(f, "packages project={project}"),
        }
    }
}

fn write_project(f: &mut fmt::Formatter<'_>, project: Option<&ProjectRef>) -> fmt::Result {
    match project {
        Some(p) => write!(f, " project={p}"),
        None => Ok(()),
    }
}

/// Where a lockfile's `resolved` URL points, mapped back to a GitLab API route by path: the
/// URL may name GitLab or packrat itself (a lockfile made through packrat), so only the path
/// from `/api/v4/` on matters. Public-registry URLs (no `/api/v4/`) are `Public { url }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resolved {
    /// The path from `/api/v4/` on, without query or fragment, as written (a scoped name
    /// may appear as `@scope/name` or `@scope%2fname`; packrat's router takes both), e.g.
    /// `/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz`.
    Gitlab { path: String },
    /// A public registry's tarball URL, without fragment (yarn's `#sha1`).
    Public { url: String },
}

/// A lockfile entry that is not mirrored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Skipped {
    /// The entry as the lockfile names it (`node_modules/foo`, `foo@git+ssh://…`, a line).
    pub entry: String,
    pub reason: String,
}

/// What one input names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// In input order, without duplicates (see [`Parsed::merge`] for the rules).
    pub items: Vec<Item>,
    pub skipped: Vec<Skipped>,
}

impl Parsed {
    /// Appends `other`, dropping duplicates: one npm item per name and version, one Go item
    /// per module and version (a full entry wins over a `/go.mod`-only one), identical
    /// ranges, `packages` entries and skipped entries once. Where a duplicate carries what
    /// the first lacked (an integrity, a resolved URL, a project) the first gains it.
    pub fn merge(&mut self, other: Parsed) {
        let mut collector = Collector::from(std::mem::take(self));
        for item in other.items {
            collector.item(item);
        }
        for skipped in other.skipped {
            collector.skipped.push(skipped);
        }
        *self = collector.finish();
    }
}

/// The kinds of input `packrat sync` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// `package-lock.json` / `npm-shrinkwrap.json`, lockfile v1, v2 or v3.
    PackageLock,
    /// `yarn.lock` v1 (the classic text format).
    YarnClassic,
    /// `yarn.lock` from yarn 2+ (YAML with `__metadata`).
    YarnBerry,
    /// `pnpm-lock.yaml`, lockfile v5.x, v6 or v9.
    Pnpm,
    /// `bun.lock`, bun's text lockfile.
    Bun,
    GoMod,
    GoSum,
    /// The `packrat.list` manifest ([`list`]).
    PackratList,
}

impl InputKind {
    /// A short human name, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            InputKind::PackageLock => "an npm package-lock.json",
            InputKind::YarnClassic => "a yarn.lock v1 (classic)",
            InputKind::YarnBerry => "a yarn.lock from yarn berry",
            InputKind::Pnpm => "a pnpm-lock.yaml",
            InputKind::Bun => "a bun.lock",
            InputKind::GoMod => "a go.mod",
            InputKind::GoSum => "a go.sum",
            InputKind::PackratList => "a packrat.list",
        }
    }
}

/// Why one entry of a lockfile or list cannot be mirrored (the caller adds the file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadEntry(pub String);

impl From<String> for BadEntry {
    fn from(reason: String) -> BadEntry {
        BadEntry(reason)
    }
}

impl From<BadEntry> for String {
    /// The reason, as the summary lists a skipped entry.
    fn from(e: BadEntry) -> String {
        e.0
    }
}

impl From<&str> for BadEntry {
    fn from(reason: &str) -> BadEntry {
        BadEntry(reason.to_owned())
    }
}

/// Why an input could not be read or understood. Every variant names the file; the
/// rest says where (line, or the key of the entry) and why.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{origin}: cannot read the file: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The format could not be told, or is a version packrat does not know.
    #[error("{origin}: {reason}")]
    Format { origin: String, reason: String },
    /// A syntax or content error at a line (1-based).
    #[error("{origin}:{line}: {reason}")]
    Line {
        origin: String,
        line: usize,
        reason: String,
    },
    /// A content error in a structured file, named by the entry's key.
    #[error("{origin}: {key}: {reason}")]
    Entry {
        origin: String,
        key: String,
        reason: String,
    },
}

impl ParseError {
    /// The file the error is about.
    pub fn origin(&self) -> &str {
        match self {
            ParseError::Read { origin, .. }
            | ParseError::Format { origin, .. }
            | ParseError::Line { origin, .. }
            | ParseError::Entry { origin, .. } => origin,
        }
    }

    /// The 1-based line, when the error has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Line { line, .. } => Some(*line),
            _ => None,
        }
    }

    pub(crate) fn format(origin: &str, reason: impl Into<String>) -> ParseError {
        ParseError::Format {
            origin: origin.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn line_at(origin: &str, line: usize, reason: impl std::fmt::Display) -> ParseError {
        ParseError::Line {
            origin: origin.to_owned(),
            line,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn entry(
        origin: &str,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> ParseError {
        ParseError::Entry {
            origin: origin.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Reads `path`, detects its format ([`detect`]) and parses it. For a `go.mod` with a
/// `go.sum` beside it, the `go.sum` is read too: the full module graph lives there.
pub fn parse_path(path: &Path) -> Result<Parsed, ParseError> {
    let origin = path.display().to_string();
    let text = read(path, &origin)?;
    let kind = detect(path, &text)?;
    let mut parsed = parse_str(kind, &text, &origin)?;
    if kind == InputKind::GoMod {
        let sum = path.with_file_name("go.sum");
        if sum.is_file() {
            let sum_origin = sum.display().to_string();
            let sum_text = read(&sum, &sum_origin)?;
            parsed.merge(parse_str(InputKind::GoSum, &sum_text, &sum_origin)?);
        }
    }
    Ok(parsed)
}

fn read(path: &Path, origin: &str) -> Result<String, ParseError> {
    std::fs::read_to_string(path).map_err(|source| ParseError::Read {
        origin: origin.to_owned(),
        source,
    })
}

/// Parses `text` as `kind`; `origin` names the input in errors (usually its path).
pub fn parse_str(kind: InputKind, text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match kind {
        InputKind::PackageLock => npm_lock::parse(text, origin),
        InputKind::YarnClassic => yarn::parse_classic(text, origin),
        InputKind::YarnBerry => yarn::parse_berry(text, origin),
        InputKind::Pnpm => pnpm::parse(text, origin),
        InputKind::Bun => bun::parse(text, origin),
        InputKind::GoMod => go::parse_mod(text, origin),
        InputKind::GoSum => go::parse_sum(text, origin),
        InputKind::PackratList => list::parse(text, origin),
    }
}

/// Tells the format of `path` from its file name and its content `text`.
///
/// The name decides when it is a known one (`package-lock.json`, `npm-shrinkwrap.json`,
/// `yarn.lock`, `pnpm-lock.yaml`, `go.mod`, `go.sum`, `packrat.list` or `*.list`), the
/// content then telling yarn classic from berry and having to agree; a file with any other
/// name is recognised by its content alone.
pub fn detect(path: &Path, text: &str) -> Result<InputKind, ParseError> {
    let origin = path.display().to_string();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let by_name = kind_by_name(name);
    let by_content = sniff(text);
    match (by_name, by_content) {
        (Some(InputKind::YarnClassic), Some(InputKind::YarnBerry)) => Ok(InputKind::YarnBerry),
        // Both are JSON with a lockfileVersion; the name tells them apart.
        (Some(InputKind::Bun), Some(InputKind::PackageLock)) => Ok(InputKind::Bun),
        (Some(named), Some(seen)) if named != seen => Err(ParseError::format(
            &origin,
            format!(
                "named like {} but the content looks like {}",
                named.describe(),
                seen.describe()
            ),
        )),
        (Some(kind), _) | (None, Some(kind)) => Ok(kind),
        (None, None) => Err(ParseError::format(
            &origin,
            "unknown input: expected package-lock.json, npm-shrinkwrap.json, yarn.lock, \
             pnpm-lock.yaml, bun.lock, go.mod, go.sum or a packrat.list manifest (by name or content)",
        )),
    }
}

fn kind_by_name(name: &str) -> Option<InputKind> {
    Some(match name {
        "package-lock.json" | "npm-shrinkwrap.json" => InputKind::PackageLock,
        // Classic or berry: the content tells (see `detect`).
        "yarn.lock" => InputKind::YarnClassic,
        "pnpm-lock.yaml" | "pnpm-lock.yml" => InputKind::Pnpm,
        "bun.lock" => InputKind::Bun,
        "go.mod" => InputKind::GoMod,
        "go.sum" => InputKind::GoSum,
        _ if name.ends_with(".list") => InputKind::PackratList,
        _ => return None,
    })
}

/// Recognises a format by strong signals in the content only; `None` when unsure.
fn sniff(text: &str) -> Option<InputKind> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let head: String = trimmed.chars().take(4096).collect();
        return (head.contains("\"lockfileVersion\"")
            || head.contains("\"dependencies\"")
            || head.contains("\"packages\""))
        .then_some(InputKind::PackageLock);
    }
    let lines = || {
        text.lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
    };
    if lines().take(10).any(|l| l.trim() == "# yarn lockfile v1") {
        return Some(InputKind::YarnClassic);
    }
    if lines().any(|l| l == "__metadata:") {
        return Some(InputKind::YarnBerry);
    }
    let first = lines().find(|l| !l.starts_with('#') && !l.starts_with("//"))?;
    if first.starts_with("lockfileVersion:") {
        return Some(InputKind::Pnpm);
    }
    let mut words = first.split_whitespace();
    let head = words.next().unwrap_or("");
    if matches!(head, "npm" | "go" | "packages") {
        return Some(InputKind::PackratList);
    }
    if lines().any(|l| l.starts_with("module ") || l.starts_with("module\t")) {
        return Some(InputKind::GoMod);
    }
    let fields: Vec<&str> = first.split_whitespace().collect();
    if fields.len() == 3 && fields[1].starts_with('v') && fields[2].starts_with("h1:") {
        return Some(InputKind::GoSum);
    }
    None
}

// ---------------------------------------------------------------------------
// Helpers shared by the npm-family parsers.

/// Collects items and skipped entries, dropping duplicates (see [`Parsed::merge`]).
#[derive(Default)]
pub(crate) struct Collector {
    items: Vec<Item>,
    seen: HashMap<ItemKey, usize>,
    skipped: Vec<Skipped>,
}

#[derive(PartialEq, Eq, Hash)]
enum ItemKey {
    Npm(String, String),
    NpmRange(String, String, Option<ProjectRef>),
    Go(String, String),
    Packages(ProjectRef),
}

impl From<Parsed> for Collector {
    fn from(parsed: Parsed) -> Collector {
        let mut collector = Collector::default();
        for item in parsed.items {
            collector.item(item);
        }
        collector.skipped = parsed.skipped;
        collector
    }
}

impl Collector {
    pub(crate) fn item(&mut self, item: Item) {
        let key = match &item {
            Item::Npm { name, version, .. } => ItemKey::Npm(name.clone(), version.clone()),
            Item::NpmRange {
                name,
                range,
                project,
            } => ItemKey::NpmRange(name.clone(), range.clone(), project.clone()),
            Item::Go {
                module, version, ..
            } => ItemKey::Go(module.clone(), version.clone()),
            Item::Packages { project } => ItemKey::Packages(project.clone()),
        };
        let Some(&at) = self.seen.get(&key) else {
            self.seen.insert(key, self.items.len());
            self.items.push(item);
            return;
        };
        match (&mut self.items[at], item) {
            (
                Item::Npm {
                    integrity,
                    resolved,
                    ..
                },
                Item::Npm {
                    integrity: new_integrity,
                    resolved: new_resolved,
                    ..
                },
            ) => {
                if integrity.is_none() {
                    *integrity = new_integrity;
                }
                if resolved.is_none() {
                    *resolved = new_resolved;
                }
            }
            (
                Item::Go {
                    mod_only, project, ..
                },
                Item::Go {
                    mod_only: new_mod_only,
                    project: new_project,
                    ..
                },
            ) => {
                *mod_only &= new_mod_only;
                if project.is_none() {
                    *project = new_project;
                }
            }
            _ => {}
        }
    }

    pub(crate) fn skip(&mut self, entry: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            entry: entry.into(),
            reason: reason.into(),
        });
    }

    pub(crate) fn npm(
        &mut self,
        name: &str,
        version: &str,
        integrity: Option<&str>,
        resolved: Option<Resolved>,
    ) {
        self.item(Item::Npm {
            name: name.to_owned(),
            version: version.to_owned(),
            integrity: integrity.filter(|i| !i.is_empty()).map(str::to_owned),
            resolved,
        });
    }

    pub(crate) fn finish(self) -> Parsed {
        let mut seen = HashSet::new();
        let skipped = self
            .skipped
            .into_iter()
            .filter(|s| seen.insert(s.clone()))
            .collect();
        Parsed {
            items: self.items,
            skipped,
        }
    }
}

/// Splits `name@rest` at the `@` that ends the name: the first one after position 0, so a
/// scope's leading `@` stays in the name (`@acme/ui@^1` → `@acme/ui`, `^1`).
pub(crate) fn split_name(spec: &str) -> Option<(&str, &str)> {
    let at = spec.get(1..)?.find('@')? + 1;
    let (name, rest) = (&spec[..at], &spec[at + 1..]);
    (!name.is_empty()).then_some((name, rest))
}

/// Why an npm dependency spec or a `resolved` value does not name a registry package, or
/// `None` when it does (a version, a range, a registry tarball URL, an `npm:` alias).
pub(crate) fn not_from_registry(spec: &str) -> Option<String> {
    let spec = spec.trim();
    const GIT: [&str; 8] = [
        "git+",
        "git:",
        "git@",
        "github:",
        "gitlab:",
        "bitbucket:",
        "gist:",
        "ssh://",
    ];
    if GIT.iter().any(|p| spec.starts_with(p)) {
        return Some(format!(
            "git dependency ({spec}): fetched from a git host, not a registry"
        ));
    }
    if spec.starts_with("file:") {
        return Some(format!(
            "local file dependency ({spec}): not in any registry"
        ));
    }
    if spec.starts_with("link:") || spec.starts_with("portal:") {
        return Some(format!(
            "link to a local folder ({spec}): not in any registry"
        ));
    }
    if spec.starts_with("workspace:") {
        return Some(format!("workspace package ({spec}): local source"));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        let path = url_path(spec);
        if path.ends_with(".git") || spec.contains(".git#") || spec.contains("#commit=") {
            return Some(format!(
                "git dependency ({spec}): fetched from a git host, not a registry"
            ));
        }
        if host(spec) == "codeload.github.com" || path.contains("/-/archive/") {
            return Some(format!(
                "git dependency ({spec}): an archive from a git host, not a registry"
            ));
        }
        // npm registries serve tarballs at `…/NAME/-/FILE.tgz`; GitLab's routes are under
        // /api/v4/ (a packrat URL too).
        if path.contains("/api/v4/") || (path.contains("/-/") && path.ends_with(".tgz")) {
            return None;
        }
        return Some(format!(
            "remote tarball URL ({spec}): not a registry package"
        ));
    }
    if spec.starts_with('.') || spec.starts_with('/') || spec.starts_with("~/") {
        return Some(format!(
            "local path dependency ({spec}): not in any registry"
        ));
    }
    None
}

/// Maps a registry tarball URL to a [`Resolved`]; `Err(reason)` when the URL is not a
/// registry tarball (git, file, link, other remote tarballs; see [`not_from_registry`]).
pub(crate) fn resolve_url(url: &str) -> Result<Resolved, BadEntry> {
    if let Some(reason) = not_from_registry(url) {
        return Err(BadEntry(reason));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(BadEntry(format!("resolved value {url:?} is not a URL")));
    }
    let without_fragment = url.split('#').next().unwrap_or(url);
    let path = url_path(url);
    match path.find("/api/v4/") {
        Some(at) => Ok(Resolved::Gitlab {
            path: path[at..].to_owned(),
        }),
        None => Ok(Resolved::Public {
            url: without_fragment.to_owned(),
        }),
    }
}

/// The host of an http(s) URL (no port, no credentials).
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    authority.split(':').next().unwrap_or(authority)
}

/// The path of an http(s) URL: after the authority, before any query or fragment.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    rest.find('/').map_or("", |at| &rest[at..])
}

#[cfg(test)]
mod tests;
