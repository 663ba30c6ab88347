//! package-lock.json / npm-shrinkwrap.json, lockfile v1, v2 and v3.

use super::*;
use crate::sync::{parse_str, InputKind, ParseError};

const GITLAB_UI_110: &str = "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz";

#[test]
fn v3_counts_every_registry_package_once() {
    let parsed = parse_fixture("npm-v3/package-lock.json");
    // 58 registry-shaped entries: 4 are git/file/remote tarballs, and ms@2.1.3 appears at
    // two install folders.
    assert_eq!(parsed.items.len(), 53, "{:#?}", npm_ids(&parsed));
    assert_eq!(parsed.skipped.len(), 8, "{:#?}", parsed.skipped);
    let ids = npm_ids(&parsed);
    assert_eq!(ids.iter().filter(|id| *id == "ms@2.1.3").count(), 1);
    assert!(ids.contains(&"ms@2.0.0".to_owned()));
    assert!(ids.contains(&"express@4.18.2".to_owned()));
}

#[test]
fn v3_maps_gitlab_and_packrat_urls_to_api_paths() {
    let parsed = parse_fixture("npm-v3/package-lock.json");
    // GitLab's project route.
    assert_eq!(
        npm(&parsed, "@acme/ui", "1.1.0").1,
        Some(&gitlab(GITLAB_UI_110))
    );
    // packrat's instance, project and group routes: the host does not matter.
    assert_eq!(
        npm(&parsed, "@acme/core", "2.0.3").1,
        Some(&gitlab(
            "/api/v4/packages/npm/@acme/core/-/@acme/core-2.0.3.tgz"
        ))
    );
    assert_eq!(
        npm(&parsed, "@acme/icons", "3.2.1").1,
        Some(&gitlab(
            "/api/v4/projects/42/packages/npm/@acme/icons/-/@acme/icons-3.2.1.tgz"
        ))
    );
    assert_eq!(
        npm(&parsed, "@acme/theme", "0.4.0").1,
        Some(&gitlab(
            "/api/v4/groups/acme/-/packages/npm/@acme/theme/-/@acme/theme-0.4.0.tgz"
        ))
    );
    assert_eq!(
        npm(&parsed, "express", "4.18.2").1,
        Some(&public(
            "https://registry.npmjs.org/express/-/express-4.18.2.tgz"
        ))
    );
}

#[test]
fn v3_carries_integrity() {
    let parsed = parse_fixture("npm-v3/package-lock.json");
    let (integrity, _) = npm(&parsed, "express", "4.18.2");
    let integrity = integrity.expect("integrity");
    assert!(integrity.starts_with("sha512-") && integrity.ends_with("=="));
}

#[test]
fn v3_aliases_resolve_to_the_real_name() {
    let parsed = parse_fixture("npm-v3/package-lock.json");
    let ids = npm_ids(&parsed);
    // node_modules/string-width-cjs is string-width@4.2.3; node_modules/ui-legacy is @acme/ui.
    assert!(ids.contains(&"string-width@4.2.3".to_owned()));
    assert!(ids.contains(&"string-width@5.1.2".to_owned()));
    assert_eq!(
        npm(&parsed, "@acme/ui", "0.9.0").1,
        Some(&gitlab(
            "/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-0.9.0.tgz"
        ))
    );
    assert!(!ids
        .iter()
        .any(|id| id.starts_with("string-width-cjs@") || id.starts_with("ui-legacy@")));
}

#[test]
fn v3_nested_and_workspace_member_dependencies_are_included() {
    let parsed = parse_fixture("npm-v3/package-lock.json");
    let ids = npm_ids(&parsed);
    // node_modules/send/node_modules/ms and packages/app/node_modules/@acme/ui
    assert!(ids.contains(&"ms@2.1.3".to_owned()));
    assert!(ids.contains(&"@acme/ui@2.0.0".to_owned()));
    assert!(ids.contains(&"@acme/ui@1.1.0".to_owned()));
    // dev, optional and peer entries are mirrored too
    for id in [
        "fsevents@2.3.3",
        "typescript@5.3.3",
        "react@18.2.0",
        "js-tokens@4.0.0",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id}");
    }
    // workspace members and linked folders are local source, never items
    assert!(!ids.iter().any(|id| id.starts_with("@acme/app@")
        || id.starts_with("@acme/shared@")
        || id.starts_with("local-helpers@")));
}

