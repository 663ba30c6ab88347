//! `yarn.lock`: classic (yarn 1, its own indented text format) and berry (yarn 2+, YAML).
//!
//! Classic:
//! ```text
//! "@acme/ui@^1.0.0", "@acme/ui@^1.1.0":
//!   version "1.1.0"
//!   resolved "https://gitlab.example.com/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz#<sha1>"
//!   integrity sha512-…
//! ```
//! The header lists the descriptors (`name@range`) that resolved to this entry; a range
//! `npm:real@^1` is an alias, `github:`, `git+…`, `file:` and `link:` ranges are skipped.
//! Old lockfiles without `integrity` get one from the `#sha1` fragment of `resolved`.
//!
//! Berry:
//! ```text
//! "@acme/ui@npm:^1.0.0, @acme/ui@npm:^1.1.0":
//!   version: 1.1.0
//!   resolution: "@acme/ui@npm:1.1.0"
//!   checksum: 10c0/…
//! ```
//! The `resolution` decides: `npm:` names a registry package (an alias resolves to the
//! real name), with the tarball URL in a `::__archiveUrl=` parameter when the registry's
//! URL is not the conventional one (GitLab's project route); `workspace:`, `patch:`,
//! `portal:`, `link:`, `exec:`, `file:` and git resolutions are skipped. The `checksum` is
//! of yarn's cache zip, not of the npm tarball, so it is not an `integrity`.

use base64::Engine as _;
use yaml_rust2::Yaml;

use super::yaml::{self, field};
use super::{not_from_registry, resolve_url, split_name, BadEntry, Collector, ParseError, Parsed};

// ---------------------------------------------------------------------------
// Classic

struct Entry {
    line: usize,
    specs: Vec<String>,
    version: Option<String>,
    resolved: Option<String>,
    integrity: Option<String>,
}

pub(crate) fn parse_classic(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let mut out = Collector::default();
    let mut current: Option<Entry> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end();
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if line.starts_with('\t') {
            return Err(ParseError::line_at(
                origin,
                line_no,
                "tab indentation: yarn.lock indents with spaces",
            ));
        }
        if indent == 0 {
            if let Some(done) = current.take() {
                classic_entry(done, &mut out);
            }
            let Some(header) = content.strip_suffix(':') else {
                return Err(ParseError::line_at(
                    origin,
                    line_no,
                    format!(
                        "expected an entry header such as \"name@range\": but found {content:?}"
                    ),
                ));
            };
            let specs = split_specs(header)
                .map_err(|reason| ParseError::line_at(origin, line_no, reason))?;
            current = Some(Entry {
                line: line_no,
                specs,
                version: None,
                resolved: None,
                integrity: None,
            });
            continue;
        }
        let Some(entry) = current.as_mut() else {
            return Err(ParseError::line_at(
                origin,
                line_no,
                "indented line outside any entry",
            ));
        };
        if indent >= 4 {
            continue; // inside `dependencies:` and the like
        }
        let (key, value) =
            key_value(content).map_err(|reason| ParseError::line_at(origin, line_no, reason))?;
        let slot = match key.as_str() {
            "version" => &mut entry.version,
            "resolved" => &mut entry.resolved,
            "integrity" => &mut entry.integrity,
            _ => continue,
        };
        match value {
            Some(value) => *slot = Some(value),
            None => {
                return Err(ParseError::line_at(
                    origin,
                    line_no,
                    format!("{key} without a value"),
                ))
            }
        }
    }
    if let Some(done) = current.take() {
        classic_entry(done, &mut out);
    }
    Ok(out.finish())
}

fn classic_entry(entry: Entry, out: &mut Collector) {
    let label = entry.specs.join(", ");
    // Every descriptor of one entry names the same package; the first one tells which.
    let Some((name, range)) = entry.specs.first().and_then(|s| split_name(s)) else {
        out.skip(
            label,
            format!("line {}: cannot tell the package name", entry.line),
        );
        return;
    };
    let name = match range.strip_prefix("npm:") {
        Some(alias) => split_name(alias).map_or(name, |(real, _)| real),
        None => {
            if let Some(reason) = not_from_registry(range) {
                out.skip(label, reason);
                return;
            }
            name
        }
    };
    let Some(version) = entry.version.as_deref() else {
        out.skip(label, "no version in the lockfile entry");
        return;
    };
    let resolved = match entry.resolved.as_deref().map(resolve_url).transpose() {
        Ok(resolved) => resolved,
        Err(reason) => {
            out.skip(label, reason);
            return;
        }
    };
    let integrity = entry.integrity.clone().or_else(|| {
        let (_, sha1) = entry.resolved.as_deref()?.split_once('#')?;
        let bytes = hex::decode(sha1).ok().filter(|b| b.len() == 20)?;
        Some(format!(
            "sha1-{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    });
    out.npm(name, version, integrity.as_deref(), resolved);
}

/// Splits a header's descriptor list, `"a@^1", a@^1.1` → `a@^1`, `a@^1.1`.
fn split_specs(header: &str) -> Result<Vec<String>, BadEntry> {
    let mut specs = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let (spec, after) = if rest.starts_with('"') {
            let (spec, after) = quoted(rest)?;
            (spec, after)
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].trim().to_owned(), &rest[end..])
        };
        if spec.is_empty() {
            return Err(BadEntry(format!(
                "empty descriptor in the entry header {header:?}"
            )));
        }
        specs.push(spec);
        rest = after.trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma.trim_start();
        } else if !rest.is_empty() {
            return Err(BadEntry(format!(
                "expected ',' between descriptors in {header:?}"
            )));
        }
    }
    Ok(specs)
}

