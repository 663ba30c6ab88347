//! Resolved URL mapping, Parsed::merge and Item display.

use super::*;
use crate::config::ProjectRef;
use crate::sync::{not_from_registry, resolve_url, split_name};

#[test]
fn api_path_from_any_host_without_query_or_fragment() {
    assert_eq!(
        resolve_url("https://gitlab.example.com/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"),
        Ok(gitlab("/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"))
    );
    // packrat behind a path prefix, with a port, a fragment and a query
    assert_eq!(
        resolve_url("https://mirror.example.com:8443/packrat/api/v4/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz?x=1#abc"),
        Ok(gitlab("/api/v4/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"))
    );
    assert_eq!(
        resolve_url("https://registry.yarnpkg.com/a/-/a-1.0.0.tgz#0123"),
        Ok(public("https://registry.yarnpkg.com/a/-/a-1.0.0.tgz"))
    );
    assert_eq!(
        resolve_url("https://registry.npmjs.org/@types/node/-/node-20.10.0.tgz"),
        Ok(public(
            "https://registry.npmjs.org/@types/node/-/node-20.10.0.tgz"
        ))
    );
}

#[test]
fn non_registry_sources() {
    for (spec, start) in [
        ("git+ssh://git@github.com/a/b.git#abc", "git dependency"),
        ("git://github.com/a/b.git", "git dependency"),
        ("github:a/b", "git dependency"),
        ("gitlab:a/b", "git dependency"),
        ("https://github.com/a/b.git#commit=abc", "git dependency"),
        (
            "https://codeload.github.com/a/b/tar.gz/abc",
            "git dependency",
        ),
        (
            "https://gitlab.example.com/a/b/-/archive/v1.0/b-v1.0.tar.gz",
            "git dependency",
        ),
        ("file:../a", "local file dependency"),
        ("link:../a", "link to a local folder"),
        ("workspace:*", "workspace package"),
        ("../a", "local path dependency"),
        ("~/src/a", "local path dependency"),
        ("https://example.com/a-1.0.0.tgz", "remote tarball URL"),
    ] {
        let reason = not_from_registry(spec).unwrap_or_else(|| panic!("{spec}"));
        assert!(reason.starts_with(start), "{spec}: {reason}");
        assert!(resolve_url(spec).is_err(), "{spec}");
    }
    for spec in ["1.0.0", "^1.2", "~0.4.0", "latest", "npm:a@1", ">=1 <2"] {
        assert_eq!(not_from_registry(spec), None, "{spec}");
    }
}

#[test]
fn names_split_after_the_scope() {
    assert_eq!(split_name("@acme/ui@^1"), Some(("@acme/ui", "^1")));
    assert_eq!(split_name("left-pad@1.3.0"), Some(("left-pad", "1.3.0")));
    assert_eq!(split_name("a@npm:b@1"), Some(("a", "npm:b@1")));
    assert_eq!(split_name("@acme/ui"), None);
    assert_eq!(split_name(""), None);
}

#[test]
fn merge_dedupes_and_completes() {
    let mut first = Parsed {
        items: vec![
            Item::Npm {
                name: "a".into(),
                version: "1.0.0".into(),
                integrity: None,
                resolved: None,
            },
            Item::Go {
                module: "m".into(),
                version: "v1.0.0".into(),
                mod_only: true,
                project: None,
            },
        ],
        skipped: vec![Skipped {
            entry: "x".into(),
            reason: "y".into(),
        }],
    };
    first.merge(Parsed {
        items: vec![
            Item::Npm {
                name: "a".into(),
                version: "1.0.0".into(),
                integrity: Some("sha512-x".into()),
                resolved: Some(public("https://r/a/-/a-1.0.0.tgz")),
            },
            Item::Go {
                module: "m".into(),
                version: "v1.0.0".into(),
                mod_only: false,
                project: Some(ProjectRef::Id(3)),
            },
            Item::Packages {
                project: ProjectRef::Id(3),
            },
        ],
        skipped: vec![Skipped {
            entry: "x".into(),
            reason: "y".into(),
        }],
    });
    assert_eq!(
        first.items,
        [
            Item::Npm {
                name: "a".into(),
                version: "1.0.0".into(),
                integrity: Some("sha512-x".into()),
                resolved: Some(public("https://r/a/-/a-1.0.0.tgz")),
            },
            Item::Go {
                module: "m".into(),
                version: "v1.0.0".into(),
                mod_only: false,
                project: Some(ProjectRef::Id(3)),
            },
            Item::Packages {
                project: ProjectRef::Id(3),
            },
        ]
    );
    assert_eq!(first.skipped.len(), 1);
}

#[test]
fn items_display() {
    let item = Item::Go {
        module: "gitlab.example.com/acme/lib".into(),
        version: "v1.4.0".into(),
        mod_only: true,
        project: Some(ProjectRef::Id(42)),
    };
    assert_eq!(
        item.to_string(),
        "go gitlab.example.com/acme/lib@v1.4.0 (go.mod only) project=42"
    );
    let item = Item::NpmRange {
        name: "@acme/ui".into(),
        range: "^2".into(),
        project: None,
    };
    assert_eq!(item.to_string(), "npm @acme/ui@^2");
}
