//! yarn.lock, classic and berry.

use super::*;
use crate::sync::{parse_str, InputKind};

#[test]
fn classic_fixture() {
    let parsed = parse_fixture("yarn-classic/yarn.lock");
    let ids = npm_ids(&parsed);
    // 20 entries: 4 are git, github, link and file; string-width@4.2.3 appears twice.
    assert_eq!(ids.len(), 15, "{ids:#?}");
    assert_eq!(parsed.skipped.len(), 4, "{:#?}", parsed.skipped);
    for id in [
        "@acme/ui@1.1.0",
        "debug@2.6.9",
        "debug@4.3.4",
        "ms@2.0.0",
        "ms@2.1.2",
        "string-width@4.2.3",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id}");
    }
}

#[test]
fn classic_resolved_urls_lose_their_sha1_fragment() {
    let parsed = parse_fixture("yarn-classic/yarn.lock");
    assert_eq!(
        npm(&parsed, "@acme/ui", "1.1.0").1,
        Some(&gitlab(
            "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz"
        ))
    );
    assert_eq!(
        npm(&parsed, "@acme/core", "2.0.3").1,
        Some(&gitlab(
            "/api/v4/packages/npm/@acme/core/-/@acme/core-2.0.3.tgz"
        ))
    );
    assert_eq!(
        npm(&parsed, "ms", "2.0.0").1,
        Some(&public("https://registry.yarnpkg.com/ms/-/ms-2.0.0.tgz"))
    );
    assert!(npm(&parsed, "ms", "2.0.0")
        .0
        .unwrap()
        .starts_with("sha512-"));
}

#[test]
fn classic_old_entry_gets_integrity_from_the_sha1_fragment() {
    let parsed = parse_fixture("yarn-classic/yarn.lock");
    // left-pad has no integrity line; the URL ends in #9f91017edcfdab4613e8b049f09bfa7eca099821.
    assert_eq!(
        npm(&parsed, "left-pad", "1.3.0").0,
        Some("sha1-n5EBftz9q0YT6LBJ8Jv6fsoJmCE=")
    );
}

#[test]
fn classic_aliases() {
    let parsed = parse_fixture("yarn-classic/yarn.lock");
    let ids = npm_ids(&parsed);
    assert!(!ids
        .iter()
        .any(|id| id.starts_with("string-width-cjs") || id.starts_with("ui-legacy")));
    assert_eq!(
        npm(&parsed, "@acme/ui", "0.9.0").1,
        Some(&gitlab(
            "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-0.9.0.tgz"
        ))
    );
}

#[test]
fn classic_skips_git_github_link_and_file() {
    let parsed = parse_fixture("yarn-classic/yarn.lock");
    assert!(skipped(&parsed, "gh-lib@github:example/gh-lib#v1.0.0")
        .reason
        .starts_with("git dependency (github:example/gh-lib#v1.0.0)"));
    assert!(skipped(
        &parsed,
        "tiny-tool@git+ssh://git@github.com/example/tiny-tool.git#v1.0.0"
    )
    .reason
    .starts_with("git dependency"));
    assert_eq!(
        skipped(&parsed, "local-helpers@link:../local-helpers").reason,
        "link to a local folder (link:../local-helpers): not in any registry"
    );
    assert!(
        skipped(&parsed, "vendored@file:./vendor/vendored-2.0.0.tgz")
            .reason
            .starts_with("local file dependency")
    );
}

#[test]
fn classic_syntax_errors_name_the_line() {
    let text = "# yarn lockfile v1\n\nleft-pad@^1.3.0:\n  version \"1.3.0\"\nbroken line\n";
    let err = parse_str(InputKind::YarnClassic, text, "yarn.lock").unwrap_err();
    assert_eq!(err.line(), Some(5));
    assert!(
        err.to_string()
            .starts_with("yarn.lock:5: expected an entry header"),
        "{err}"
    );

    let text = "  version \"1.3.0\"\n";
    let err = parse_str(InputKind::YarnClassic, text, "yarn.lock").unwrap_err();
    assert_eq!(
        err.to_string(),
        "yarn.lock:1: indented line outside any entry"
    );

    let text = "\"a@^1:\n  version \"1.0.0\"\n";
    let err = parse_str(InputKind::YarnClassic, text, "yarn.lock").unwrap_err();
    assert_eq!(err.line(), Some(1));
    assert!(
        err.to_string().contains("unterminated quoted string"),
        "{err}"
    );
}

