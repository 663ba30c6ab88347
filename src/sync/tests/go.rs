//! go.mod and go.sum.

use super::*;
use crate::sync::{parse_str, InputKind};

fn go_items(parsed: &Parsed) -> Vec<(String, String, bool)> {
    parsed
        .items
        .iter()
        .map(|item| match item {
            Item::Go {
                module,
                version,
                mod_only,
                project,
            } => {
                assert_eq!(*project, None);
                (module.clone(), version.clone(), *mod_only)
            }
            other => panic!("not a Go item: {other:?}"),
        })
        .collect()
}

fn has(items: &[(String, String, bool)], module: &str, version: &str, mod_only: bool) -> bool {
    items
        .iter()
        .any(|(m, v, o)| m == module && v == version && *o == mod_only)
}

#[test]
fn go_mod_alone_with_replacements() {
    let parsed = parse_str(
        InputKind::GoMod,
        &std::fs::read_to_string(fixture("go-app/go.mod")).unwrap(),
        "go.mod",
    )
    .unwrap();
    let items = go_items(&parsed);
    assert_eq!(items.len(), 13, "{items:#?}");
    assert!(items.iter().all(|(_, _, mod_only)| !mod_only));
    // upper case kept, /vN majors, a pseudo-version, a quoted path
    assert!(has(&items, "github.com/BurntSushi/toml", "v1.3.2", false));
    assert!(has(
        &items,
        "github.com/Masterminds/semver/v3",
        "v3.2.1",
        false
    ));
    assert!(has(
        &items,
        "gitlab.example.com/acme/auth/v2",
        "v2.1.0",
        false
    ));
    assert!(has(
        &items,
        "gitlab.example.com/acme/Legacy-Client",
        "v0.0.0-20230915083012-4f2a1b3c5d6e",
        false
    ));
    // indirect requirements too
    assert!(has(&items, "golang.org/x/text", "v0.14.0", false));
    // replaced by another module version
    assert!(has(
        &items,
        "github.com/acme-forks/errors",
        "v0.9.2-acme.1",
        false
    ));
    assert!(!items.iter().any(|(m, _, _)| m == "github.com/pkg/errors"));
    // replaced by a local directory
    assert!(!items.iter().any(|(m, _, _)| m.ends_with("internal-tools")));
    // `exclude` names nothing to fetch
    assert!(!has(&items, "golang.org/x/net", "v0.17.0", false));
    assert_eq!(parsed.skipped.len(), 1);
    assert_eq!(
        skipped(&parsed, "gitlab.example.com/acme/internal-tools v0.3.0").reason,
        "replaced by the local directory ../internal-tools (line 29): local source"
    );
}

#[test]
fn go_mod_path_reads_the_neighbouring_go_sum() {
    let parsed = parse_fixture("go-app/go.mod");
    let items = go_items(&parsed);
    // 14 module versions with zips, 8 with only their go.mod; the empty-go.mod line dropped
    assert_eq!(items.len(), 22, "{items:#?}");
    assert_eq!(items.iter().filter(|(_, _, o)| *o).count(), 8);
    assert!(has(&items, "github.com/davecgh/go-spew", "v1.1.1", false));
    assert!(has(&items, "github.com/stretchr/testify", "v1.8.4", true));
    assert!(has(&items, "golang.org/x/text", "v0.14.0", false));
    assert!(has(&items, "golang.org/x/text", "v0.13.0", true));
    assert!(has(
        &items,
        "gitlab.example.com/acme/lib",
        "v1.5.0-RC1",
        true
    ));
    assert!(!items.iter().any(|(m, _, _)| m == "github.com/old/thing"));
    // the local replacement is still reported
    assert_eq!(parsed.skipped.len(), 1);
}

#[test]
fn go_sum_alone_dedupes_zip_and_mod_lines() {
    let parsed = parse_fixture("go-app/go.sum");
    let items = go_items(&parsed);
    assert_eq!(items.len(), 22);
    assert_eq!(
        items
            .iter()
            .filter(|(m, v, _)| m == "github.com/BurntSushi/toml" && v == "v1.3.2")
            .count(),
        1
    );
    assert!(parsed.skipped.is_empty());
}

