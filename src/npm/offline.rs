//! An offline mirror answers a synced npm file at every prefix, as GitLab does online. A
//! lockfile names one prefix per entry, and sync keeps one copy of each `name@version`, so a
//! file is often synced through one prefix and asked for through another. Every GitLab file
//! is also indexed by name, file and owning project ([`super::packument::OWNER_PREFIX`]); a
//! prefix serves it when the owning project lies inside that prefix, as GitLab decides:
//!
//! - project prefix: that project, by id or by full path;
//! - group prefix: a project whose full path is below the group's;
//! - instance prefix: a project in the top-level namespace named like the package's scope.
//!
//! Project paths come from [`Core::project_path`] (sync learns them). Access was already
//! checked against `offline.tokens` for the prefix; the owning project is checked against them
//! here too, so a token scoped to one project never reads another's file through a wider
//! prefix.

use super::packument::{TarballRef, OWNER_PREFIX};
use super::PackageName;
use crate::auth::offline::allows;
use crate::auth::Credential;
use crate::cache::Core;
use crate::error::Error;
use crate::gitlab::Namespace;

/// Whether GitLab would serve a file of project `owner` (numeric id) at `scope`.
pub fn inside(
    core: &Core,
    scope: &Namespace,
    name: &PackageName,
    owner: &str,
) -> Result<bool, Error> {
    let path = core.project_path(owner)?;
    let lower = |s: &str| s.to_ascii_lowercase();
    Ok(match scope {
        Namespace::Project(p) => p == owner || path.is_some_and(|path| lower(&path) == lower(p)),
        Namespace::Group(g) => {
            path.is_some_and(|path| lower(&path).starts_with(&format!("{}/", lower(g))))
        }
        Namespace::Instance => match (path, name.scope()) {
            (Some(path), Some(s)) => path
                .split('/')
                .next()
                .is_some_and(|top| top.eq_ignore_ascii_case(s)),
            _ => false,
        },
    })
}

/// A synced file of `name` that `scope` may answer with, whichever prefix synced it.
pub fn file_elsewhere(
    core: &Core,
    scope: &Namespace,
    name: &PackageName,
    file: &str,
    credential: &Credential,
) -> Result<Option<TarballRef>, Error> {
    let prefix = format!("{OWNER_PREFIX}{name}/{file}/");
    for (key, tref) in core.aux_scan_keyed::<TarballRef>(&prefix)? {
        let Some(owner) = key.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if !inside(core, scope, name, owner)? {
            continue;
        }
        if !owner_allowed(core, credential, owner)? {
            continue;
        }
        return Ok(Some(tref));
    }
    Ok(None)
}

/// `offline.tokens` for the project that owns a file, by id or by path.
fn owner_allowed(core: &Core, credential: &Credential, owner: &str) -> Result<bool, Error> {
    let config = &core.config().offline;
    if allows(config, credential, &Namespace::Project(owner.to_string())) {
        return Ok(true);
    }
    Ok(match core.project_path(owner)? {
        Some(path) => allows(config, credential, &Namespace::Project(path)),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::super::packument::owner_of;

    #[test]
    fn owners_come_from_gitlab_tarball_urls() {
        assert_eq!(
            owner_of("http://g/api/v4/projects/42/packages/npm/@a/b/-/@a/b-1.0.0.tgz"),
            Some("42")
        );
        assert_eq!(
            owner_of("http://g/api/v4/projects/acme%2Fweb/packages/npm/x/-/x-1.tgz"),
            None
        );
        assert_eq!(owner_of("https://registry.npmjs.org/x/-/x-1.0.0.tgz"), None);
    }
}
