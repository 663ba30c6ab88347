//! Unit tests of the sync input parsers, over the fixtures in `fixtures/lockfiles/` and
//! small inline inputs for the awkward cases.

mod detect;
mod go;
mod list;
mod npm_lock;
mod pnpm;
mod resolved;
mod yarn;

use std::path::{Path, PathBuf};

use super::{parse_path, Item, Parsed, Resolved, Skipped};

pub(super) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/lockfiles")
        .join(rel)
}

pub(super) fn parse_fixture(rel: &str) -> Parsed {
    match parse_path(&fixture(rel)) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{rel}: {e}"),
    }
}

/// `name@version` of every npm item, in order.
pub(super) fn npm_ids(parsed: &Parsed) -> Vec<String> {
    parsed
        .items
        .iter()
        .map(|item| match item {
            Item::Npm { name, version, .. } => format!("{name}@{version}"),
            other => panic!("not an npm item: {other:?}"),
        })
        .collect()
}

/// The npm item `name@version`: its integrity and resolved.
pub(super) fn npm<'a>(
    parsed: &'a Parsed,
    name: &str,
    version: &str,
) -> (Option<&'a str>, Option<&'a Resolved>) {
    let found = parsed.items.iter().find_map(|item| match item {
        Item::Npm {
            name: n,
            version: v,
            integrity,
            resolved,
        } if n == name && v == version => Some((integrity.as_deref(), resolved.as_ref())),
        _ => None,
    });
    found.unwrap_or_else(|| panic!("no npm item {name}@{version} in {:#?}", parsed.items))
}

pub(super) fn skipped<'a>(parsed: &'a Parsed, entry: &str) -> &'a Skipped {
    parsed
        .skipped
        .iter()
        .find(|s| s.entry == entry)
        .unwrap_or_else(|| panic!("no skipped entry {entry:?} in {:#?}", parsed.skipped))
}

pub(super) fn gitlab(path: &str) -> Resolved {
    Resolved::Gitlab {
        path: path.to_owned(),
    }
}

pub(super) fn public(url: &str) -> Resolved {
    Resolved::Public {
        url: url.to_owned(),
    }
}