/// A field line: `key value`, `"key" "value"`, or `key:` (a nested block, no value).
fn key_value(content: &str) -> Result<(String, Option<String>), BadEntry> {
    let (key, rest) = if content.starts_with('"') {
        quoted(content)?
    } else {
        let end = content.find([' ', ':']).unwrap_or(content.len());
        (content[..end].to_owned(), &content[end..])
    };
    let rest = rest.trim();
    if rest.is_empty() || rest == ":" {
        return Ok((key, None));
    }
    let value = if rest.starts_with('"') {
        let (value, after) = quoted(rest)?;
        if !after.trim().is_empty() {
            return Err(BadEntry(format!(
                "unexpected text after the value of {key}: {after:?}"
            )));
        }
        value
    } else {
        rest.to_owned()
    };
    Ok((key, Some(value)))
}

/// A JSON-style double-quoted string at the start of `s`, and what follows it.
fn quoted(s: &str) -> Result<(String, &str), BadEntry> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let text: String = serde_json::from_str(&s[..=i])
                    .map_err(|e| BadEntry(format!("bad quoted string {:?}: {e}", &s[..=i])))?;
                return Ok((text, &s[i + 1..]));
            }
            _ => {}
        }
    }
    Err(BadEntry(format!("unterminated quoted string {s:?}")))
}

// ---------------------------------------------------------------------------
// Berry

pub(crate) fn parse_berry(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let doc = yaml::load(text, origin)?;
    if doc.as_hash().is_none() {
        return Err(ParseError::format(
            origin,
            "not a yarn berry lockfile: the top level is not a mapping",
        ));
    }
    if yaml::get(&doc, "__metadata").is_none() {
        return Err(ParseError::format(
            origin,
            "not a yarn berry lockfile: no __metadata entry",
        ));
    }
    let mut out = Collector::default();
    for (key, entry) in yaml::entries(&doc) {
        if key == "__metadata" {
            continue;
        }
        berry_entry(&key, entry, &mut out, origin)?;
    }
    Ok(out.finish())
}

fn berry_entry(
    key: &str,
    entry: &Yaml,
    out: &mut Collector,
    origin: &str,
) -> Result<(), ParseError> {
    let Some(resolution) = field(entry, "resolution") else {
        return Err(ParseError::entry(origin, key, "no resolution"));
    };
    let Some((name, reference)) = split_name(&resolution) else {
        return Err(ParseError::entry(
            origin,
            key,
            format!("resolution {resolution:?} is not NAME@REFERENCE"),
        ));
    };
    let Some(npm) = reference.strip_prefix("npm:") else {
        let reason = berry_not_npm(reference);
        out.skip(resolution.as_str(), reason);
        return Ok(());
    };
    // `1.1.0`, `1.1.0::__archiveUrl=…`, or an alias written `real@1.1.0`.
    let (version_part, params) = npm.split_once("::").unwrap_or((npm, ""));
    let (name, version) = match split_name(version_part) {
        Some((real, version)) => (real, version),
        None => (name, version_part),
    };
    if version.is_empty() {
        return Err(ParseError::entry(
            origin,
            key,
            format!("resolution {resolution:?} has no version"),
        ));
    }
    let archive = params
        .split('&')
        .find_map(|p| p.strip_prefix("__archiveUrl="));
    let resolved = match archive {
        None => None,
        Some(encoded) => {
            let url = percent_encoding::percent_decode_str(encoded).decode_utf8_lossy();
            match resolve_url(&url) {
                Ok(resolved) => Some(resolved),
                Err(reason) => {
                    out.skip(resolution.as_str(), reason);
                    return Ok(());
                }
            }
        }
    };
    out.npm(name, version, None, resolved);
    Ok(())
}

/// Why a berry resolution that is not `npm:` is skipped.
fn berry_not_npm(reference: &str) -> String {
    let protocol = reference.split(':').next().unwrap_or("");
    match protocol {
        "workspace" => format!("workspace package ({reference}): local source"),
        "patch" => format!(
            "patched package ({}): the patch is applied locally; \
             the package it patches is its own entry",
            short(reference)
        ),
        "portal" | "link" => format!("link to a local folder ({reference}): local source"),
        "exec" => format!("generated by a local script ({reference}): not in any registry"),
        "file" => format!("local file dependency ({reference}): not in any registry"),
        _ => not_from_registry(reference)
            .unwrap_or_else(|| format!("unsupported resolution protocol ({reference})")),
    }
}

/// A patch reference without its `::version=…&hash=…` parameters.
fn short(reference: &str) -> &str {
    reference.split("::").next().unwrap_or(reference)
}
