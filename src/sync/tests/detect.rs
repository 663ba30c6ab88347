//! Format detection by file name and content, and parse_path.

use std::path::Path;

use super::*;
use crate::sync::{detect, InputKind, ParseError};

fn kind(name: &str, text: &str) -> Result<InputKind, ParseError> {
    detect(Path::new(name), text)
}

#[test]
fn by_name() {
    let json = r#"{"lockfileVersion": 3, "packages": {}}"#;
    assert_eq!(
        kind("web/package-lock.json", json).unwrap(),
        InputKind::PackageLock
    );
    assert_eq!(
        kind("npm-shrinkwrap.json", json).unwrap(),
        InputKind::PackageLock
    );
    assert_eq!(
        kind("pnpm-lock.yaml", "lockfileVersion: '9.0'\n").unwrap(),
        InputKind::Pnpm
    );
    assert_eq!(kind("api/go.mod", "module m\n").unwrap(), InputKind::GoMod);
    assert_eq!(kind("go.sum", "").unwrap(), InputKind::GoSum);
    assert_eq!(kind("packrat.list", "").unwrap(), InputKind::PackratList);
    assert_eq!(
        kind("mirror-2026.list", "").unwrap(),
        InputKind::PackratList
    );
}

#[test]
fn yarn_lock_content_tells_classic_from_berry() {
    let classic = std::fs::read_to_string(fixture("yarn-classic/yarn.lock")).unwrap();
    let berry = std::fs::read_to_string(fixture("yarn-berry/yarn.lock")).unwrap();
    assert_eq!(kind("yarn.lock", &classic).unwrap(), InputKind::YarnClassic);
    assert_eq!(kind("yarn.lock", &berry).unwrap(), InputKind::YarnBerry);
}

#[test]
fn by_content_when_the_name_says_nothing() {
    for (rel, expected) in [
        ("npm-v3/package-lock.json", InputKind::PackageLock),
        ("npm-v1/package-lock.json", InputKind::PackageLock),
        ("yarn-classic/yarn.lock", InputKind::YarnClassic),
        ("yarn-berry/yarn.lock", InputKind::YarnBerry),
        ("pnpm-v5/pnpm-lock.yaml", InputKind::Pnpm),
        ("pnpm-v9/pnpm-lock.yaml", InputKind::Pnpm),
        ("go-app/go.mod", InputKind::GoMod),
        ("go-nosum/go.mod", InputKind::GoMod),
        ("go-app/go.sum", InputKind::GoSum),
        ("list/packrat.list", InputKind::PackratList),
    ] {
        let text = std::fs::read_to_string(fixture(rel)).unwrap();
        assert_eq!(kind("input.txt", &text).unwrap(), expected, "{rel}");
    }
}

#[test]
fn name_and_content_must_agree() {
    let err = kind("package-lock.json", "lockfileVersion: '9.0'\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "package-lock.json: named like an npm package-lock.json but the content looks like a pnpm-lock.yaml"
    );
    let err = kind("go.sum", "module m\n").unwrap_err();
    assert!(err.to_string().contains("named like a go.sum"), "{err}");
}

#[test]
fn unknown_input() {
    let err = kind("notes.txt", "hello\n").unwrap_err();
    assert!(matches!(err, ParseError::Format { .. }));
    assert!(
        err.to_string()
            .starts_with("notes.txt: unknown input: expected package-lock.json"),
        "{err}"
    );
}

#[test]
fn byte_order_mark_is_ignored() {
    let text = "\u{feff}{\"lockfileVersion\": 3, \"packages\": {\"node_modules/a\": {\"version\": \"1.0.0\"}}}";
    assert_eq!(kind("x.json", text).unwrap(), InputKind::PackageLock);
    let parsed = crate::sync::parse_str(InputKind::PackageLock, text, "x.json").unwrap();
    assert_eq!(npm_ids(&parsed), ["a@1.0.0"]);
}

#[test]
fn parse_path_reports_a_missing_file() {
    let err = parse_path(&fixture("nowhere/package-lock.json")).unwrap_err();
    assert!(matches!(err, ParseError::Read { .. }));
    assert!(err.origin().ends_with("nowhere/package-lock.json"));
    assert!(err.to_string().contains("cannot read the file"), "{err}");
}

#[test]
fn parse_path_on_every_fixture() {
    for rel in [
        "npm-v1/package-lock.json",
        "npm-v2/package-lock.json",
        "npm-v3/package-lock.json",
        "npm-shrinkwrap/npm-shrinkwrap.json",
        "yarn-classic/yarn.lock",
        "yarn-berry/yarn.lock",
        "pnpm-v5/pnpm-lock.yaml",
        "pnpm-v6/pnpm-lock.yaml",
        "pnpm-v9/pnpm-lock.yaml",
        "go-app/go.mod",
        "go-app/go.sum",
        "go-nosum/go.mod",
        "list/packrat.list",
    ] {
        let parsed = parse_fixture(rel);
        assert!(!parsed.items.is_empty(), "{rel}");
    }
}
