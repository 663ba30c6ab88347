//! The `packrat.list` manifest (README.md, "Air-gap workflow"): one entry a line, `#` comments
//! (whole lines, or after whitespace), blank lines.
//!
//! ```text
//! npm @acme/ui@^2 project=42          # a range (resolved at sync time) or an exact version
//! npm left-pad@1.3.0                  # no project: the instance-level route / public registry
//! npm react@>=18.2.0 <19              # a range may contain spaces
//! go gitlab.example.com/acme/lib@v1.4.0 project=42
//! packages project=acme/web           # a project's whole Packages API index
//! ```
//!
//! Options are `key=value` words; the only key is `project` (a numeric id or a full path).
//! An unknown keyword, option or malformed entry is an error naming the line.

use super::{split_name, BadEntry, Collector, Item, ParseError, Parsed};
use crate::config::ProjectRef;

pub(crate) fn parse(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let mut out = Collector::default();
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let item = entry(line).map_err(|reason| ParseError::line_at(origin, index + 1, reason))?;
        out.item(item);
    }
    Ok(out.finish())
}

/// Drops a `#` comment: at the start of the line or after whitespace (`#` inside a word,
/// as in a URL fragment, is kept).
fn strip_comment(line: &str) -> &str {
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        if c == '#' && previous.is_whitespace() {
            return &line[..i];
        }
        previous = c;
    }
    line
}

fn entry(line: &str) -> Result<Item, BadEntry> {
    let mut words = line.split_whitespace();
    let keyword = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    match keyword {
        "npm" => npm(&rest),
        "go" => go(&rest),
        "packages" => {
            let project = options(&rest)?;
            let project = project.ok_or_else(|| {
                "packages needs a project: packages project=42 or packages project=group/name"
                    .to_owned()
            })?;
            Ok(Item::Packages { project })
        }
        other => Err(BadEntry(format!(
            "unknown entry type {other:?}: expected npm, go or packages"
        ))),
    }
}

fn npm(words: &[&str]) -> Result<Item, BadEntry> {
    let Some((spec, more)) = words.split_first() else {
        return Err(BadEntry(
            "npm needs a package: npm NAME@RANGE [project=ID]".to_owned(),
        ));
    };
    let Some((name, first)) = split_name(spec) else {
        return Err(BadEntry(format!(
            "npm {spec}: no version or range; write {spec}@RANGE (a version, a range such as ^2, or latest)"
        )));
    };
    check_npm_name(name)?;
    if first.is_empty() {
        return Err(BadEntry(format!(
            "npm {spec}: empty version or range after '@'"
        )));
    }
    if first.contains(':') {
        return Err(BadEntry(format!(
            "npm {spec}: only registry versions, ranges and dist-tags can be mirrored"
        )));
    }
    // A range may go on over several words (`>=1.2.0 <2`, `1.x || 2.x`) until the options.
    let split = more.iter().position(|w| is_option(w)).unwrap_or(more.len());
    let (range_words, option_words) = more.split_at(split);
    for word in range_words {
        if !word.starts_with(|c: char| "<>=~^*|-vxX0123456789".contains(c)) {
            return Err(BadEntry(format!(
                "unexpected {word:?} after npm {spec}: options are written key=value (project=42)"
            )));
        }
    }
    let range = std::iter::once(first)
        .chain(range_words.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let project = options(option_words)?;
    Ok(Item::NpmRange {
        name: name.to_owned(),
        range,
        project,
    })
}

fn check_npm_name(name: &str) -> Result<(), BadEntry> {
    let bare = match name.strip_prefix('@') {
        Some(scoped) => {
            let (scope, bare) = scoped.split_once('/').ok_or_else(|| {
                format!("invalid npm name {name:?}: a scoped name is @scope/name")
            })?;
            if scope.is_empty() {
                return Err(BadEntry(format!("invalid npm name {name:?}: empty scope")));
            }
            bare
        }
        None => name,
    };
    if bare.is_empty() || bare.contains('/') || bare.starts_with('.') || bare.starts_with('_') {
        return Err(BadEntry(format!("invalid npm name {name:?}")));
    }
    Ok(())
}

fn go(words: &[&str]) -> Result<Item, BadEntry> {
    let Some((spec, more)) = words.split_first() else {
        return Err(BadEntry(
            "go needs a module: go MODULE@VERSION [project=ID]".to_owned(),
        ));
    };
    let Some((module, version)) = spec.rsplit_once('@') else {
        return Err(BadEntry(format!(
            "go {spec}: no version; write {spec}@vX.Y.Z"
        )));
    };
    if module.is_empty() {
        return Err(BadEntry(format!("go {spec}: empty module path")));
    }
    if !(version.len() > 1 && version.starts_with('v')) {
        return Err(BadEntry(format!(
            "go {spec}: invalid version {version:?}: a module version starts with 'v' (v1.4.0)"
        )));
    }
    let module = unescape(module).map_err(|why| BadEntry(format!("go {spec}: {why}")))?;
    let version = unescape(version).map_err(|why| BadEntry(format!("go {spec}: {why}")))?;
    let project = options(more)?;
    Ok(Item::Go {
        module,
        version,
        mod_only: false,
        project,
    })
}

/// Go's case-encoding (`!a` for `A`), undone: items keep the decoded form.
fn unescape(s: &str) -> Result<String, BadEntry> {
    if !s.contains('!') {
        return Ok(s.to_owned());
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(BadEntry(format!(
            "{s:?} mixes '!'-escaping and upper case; write the path as in go.mod"
        )));
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '!' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(l) if l.is_ascii_lowercase() => out.push(l.to_ascii_uppercase()),
            _ => return Err(BadEntry(format!("bad '!'-escape in {s:?}"))),
        }
    }
    Ok(out)
}

fn is_option(word: &str) -> bool {
    word.split_once('=').is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

/// `key=value` words; the one key is `project`.
fn options(words: &[&str]) -> Result<Option<ProjectRef>, BadEntry> {
    let mut project = None;
    for word in words {
        let Some((key, value)) = word.split_once('=').filter(|_| is_option(word)) else {
            return Err(BadEntry(format!(
                "unexpected {word:?}: options are written key=value (project=42)"
            )));
        };
        match key {
            "project" => {
                if project.is_some() {
                    return Err(BadEntry("project= given twice".to_owned()));
                }
                project = Some(ProjectRef::parse(value).map_err(|e| BadEntry(e.0))?);
            }
            _ => {
                return Err(BadEntry(format!(
                    "unknown option {key:?}: the only option is project=ID_OR_PATH"
                )))
            }
        }
    }
    Ok(project)
}