#[test]
fn go_mod_only_then_zip_line_in_either_order() {
    let text = "example.com/a v1.0.0/go.mod h1:AAAA\nexample.com/a v1.0.0 h1:BBBB\nexample.com/b v1.0.0/go.mod h1:CCCC\n";
    let parsed = parse_str(InputKind::GoSum, text, "go.sum").unwrap();
    assert_eq!(
        go_items(&parsed),
        [
            ("example.com/a".to_owned(), "v1.0.0".to_owned(), false),
            ("example.com/b".to_owned(), "v1.0.0".to_owned(), true),
        ]
    );
}

#[test]
fn version_specific_replace_wins_without_go_sum() {
    let parsed = parse_fixture("go-nosum/go.mod");
    let items = go_items(&parsed);
    assert_eq!(
        items,
        [
            (
                "gitlab.example.com/acme/lib".to_owned(),
                "v1.4.1".to_owned(),
                false
            ),
            (
                "github.com/BurntSushi/toml".to_owned(),
                "v1.3.2".to_owned(),
                false
            ),
            (
                "gitlab.example.com/acme/auth/v2".to_owned(),
                "v2.1.0".to_owned(),
                false
            ),
        ]
    );
    assert!(parsed.skipped.is_empty());
}

#[test]
fn go_mod_errors_name_the_line() {
    let cases = [
        (
            "module m\n\nrequrie example.com/a v1.0.0\n",
            3,
            "unknown directive \"requrie\"",
        ),
        (
            "module m\nrequire example.com/a\n",
            2,
            "usage: require MODULE VERSION",
        ),
        (
            "module m\nrequire (\n\texample.com/a 1.0.0\n)\n",
            3,
            "invalid version \"1.0.0\"",
        ),
        (
            "module m\nreplace example.com/a => example.com/b\n",
            2,
            "must be a local directory",
        ),
        (
            "module m\nreplace example.com/a v1.0.0\n",
            2,
            "usage: replace",
        ),
        (
            "module m\nrequire \"example.com/a v1.0.0\n",
            2,
            "unterminated quoted string",
        ),
    ];
    for (text, line, reason) in cases {
        let err = parse_str(InputKind::GoMod, text, "api/go.mod").unwrap_err();
        assert_eq!(err.line(), Some(line), "{text:?}: {err}");
        assert!(
            err.to_string().starts_with(&format!("api/go.mod:{line}: ")),
            "{err}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
    let err = parse_str(
        InputKind::GoMod,
        "module m\nrequire (\n\texample.com/a v1.0.0\n",
        "go.mod",
    )
    .unwrap_err();
    assert!(err.to_string().contains("unterminated block"), "{err}");
}

#[test]
fn go_mod_comments_blocks_and_windows_replacements() {
    let text = "module m // the main module\n\nrequire (\n\texample.com/a v1.0.0 // indirect\n\t// a comment line\n)\nreplace example.com/a => C:\\src\\a\n";
    let parsed = parse_str(InputKind::GoMod, text, "go.mod").unwrap();
    assert!(parsed.items.is_empty());
    assert!(skipped(&parsed, "example.com/a v1.0.0")
        .reason
        .contains("C:\\src\\a"));
}

#[test]
fn go_sum_errors_name_the_line() {
    let text = "example.com/a v1.0.0 h1:AAAA\nexample.com/b v1.0.0\n";
    let err = parse_str(InputKind::GoSum, text, "go.sum").unwrap_err();
    assert_eq!(
        err.to_string(),
        "go.sum:2: malformed go.sum line: expected MODULE VERSION HASH, found 2 fields"
    );
    let err = parse_str(InputKind::GoSum, "example.com/a 1.0.0 h1:AAAA\n", "go.sum").unwrap_err();
    assert_eq!(err.line(), Some(1));
    let err = parse_str(InputKind::GoSum, "example.com/a v1.0.0 AAAA\n", "go.sum").unwrap_err();
    assert!(err.to_string().contains("malformed hash"), "{err}");
}