#[test]
fn v3_reports_links_git_file_remote_and_bundled_entries() {
    let parsed = parse_fixture("npm-v3/package-lock.json");
    let app = skipped(&parsed, "node_modules/@acme/app");
    assert_eq!(app.reason, "workspace link to packages/app: local source");
    assert!(skipped(&parsed, "node_modules/@acme/shared")
        .reason
        .contains("packages/shared"));
    let local = skipped(&parsed, "node_modules/local-helpers");
    assert!(
        local.reason.contains("../local-helpers"),
        "{}",
        local.reason
    );
    assert!(
        local.reason.contains("file: dependency"),
        "{}",
        local.reason
    );

    let git = skipped(&parsed, "node_modules/tiny-tool");
    assert!(git
        .reason
        .starts_with("git dependency (git+ssh://git@github.com/example/tiny-tool.git#"));
    assert!(skipped(&parsed, "node_modules/forked-lib")
        .reason
        .starts_with("git dependency"));
    let file = skipped(&parsed, "node_modules/vendored");
    assert_eq!(
        file.reason,
        "local file dependency (file:vendor/vendored-2.0.0.tgz): not in any registry"
    );
    assert!(skipped(&parsed, "node_modules/legacy-tarball")
        .reason
        .starts_with(
            "remote tarball URL (https://downloads.example.com/legacy-tarball-0.3.0.tgz)"
        ));
    assert!(
        skipped(&parsed, "node_modules/bundle-demo/node_modules/inner-dep")
            .reason
            .starts_with("bundled")
    );
    // The root and the workspace folders' own entries are not reported.
    for entry in ["", "packages/app", "packages/shared", "../local-helpers"] {
        assert!(!parsed.skipped.iter().any(|s| s.entry == entry), "{entry}");
    }
}

#[test]
fn v2_reads_packages_with_nesting_aliases_and_encoded_project_paths() {
    let parsed = parse_fixture("npm-v2/package-lock.json");
    assert_eq!(parsed.items.len(), 14, "{:#?}", npm_ids(&parsed));
    assert_eq!(parsed.skipped.len(), 1);
    assert!(skipped(&parsed, "node_modules/tiny-tool")
        .reason
        .starts_with("git dependency"));
    let ids = npm_ids(&parsed);
    for id in ["ms@2.1.2", "ms@2.1.3", "lodash@4.17.21", "lodash@3.10.1"] {
        assert!(ids.contains(&id.to_owned()), "{id}");
    }
    // A packrat URL naming the project by its encoded path keeps it as written.
    assert_eq!(
        npm(&parsed, "@acme/core", "2.0.3").1,
        Some(&gitlab(
            "/api/v4/projects/acme%2Fweb/packages/npm/@acme/core/-/@acme/core-2.0.3.tgz"
        ))
    );
}

#[test]
fn v2_prefers_packages_over_dependencies() {
    let text = r#"{
      "lockfileVersion": 2,
      "packages": {
        "": {"name": "x"},
        "node_modules/a": {"version": "1.0.0", "resolved": "https://registry.npmjs.org/a/-/a-1.0.0.tgz"}
      },
      "dependencies": {
        "a": {"version": "1.0.0"},
        "only-in-the-v1-section": {"version": "9.9.9"}
      }
    }"#;
    let parsed = parse_str(InputKind::PackageLock, text, "package-lock.json").unwrap();
    assert_eq!(npm_ids(&parsed), ["a@1.0.0"]);
}

#[test]
fn v1_walks_the_nested_tree() {
    let parsed = parse_fixture("npm-v1/package-lock.json");
    let ids = npm_ids(&parsed);
    assert_eq!(ids.len(), 11, "{ids:#?}");
    for id in [
        "@acme/core@1.8.0",
        "@acme/ui@0.9.0",
        "debug@3.2.7",
        "ms@2.0.0",
        "ms@2.1.3",
        "semver@5.7.2",
        "semver@6.3.1",
        "webpack-demo@4.46.0",
        "node-pre-gyp-demo@0.14.0",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id}");
    }
    assert_eq!(
        npm(&parsed, "@acme/core", "1.8.0").1,
        Some(&gitlab(
            "/api/v4/packages/npm/@acme/core/-/@acme/core-1.8.0.tgz"
        ))
    );
}

#[test]
fn v1_alias_in_version() {
    let parsed = parse_fixture("npm-v1/package-lock.json");
    assert_eq!(
        npm(&parsed, "left-pad", "1.1.3").1,
        Some(&public(
            "https://registry.npmjs.org/left-pad/-/left-pad-1.1.3.tgz"
        ))
    );
    assert!(!npm_ids(&parsed)
        .iter()
        .any(|id| id.starts_with("left-pad-legacy")));
}

#[test]
fn v1_reports_git_file_and_bundled_entries_by_install_folder() {
    let parsed = parse_fixture("npm-v1/package-lock.json");
    assert_eq!(parsed.skipped.len(), 6, "{:#?}", parsed.skipped);
    assert!(skipped(&parsed, "node_modules/tiny-tool")
        .reason
        .starts_with("git dependency (github:example/tiny-tool#"));
    assert!(skipped(&parsed, "node_modules/forked-lib")
        .reason
        .starts_with("git dependency (git+https://gitlab.example.com/acme/forked-lib.git#"));
    assert_eq!(
        skipped(&parsed, "node_modules/local-helpers").reason,
        "local file dependency (file:../local-helpers): not in any registry"
    );
    assert!(skipped(&parsed, "node_modules/vendored")
        .reason
        .starts_with("local file dependency"));
    for nested in ["nopt", "abbrev"] {
        let entry = format!("node_modules/node-pre-gyp-demo/node_modules/{nested}");
        assert!(
            skipped(&parsed, &entry).reason.starts_with("bundled"),
            "{entry}"
        );
    }
}

