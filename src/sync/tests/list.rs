//! packrat.list.

use super::*;
use crate::config::ProjectRef;
use crate::sync::{parse_str, InputKind};

fn range(name: &str, range: &str, project: Option<ProjectRef>) -> Item {
    Item::NpmRange {
        name: name.to_owned(),
        range: range.to_owned(),
        project,
    }
}

fn go(module: &str, version: &str, project: Option<ProjectRef>) -> Item {
    Item::Go {
        module: module.to_owned(),
        version: version.to_owned(),
        mod_only: false,
        project,
    }
}

fn path(p: &str) -> ProjectRef {
    ProjectRef::Path(p.to_owned())
}

#[test]
fn fixture_entries() {
    let parsed = parse_fixture("list/packrat.list");
    assert_eq!(
        parsed.items,
        [
            range("@acme/ui", "^2", Some(ProjectRef::Id(42))),
            range("@acme/core", "2.0.3", Some(path("acme/platform/core"))),
            range("left-pad", "1.3.0", None),
            range("react", ">=18.2.0 <19", None),
            range("typescript", "latest", None),
            go(
                "gitlab.example.com/acme/lib",
                "v1.4.0",
                Some(ProjectRef::Id(42))
            ),
            go(
                "gitlab.example.com/acme/auth/v2",
                "v2.1.0",
                Some(path("acme/auth"))
            ),
            go("github.com/BurntSushi/toml", "v1.3.2", None),
            Item::Packages {
                project: ProjectRef::Id(42)
            },
            Item::Packages {
                project: path("acme/web")
            },
        ]
    );
    assert!(parsed.skipped.is_empty());
}

#[test]
fn multi_word_ranges_stop_at_options() {
    let parsed = parse_str(
        InputKind::PackratList,
        "npm @acme/ui@1.x || 2.x project=acme%2Fweb\nnpm a@1.2.3 - 2.3.4\n",
        "packrat.list",
    )
    .unwrap();
    assert_eq!(
        parsed.items,
        [
            range("@acme/ui", "1.x || 2.x", Some(path("acme/web"))),
            range("a", "1.2.3 - 2.3.4", None),
        ]
    );
}

#[test]
fn go_escaped_paths_are_decoded_and_duplicates_dropped() {
    let parsed = parse_str(
        InputKind::PackratList,
        "go github.com/!burnt!sushi/toml@v1.3.2\ngo github.com/BurntSushi/toml@v1.3.2\npackages project=7\npackages project=7\n",
        "packrat.list",
    )
    .unwrap();
    assert_eq!(
        parsed.items,
        [
            go("github.com/BurntSushi/toml", "v1.3.2", None),
            Item::Packages {
                project: ProjectRef::Id(7)
            },
        ]
    );
}

#[test]
fn bad_lines_name_file_line_and_reason() {
    let cases = [
        (
            "pip requests==2.31\n",
            "unknown entry type \"pip\": expected npm, go or packages",
        ),
        ("npm @acme/ui\n", "npm @acme/ui: no version or range"),
        ("npm left-pad@\n", "empty version or range"),
        ("npm @acme@1.0.0\n", "a scoped name is @scope/name"),
        ("npm a@1.0.0 projct 42\n", "unexpected \"projct\""),
        (
            "npm a@1.0.0 proj=42\n",
            "unknown option \"proj\": the only option is project=ID_OR_PATH",
        ),
        (
            "npm a@1.0.0 project=42 project=43\n",
            "project= given twice",
        ),
        ("npm a@1.0.0 project=0\n", "invalid project id 0"),
        (
            "npm a@file:../a\n",
            "only registry versions, ranges and dist-tags",
        ),
        ("npm\n", "npm needs a package"),
        (
            "go gitlab.example.com/acme/lib\n",
            "no version; write gitlab.example.com/acme/lib@vX.Y.Z",
        ),
        (
            "go gitlab.example.com/acme/lib@1.4.0\n",
            "invalid version \"1.4.0\"",
        ),
        (
            "go github.com/!Burnt/toml@v1.0.0\n",
            "mixes '!'-escaping and upper case",
        ),
        ("packages\n", "packages needs a project"),
        ("packages project=\n", "invalid project"),
    ];
    for (line, reason) in cases {
        let text = format!("# header\n\n{line}");
        let err = parse_str(InputKind::PackratList, &text, "ops/packrat.list").unwrap_err();
        assert_eq!(err.line(), Some(3), "{line:?}: {err}");
        let message = err.to_string();
        assert!(message.starts_with("ops/packrat.list:3: "), "{message}");
        assert!(message.contains(reason), "{line:?}: {message}");
    }
}

#[test]
fn comments_and_blank_lines() {
    let parsed = parse_str(
        InputKind::PackratList,
        "   \n# all comment\n\tnpm a@1.0.0\t# trailing\n",
        "packrat.list",
    )
    .unwrap();
    assert_eq!(parsed.items, [range("a", "1.0.0", None)]);
}
