//! pnpm-lock.yaml v5.x, v6 and v9.

use super::*;
use crate::sync::{parse_str, InputKind};

#[test]
fn v5_keys_and_peer_suffixes() {
    let parsed = parse_fixture("pnpm-v5/pnpm-lock.yaml");
    let ids = npm_ids(&parsed);
    assert_eq!(ids.len(), 14, "{ids:#?}");
    for id in [
        "@acme/ui@1.1.0",         // /@acme/ui/1.1.0_react@18.2.0
        "@types/react@18.2.45",   // scoped, no suffix
        "react-dom@18.2.0",       // _react@18.2.0
        "with-scoped-peer@2.1.0", // hashed suffix
        "zustand@4.4.7",          // _@types+react@18.2.45+react@18.2.0
        "use-sync-external-store@1.2.0",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id}");
    }
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
    let (integrity, resolved) = npm(&parsed, "react", "18.2.0");
    assert!(integrity.unwrap().starts_with("sha512-"));
    assert_eq!(resolved, None);
}

#[test]
fn v5_skips_file_git_and_link() {
    let parsed = parse_fixture("pnpm-v5/pnpm-lock.yaml");
    assert_eq!(parsed.skipped.len(), 3, "{:#?}", parsed.skipped);
    assert_eq!(
        skipped(&parsed, "file:vendor/vendored-2.0.0.tgz").reason,
        "local file dependency (file:vendor/vendored-2.0.0.tgz): not in any registry"
    );
    assert!(skipped(
        &parsed,
        "github.com/example/tiny-tool/0f3e2d1c4b5a69788796a5b4c3d2e1f0a9b8c7d6"
    )
    .reason
    .starts_with("git dependency (https://codeload.github.com/"));
    assert!(skipped(&parsed, ".: local-helpers")
        .reason
        .starts_with("link to the local folder ../local-helpers"));
}

#[test]
fn v6_keys_importers_and_git_directory_resolutions() {
    let parsed = parse_fixture("pnpm-v6/pnpm-lock.yaml");
    let ids = npm_ids(&parsed);
    assert_eq!(ids.len(), 9, "{ids:#?}");
    for id in [
        "@acme/ui@1.1.0",
        "react-dom@18.2.0",
        "lodash@3.10.1",
        "typescript@5.3.3",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id}");
    }
    assert_eq!(
        npm(&parsed, "@acme/core", "2.0.3").1,
        Some(&gitlab(
            "/api/v4/projects/acme%2Fweb/packages/npm/@acme/core/-/@acme/core-2.0.3.tgz"
        ))
    );
    assert_eq!(
        npm(&parsed, "@acme/ui", "1.1.0").1,
        Some(&gitlab(
            "/api/v4/groups/acme/-/packages/npm/@acme/ui/-/@acme/ui-1.1.0.tgz"
        ))
    );
    assert_eq!(parsed.skipped.len(), 4, "{:#?}", parsed.skipped);
    assert_eq!(
        skipped(
            &parsed,
            "@gitlab.example.com+acme/forked-lib/4c1d7e0b2f6a9e8d3c5b7a1f0e2d4c6b8a9f1e3d"
        )
        .reason,
        "git dependency (https://gitlab.example.com/acme/forked-lib.git#4c1d7e0b2f6a9e8d3c5b7a1f0e2d4c6b8a9f1e3d): \
         fetched from a git host, not a registry"
    );
    assert_eq!(
        skipped(&parsed, "file:../../local-helpers").reason,
        "local directory dependency (../../local-helpers): local source"
    );
    assert!(skipped(&parsed, "packages/app: @acme/shared")
        .reason
        .contains("../shared"));
}

#[test]
fn v9_packages_without_peer_suffixes_and_snapshots_ignored() {
    let parsed = parse_fixture("pnpm-v9/pnpm-lock.yaml");
    let ids = npm_ids(&parsed);
    assert_eq!(ids.len(), 9, "{ids:#?}");
    assert_eq!(
        npm(&parsed, "@acme/core", "2.0.3").1,
        Some(&gitlab(
            "/api/v4/packages/npm/@acme/core/-/@acme/core-2.0.3.tgz"
        ))
    );
    assert!(ids.contains(&"lodash@3.10.1".to_owned()));
    assert_eq!(parsed.skipped.len(), 4, "{:#?}", parsed.skipped);
    assert!(skipped(
        &parsed,
        "forked-lib@git+https://gitlab.example.com/acme/forked-lib.git#4c1d7e0b2f6a9e8d3c5b7a1f0e2d4c6b8a9f1e3d"
    )
    .reason
    .starts_with("git dependency"));
    assert!(skipped(&parsed, "vendored@file:vendor/vendored-2.0.0.tgz")
        .reason
        .starts_with("local file dependency"));
    assert!(skipped(
        &parsed,
        "tiny-tool@https://codeload.github.com/example/tiny-tool/tar.gz/0f3e2d1c4b5a69788796a5b4c3d2e1f0a9b8c7d6"
    )
    .reason
    .starts_with("git dependency"));
    assert!(skipped(&parsed, ".: @acme/tooling")
        .reason
        .starts_with("link to the local folder packages/tooling"));
}

#[test]
fn v6_peer_suffix_with_scoped_peers() {
    let text = "lockfileVersion: '6.1'\n\npackages:\n\n  /@tanstack/react-query@5.8.4(@types/react@18.2.45)(react@18.2.0):\n    resolution: {integrity: sha512-x}\n";
    let parsed = parse_str(InputKind::Pnpm, text, "pnpm-lock.yaml").unwrap();
    assert_eq!(npm_ids(&parsed), ["@tanstack/react-query@5.8.4"]);
}

#[test]
fn unsupported_or_missing_lockfile_version() {
    let err = parse_str(
        InputKind::Pnpm,
        "lockfileVersion: '7.0'\n",
        "pnpm-lock.yaml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pnpm-lock.yaml: pnpm lockfileVersion 7.0 is not supported (packrat reads 5.x, 6.x and 9.x)"
    );
    let err = parse_str(InputKind::Pnpm, "packages: {}\n", "pnpm-lock.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "pnpm-lock.yaml: not a pnpm lockfile: no lockfileVersion"
    );
    let err = parse_str(
        InputKind::Pnpm,
        "lockfileVersion: '9.0'\npackages: [1]\n",
        "p.yaml",
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "p.yaml: packages: expected a mapping");
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let text =
        "lockfileVersion: '9.0'\n\npackages:\n  a@1.0.0:\n    resolution: {integrity: sha512-x\n";
    let err = parse_str(InputKind::Pnpm, text, "pnpm-lock.yaml").unwrap_err();
    assert!(err.line().is_some(), "{err}");
    assert!(err.to_string().starts_with("pnpm-lock.yaml:"), "{err}");
}