#[test]
fn classic_quoted_keys_and_values_and_crlf() {
    let text = "# yarn lockfile v1\r\n\r\n\"a@^1.0.0\", a@^1.1.0:\r\n  \"version\" \"1.1.0\"\r\n  resolved \"https://registry.yarnpkg.com/a/-/a-1.1.0.tgz#0123456789abcdef0123456789abcdef01234567\"\r\n  integrity sha512-abc==\r\n";
    let parsed = parse_str(InputKind::YarnClassic, text, "yarn.lock").unwrap();
    assert_eq!(npm_ids(&parsed), ["a@1.1.0"]);
    assert_eq!(npm(&parsed, "a", "1.1.0").0, Some("sha512-abc=="));
}

#[test]
fn berry_fixture() {
    let parsed = parse_fixture("yarn-berry/yarn.lock");
    let ids = npm_ids(&parsed);
    // 20 entries: 2 workspaces, 2 patches, git, portal, link, exec and file are skipped;
    // string-width@4.2.3 appears twice (once through an alias).
    assert_eq!(ids.len(), 10, "{ids:#?}");
    assert_eq!(parsed.skipped.len(), 9, "{:#?}", parsed.skipped);
    for id in [
        "@acme/ui@1.1.0",
        "fsevents@2.3.3",
        "typescript@5.3.3",
        "string-width@4.2.3",
        "js-tokens@4.0.0",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id}");
    }
}

#[test]
fn berry_archive_urls_map_to_api_paths_and_checksums_are_not_integrity() {
    let parsed = parse_fixture("yarn-berry/yarn.lock");
    assert_eq!(
        npm(&parsed, "@acme/ui", "1.1.0"),
        (
            None,
            Some(&gitlab(
                "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz"
            ))
        )
    );
    assert_eq!(
        npm(&parsed, "@acme/core", "2.0.3").1,
        Some(&gitlab(
            "/api/v4/packages/npm/@acme/core/-/@acme/core-2.0.3.tgz"
        ))
    );
    // The conventional registry URL is not written: the configured registry decides.
    assert_eq!(npm(&parsed, "react", "18.2.0"), (None, None));
}

#[test]
fn berry_skips_workspace_patch_portal_link_exec_file_and_git() {
    let parsed = parse_fixture("yarn-berry/yarn.lock");
    assert_eq!(
        skipped(&parsed, "acme-web@workspace:.").reason,
        "workspace package (workspace:.): local source"
    );
    assert!(skipped(&parsed, "@acme/app@workspace:packages/app")
        .reason
        .starts_with("workspace package"));
    let patch = skipped(
        &parsed,
        "fsevents@patch:fsevents@npm%3A2.3.3#optional!builtin<compat/fsevents>::version=2.3.3&hash=df0bf1",
    );
    assert_eq!(
        patch.reason,
        "patched package (patch:fsevents@npm%3A2.3.3#optional!builtin<compat/fsevents>): the patch is \
         applied locally; the package it patches is its own entry"
    );
    let find = |prefix: &str| {
        parsed
            .skipped
            .iter()
            .find(|s| s.entry.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}"))
            .reason
            .clone()
    };
    assert!(find("local-helpers@portal:")
        .starts_with("link to a local folder (portal:../local-helpers"));
    assert!(find("local-assets@link:").starts_with("link to a local folder (link:./assets"));
    assert!(find("generated-config@exec:").starts_with("generated by a local script"));
    assert!(find("vendored@file:").starts_with("local file dependency"));
    assert!(find("gh-lib@https://github.com/").starts_with("git dependency"));
    assert!(find("typescript@patch:").starts_with("patched package"));
}

#[test]
fn berry_needs_metadata_and_resolutions() {
    let err = parse_str(
        InputKind::YarnBerry,
        "a@npm:^1:\n  version: 1.0.0\n",
        "yarn.lock",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "yarn.lock: not a yarn berry lockfile: no __metadata entry"
    );

    let text = "__metadata:\n  version: 8\n\n\"a@npm:^1\":\n  version: 1.0.0\n";
    let err = parse_str(InputKind::YarnBerry, text, "yarn.lock").unwrap_err();
    assert_eq!(err.to_string(), "yarn.lock: a@npm:^1: no resolution");
}

#[test]
fn berry_yaml_errors_name_the_line() {
    let text = "__metadata:\n  version: 8\n\n\"a@npm:^1\":\n  version: 1.0.0\n  resolution: \"a@npm:1.0.0\n";
    let err = parse_str(InputKind::YarnBerry, text, "yarn.lock").unwrap_err();
    assert!(err.line().is_some(), "{err}");
    assert!(err.to_string().contains("invalid YAML"), "{err}");
}

#[test]
fn berry_alias_written_with_the_real_name_in_the_resolution() {
    let text = "__metadata:\n  version: 8\n\n\"alias@npm:real@^1\":\n  version: 1.2.0\n  resolution: \"alias@npm:real@1.2.0\"\n";
    let parsed = parse_str(InputKind::YarnBerry, text, "yarn.lock").unwrap();
    assert_eq!(npm_ids(&parsed), ["real@1.2.0"]);
}