#[test]
fn shrinkwrap_without_resolved_fields() {
    let parsed = parse_fixture("npm-shrinkwrap/npm-shrinkwrap.json");
    assert_eq!(
        npm_ids(&parsed),
        ["@acme/core@2.0.3", "commander@11.1.0", "kleur@4.1.5"]
    );
    let (integrity, resolved) = npm(&parsed, "commander", "11.1.0");
    assert!(integrity.is_some());
    assert_eq!(resolved, None);
    assert!(parsed.skipped.is_empty());
}

#[test]
fn entry_without_version_is_reported() {
    let text = r#"{"lockfileVersion": 3, "packages": {"node_modules/odd": {"resolved": "https://registry.npmjs.org/odd/-/odd-1.0.0.tgz"}}}"#;
    let parsed = parse_str(InputKind::PackageLock, text, "x.json").unwrap();
    assert!(parsed.items.is_empty());
    assert_eq!(
        skipped(&parsed, "node_modules/odd").reason,
        "no version in the lockfile entry"
    );
}

#[test]
fn invalid_json_names_the_line() {
    let text = "{\n  \"lockfileVersion\": 3,\n  \"packages\": {\n    \"node_modules/a\": {\"version\": 1.0.0}\n  }\n}\n";
    let err = parse_str(InputKind::PackageLock, text, "web/package-lock.json").unwrap_err();
    assert_eq!(err.line(), Some(4));
    let message = err.to_string();
    assert!(
        message.starts_with("web/package-lock.json:4: invalid JSON at column"),
        "{message}"
    );
}

#[test]
fn unsupported_lockfile_version() {
    let err = parse_str(
        InputKind::PackageLock,
        r#"{"lockfileVersion": 4, "packages": {}}"#,
        "p.json",
    )
    .unwrap_err();
    assert!(matches!(err, ParseError::Format { .. }));
    assert_eq!(
        err.to_string(),
        "p.json: lockfileVersion 4 is not supported (packrat reads 1, 2 and 3)"
    );
}

#[test]
fn v3_without_packages_is_an_error() {
    let err = parse_str(
        InputKind::PackageLock,
        r#"{"lockfileVersion": 3}"#,
        "p.json",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("without a \"packages\" object"),
        "{err}"
    );
}

#[test]
fn wrong_types_name_the_entry() {
    let text = r#"{"lockfileVersion": 3, "packages": {"node_modules/a": {"version": 1}}}"#;
    let err = parse_str(InputKind::PackageLock, text, "p.json").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"p.json: packages["node_modules/a"].version: expected a string, found 1"#
    );
    let text = r#"{"lockfileVersion": 1, "dependencies": {"a": {"version": "npm:oops"}}}"#;
    let err = parse_str(InputKind::PackageLock, text, "p.json").unwrap_err();
    assert!(
        err.to_string().contains(r#"dependencies["a"].version"#),
        "{err}"
    );
    let err = parse_str(InputKind::PackageLock, "[1, 2]", "p.json").unwrap_err();
    assert!(err.to_string().contains("not a JSON object"), "{err}");
}

/// Written by the real npm 11 (`npm install --package-lock-only --offline`, with
/// `--lockfile-version 2` for v2) for a workspace project with a `file:` folder and a
/// `file:` tarball dependency: nothing in it comes from a registry.
#[test]
fn real_npm_output_workspaces_and_file_dependencies() {
    for rel in [
        "npm-real-v2/package-lock.json",
        "npm-real-v3/package-lock.json",
    ] {
        let parsed = parse_fixture(rel);
        assert!(parsed.items.is_empty(), "{rel}: {:#?}", parsed.items);
        let entries: Vec<&str> = parsed.skipped.iter().map(|s| s.entry.as_str()).collect();
        assert_eq!(
            entries,
            [
                "node_modules/@acme/app",
                "node_modules/@acme/lib",
                "node_modules/ext",
                "node_modules/tb"
            ],
            "{rel}"
        );
        assert_eq!(
            skipped(&parsed, "node_modules/ext").reason,
            "link to the local folder ../wsx-ext (a file: dependency): local source"
        );
        assert_eq!(
            skipped(&parsed, "node_modules/tb").reason,
            "local file dependency (file:tb-1.0.0.tgz): not in any registry"
        );
    }
}
