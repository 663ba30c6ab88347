//! `bun.lock`, bun's text lockfile (bun 1.2+, `lockfileVersion` 0, 1 and 2): JSON with trailing
//! commas. Its `packages` map is keyed by install path (`@acme/app`, `@acme/app/@acme/util` for
//! a nested copy); each npm entry is an array `[ "<name>@<version>", "<tarball URL or empty>",
//! { dependencies… }, "<integrity>" ]`. Entries whose spec is not a registry version
//! (`workspace:`, `file:`, `link:`, `git+…`, `github:…`) are reported as skipped. The binary
//! `bun.lockb` of older bun versions is not read: `bun install --save-text-lockfile` writes
//! the text form.

use serde_json::Value;

use super::{not_from_registry, resolve_url, split_name, Collector, ParseError, Parsed};

/// Lockfile versions packrat knows the `packages` layout of.
const VERSIONS: &[u64] = &[0, 1, 2];

pub(crate) fn parse(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let json = strip_trailing_commas(text);
    let root: Value = serde_json::from_str(&json).map_err(|e| {
        ParseError::line_at(
            origin,
            e.line(),
            format!("invalid bun.lock at column {}: {e}", e.column()),
        )
    })?;
    let root = root.as_object().ok_or_else(|| {
        ParseError::format(origin, "not a bun.lock: the top level is not an object")
    })?;
    match root.get("lockfileVersion").and_then(Value::as_u64) {
        Some(v) if VERSIONS.contains(&v) => {}
        Some(v) => {
            return Err(ParseError::format(
                origin,
                format!("bun.lock lockfileVersion {v} is not supported (packrat reads 0, 1 and 2)"),
            ))
        }
        None => {
            return Err(ParseError::format(
                origin,
                "not a bun.lock: no lockfileVersion",
            ))
        }
    }
    let mut out = Collector::default();
    let Some(packages) = root.get("packages") else {
        return Ok(out.finish());
    };
    let packages = packages
        .as_object()
        .ok_or_else(|| ParseError::entry(origin, "packages", "expected an object"))?;
    for (key, entry) in packages {
        let at = format!("packages[{key:?}]");
        let fields = entry
            .as_array()
            .ok_or_else(|| ParseError::entry(origin, &at, "expected an array"))?;
        let spec = fields
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| ParseError::entry(origin, &at, "expected \"<name>@<version>\" first"))?;
        let (name, version) = split_name(spec).ok_or_else(|| {
            ParseError::entry(origin, &at, format!("{spec:?} is not <name>@<version>"))
        })?;
        if let Some(reason) = not_from_registry(version) {
            out.skip(key.as_str(), reason);
            continue;
        }
        if fields.len() < 2 || !fields[1].is_string() {
            out.skip(
                key.as_str(),
                format!("{spec}: not a registry package entry"),
            );
            continue;
        }
        let resolved = fields[1].as_str().filter(|u| !u.is_empty());
        // The integrity is the last string after the dependencies object.
        let integrity = fields
            .iter()
            .skip(2)
            .filter_map(Value::as_str)
            .find(|s| s.contains('-'));
        match resolved.map(resolve_url).transpose() {
            Ok(resolved) => out.npm(name, version, integrity, resolved),
            Err(reason) => out.skip(key.as_str(), reason),
        }
    }
    Ok(out.finish())
}

/// The JSON bun writes, minus what plain JSON forbids: a comma before `]` or `}` (outside
/// strings).
fn strip_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut pending_comma: Option<usize> = None;
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                pending_comma = None;
                in_string = true;
                out.push(c);
            }
            ',' => {
                pending_comma = Some(out.len());
                out.push(c);
            }
            ']' | '}' => {
                if let Some(at) = pending_comma.take() {
                    out.replace_range(at..=at, " ");
                }
                out.push(c);
            }
            c if c.is_whitespace() => out.push(c),
            _ => {
                pending_comma = None;
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Item, Resolved};
    use super::*;

    const LOCK: &str = r#"{
  "lockfileVersion": 1,
  "workspaces": {
    "": {
      "name": "x",
      "dependencies": {
        "@acme/app": "1.0.0",
      },
    },
  },
  "packages": {
    "@acme/app": ["@acme/app@1.0.0", "http://127.0.0.1:1/api/v4/groups/acme/-/packages/npm/@acme/app/-/@acme/app-1.0.0.tgz", { "dependencies": { "@acme/util": "^1.0.0" } }, "sha1-vBqld5o8XytgN0ppWyynbJqkvyw="],

    "@acme/util": ["@acme/util@1.1.0", "", {}, "sha512-abc"],

    "local": ["local@workspace:packages/local"],

    "left-pad": ["left-pad@github:stevemao/left-pad#abc", {}, "stevemao-left-pad-abc"],
  }
}
"#;

    #[test]
    fn reads_registry_entries_and_skips_the_rest() {
        let parsed = parse(LOCK, "bun.lock").unwrap();
        assert_eq!(parsed.items.len(), 2, "{parsed:?}");
        match &parsed.items[0] {
            Item::Npm {
                name,
                version,
                integrity,
                resolved,
            } => {
                assert_eq!((name.as_str(), version.as_str()), ("@acme/app", "1.0.0"));
                assert_eq!(
                    integrity.as_deref(),
                    Some("sha1-vBqld5o8XytgN0ppWyynbJqkvyw=")
                );
                assert_eq!(
                    resolved,
                    &Some(Resolved::Gitlab {
                        path: "/api/v4/groups/acme/-/packages/npm/@acme/app/-/@acme/app-1.0.0.tgz"
                            .into()
                    })
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&parsed.items[1], Item::Npm { resolved: None, .. }));
        assert_eq!(parsed.skipped.len(), 2, "{:?}", parsed.skipped);
    }

    #[test]
    fn trailing_commas_only_outside_strings() {
        assert_eq!(
            strip_trailing_commas(r#"{"a": "x,}",}"#),
            r#"{"a": "x,}" }"#
        );
        assert_eq!(strip_trailing_commas("[1, 2,\n]"), "[1, 2 \n]");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse("{\"lockfileVersion\": 9}", "bun.lock").is_err());
        assert!(parse("[1]", "bun.lock").is_err());
        assert!(parse(
            "{\"lockfileVersion\": 1, \"packages\": {\"a\": 3}}",
            "bun.lock"
        )
        .is_err());
    }
}
