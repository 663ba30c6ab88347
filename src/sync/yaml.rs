//! The YAML reading shared by yarn berry and pnpm lockfiles: load one document with
//! `yaml-rust2` (pure Rust, YAML 1.2) and read it as an untyped tree, so a field these
//! parsers do not use can never make a lockfile fail to load.
//!
//! Hostile input is refused before the tree is built: the events are read once (the parser
//! is iterative) to check that nothing nests deeper than [`MAX_DEPTH`] and that no alias
//! is used (lockfiles have none, and the loader copies what an alias names, so a few nested
//! aliases expand exponentially). `yaml-rust2` caps flow nesting itself, not block nesting:
//! 20,000 nested block sequences would otherwise overflow the stack.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{Yaml, YamlLoader};

use super::ParseError;

/// Deepest nesting of sequences and mappings accepted (lockfiles nest about five deep).
pub const MAX_DEPTH: usize = 64;

/// Loads the first document of `text`; an empty file is an empty mapping.
pub(crate) fn load(text: &str, origin: &str) -> Result<Yaml, ParseError> {
    check_shape(text, origin)?;
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        let mark = e.marker();
        ParseError::line_at(
            origin,
            mark.line(),
            format!("invalid YAML at column {}: {}", mark.col() + 1, e.info()),
        )
    })?;
    Ok(docs
        .into_iter()
        .next()
        .unwrap_or_else(|| Yaml::Hash(Default::default())))
}

/// Refuses nesting deeper than [`MAX_DEPTH`] and aliases, reading only the event stream.
fn check_shape(text: &str, origin: &str) -> Result<(), ParseError> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(e) => e,
            // The loader reports syntax errors with the same position; let it.
            Err(_) => return Ok(()),
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::line_at(
                        origin,
                        mark.line(),
                        format!("nested more than {MAX_DEPTH} levels deep; not a lockfile packrat reads"),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Alias(_) => {
                return Err(ParseError::line_at(
                    origin,
                    mark.line(),
                    "YAML aliases (*name) are not used in lockfiles; refusing one",
                ))
            }
            Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
}

/// A scalar as text (`1.1.0`, `5.4`, `8`, `true`); `None` for anything else.
pub(crate) fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The value under a text key of a mapping; `None` when absent or not a mapping.
pub(crate) fn get<'a>(map: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    map.as_hash()?.iter().find_map(|(k, v)| {
        (scalar(k).as_deref() == Some(key) && !matches!(v, Yaml::Null)).then_some(v)
    })
}

/// A scalar field of a mapping, as text.
pub(crate) fn field(map: &Yaml, key: &str) -> Option<String> {
    get(map, key).and_then(scalar)
}

/// The entries of a mapping with their keys as text (non-scalar keys are passed over;
/// lockfiles have none).
pub(crate) fn entries(map: &Yaml) -> impl Iterator<Item = (String, &Yaml)> {
    map.as_hash()
        .into_iter()
        .flat_map(|h| h.iter())
        .filter_map(|(k, v)| Some((scalar(k)?, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_block_nesting_is_refused_without_overflowing() {
        let text = format!("a:\n  {}x\n", "- ".repeat(20_000));
        let e = load(&text, "pnpm-lock.yaml").unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
        let deep: String = (0..3000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        assert!(load(&deep, "x").is_err());
        let ok = format!("a:\n  {}x\n", "- ".repeat(10));
        assert!(load(&ok, "x").is_ok());
    }

    #[test]
    fn aliases_are_refused() {
        let laughs = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
        assert!(load(laughs, "yarn.lock")
            .unwrap_err()
            .to_string()
            .contains("alias"));
    }
}
