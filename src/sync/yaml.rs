//! The YAML reading shared by yarn berry and pnpm lockfiles: load one document with
//! `yaml-rust2` (pure Rust, YAML 1.2) and read it as an untyped tree, so a field these
//! parsers do not use can never make a lockfile fail to load.

use yaml_rust2::{Yaml, YamlLoader};

use super::ParseError;

/// Loads the first document of `text`; an empty file is an empty mapping.
pub(crate) fn load(text: &str, origin: &str) -> Result<Yaml, ParseError> {
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
