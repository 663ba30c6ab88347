//! The local package index: what packrat keeps of the upstream's Packages API, and how it is
//! filled (all pages, `per_page=100`, with the caller's credential).
//!
//! Records (in the aux tree, through [`Core::record`]), each a list of items exactly as the
//! upstream sent them:
//! - `pkgidx/p:<project>/<class>/<slice>`: a project's packages. Items differ by caller only
//!   in `_links.delete_api_path` (present for callers who may delete), so callers share one
//!   copy per *class*: `d` (may delete), `r` (may not), learnt from their own fill and kept
//!   under `pkgcls/<credential hash>/<target>`; a caller whose fill showed no item to tell
//!   keeps a copy of their own (`c-<credential hash>`).
//! - `pkgidx/g:<group>/<credential hash>/<slice>`: a group's packages depend on who asks
//!   (which projects they can read), so every credential has its own copy.
//! - `pkgfiles/p:<project>/<package id>`, `pkgpipes/p:<project>/<package id>`: a package's
//!   files and pipelines, filled on first use.
//!
//! A *slice* is what one upstream sweep returns. Without `status` GitLab lists displayable
//! statuses only, and without `package_type` no Terraform modules; versionless packages are
//! always fetched (`include_versionless=true`) and filtered locally. So a query needs the
//! sweep for its status (displayable, or one of the three hidden ones), with or without
//! `package_type=terraform_module`, and for groups with or without `exclude_subgroups`.
//!
//! A bundle carries no credential hash: [`bundle_key`] drops the class records and re-keys
//! the lists kept per credential.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use super::params::{id_of, str_field, ListQuery};
use crate::auth::Credential;
use crate::cache::records::{Filled, RecordHit, RecordSpec};
use crate::cache::Core;
use crate::error::{Error, UpstreamError};
use crate::gitlab::Namespace;

/// Largest single page accepted from the upstream.
const MAX_PAGE_BYTES: u64 = 64 << 20;
/// A safety stop for runaway pagination (10,000 pages of 100 = a million packages).
const MAX_PAGES: u64 = 10_000;

/// The authorization scope of a Packages API target: whoever the upstream let list it.
pub fn scope_of(target: &Namespace) -> String {
    format!("pkgapi/{}", target.key())
}

/// Which upstream sweep a list query needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// `None`: the displayable statuses; else one of the statuses lists hide by default.
    pub status: Option<&'static str>,
    pub terraform: bool,
    pub exclude_subgroups: bool,
}

impl Slice {
    pub const DISPLAYABLE: Slice = Slice {
        status: None,
        terraform: false,
        exclude_subgroups: false,
    };

    pub fn for_query(q: &ListQuery) -> Slice {
        let status = match q.status.as_deref() {
            Some("hidden") => Some("hidden"),
            Some("processing") => Some("processing"),
            Some("pending_destruction") => Some("pending_destruction"),
            _ => None,
        };
        Slice {
            status,
            terraform: q.package_type.as_deref() == Some("terraform_module"),
            exclude_subgroups: q.exclude_subgroups,
        }
    }

    fn name(&self) -> String {
        let mut s = self.status.unwrap_or("displayable").to_string();
        if self.terraform {
            s.push_str("+terraform");
        }
        if self.exclude_subgroups {
            s.push_str("+direct");
        }
        s
    }

    fn upstream_params(&self) -> String {
        let mut s = String::from("include_versionless=true");
        if let Some(st) = self.status {
            s.push_str("&status=");
            s.push_str(st);
        }
        if self.terraform {
            s.push_str("&package_type=terraform_module");
        }
        if self.exclude_subgroups {
            s.push_str("&exclude_subgroups=true");
        }
        s
    }
}

fn class_key(credential: &Credential, target: &Namespace) -> String {
    format!("pkgcls/{}/{}", credential.hash().hex(), target.key())
}

/// The owner segment an exported list gets in place of a credential's hash.
const BUNDLE_OWNER: &str = "bundle";

/// How an adapter record leaves in a bundle, which carries no credential, not even a hash:
/// `None` drops it (the credential → class map, `pkgcls/<hash>/...`); a list kept under a
/// credential's hash (a group's, or a project's `c-<hash>`) is re-keyed to a neutral owner,
/// which the offline mirror serves like any other copy (access is by `offline.tokens`).
/// Every other key is kept as is.
pub fn bundle_key(key: &str) -> Option<Cow<'_, str>> {
    if key.starts_with("pkgcls/") {
        return None;
    }
    let Some(rest) = key.strip_prefix("pkgidx/") else {
        return Some(Cow::Borrowed(key));
    };
    // `<target>/<owner>/<slice>`; the target may hold a `/` (a project path), the rest not.
    let owner_of = |rest: &str| -> Option<(usize, usize)> {
        let slice_at = rest.rfind('/')?;
        let owner_at = rest[..slice_at].rfind('/')? + 1;
        Some((owner_at, slice_at))
    };
    let Some((from, to)) = owner_of(rest) else {
        return Some(Cow::Borrowed(key));
    };
    let owner = &rest[from..to];
    let hash = owner.strip_prefix("c-").unwrap_or(owner);
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(Cow::Owned(format!(
            "pkgidx/{}{BUNDLE_OWNER}{}",
            &rest[..from],
            &rest[to..]
        )))
    } else {
        Some(Cow::Borrowed(key))
    }
}

fn list_key(target: &Namespace, owner: &str, slice: Slice) -> String {
    format!("pkgidx/{}/{owner}/{}", target.key(), slice.name())
}

pub fn files_key(target: &Namespace, package_id: i64) -> String {
    format!("pkgfiles/{}/{package_id}", target.key())
}

pub fn pipelines_key(target: &Namespace, package_id: i64) -> String {
    format!("pkgpipes/{}/{package_id}", target.key())
}

pub fn package_scope(target: &Namespace, package_id: i64) -> String {
    format!("{}/package/{package_id}", scope_of(target))
}

/// The items of one slice of a project's or group's packages, as this caller may see them.
pub async fn list(
    core: &Core,
    target: &Namespace,
    slice: Slice,
    credential: &Credential,
) -> Result<RecordHit<Vec<Value>>, Error> {
    let key = match target {
        // A group's list is per caller (GitLab shows each caller the projects they may read).
        Namespace::Group(_) | Namespace::Instance => {
            Some(list_key(target, &credential.hash().hex(), slice))
        }
        Namespace::Project(_) => core
            .aux::<String>(&class_key(credential, target))?
            .map(|class| list_key(target, &class, slice)),
    };
    let path = format!("{}/packages", target.api_path());
    core.record(
        RecordSpec {
            scope: scope_of(target),
            credential,
            kind: "packages_list",
            key,
            url: core.gitlab_url(&path),
            offline_any: Some((
                format!("pkgidx/{}/", target.key()),
                format!("/{}", slice.name()),
            )),
        },
        || async move {
            let items = fetch_pages(core, &path, &slice.upstream_params(), credential).await?;
            for (id, full_path) in project_names(target, &items) {
                core.learn_project(&id, &full_path)?;
            }
            let owner = match target {
                Namespace::Group(_) | Namespace::Instance => credential.hash().hex(),
                Namespace::Project(_) => {
                    let class = class_of(&items)
                        .map_or_else(|| format!("c-{}", credential.hash().hex()), str::to_string);
                    core.put_aux(&class_key(credential, target), &class)?;
                    class
                }
            };
            Ok(Filled {
                key: list_key(target, &owner, slice),
                value: items,
            })
        },
    )
    .await
}

/// (id, full path) pairs a listing reveals: a group listing's `project_id`/`project_path`;
/// in a project's own listing, its path from `_links.web_path` (`/<path>/-/packages/<id>`)
/// and its id from `_links.delete_api_path` (`.../projects/<id>/packages/<id>`).
fn project_names(target: &Namespace, items: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |id: String, path: String| {
        if !id.is_empty() && !path.is_empty() && !out.contains(&(id.clone(), path.clone())) {
            out.push((id, path));
        }
    };
    for item in items {
        match target {
            Namespace::Group(_) | Namespace::Instance => {
                if let (Some(id), Some(path)) = (
                    item.get("project_id").and_then(Value::as_i64),
                    item.get("project_path").and_then(Value::as_str),
                ) {
                    add(id.to_string(), path.to_string());
                }
            }
            Namespace::Project(p) => {
                let path = item
                    .pointer("/_links/web_path")
                    .and_then(Value::as_str)
                    .and_then(|w| w.strip_prefix('/')?.split_once("/-/packages/"))
                    .map(|(path, _)| path.to_string());
                let id = item
                    .pointer("/_links/delete_api_path")
                    .and_then(Value::as_str)
                    .and_then(|d| d.split_once("/projects/"))
                    .and_then(|(_, rest)| rest.split_once('/'))
                    .map(|(id, _)| id.to_string())
                    .filter(|id| id.bytes().all(|b| b.is_ascii_digit()));
                let numeric = p.bytes().all(|b| b.is_ascii_digit());
                match (numeric, id, path) {
                    (true, _, Some(path)) => add(p.clone(), path),
                    (false, Some(id), _) => add(id, p.clone()),
                    _ => {}
                }
            }
        }
    }
    out
}

/// `d` when the items carry `delete_api_path` (the caller may delete), `r` when they do not,
/// `None` when there is no item to tell.
fn class_of(items: &[Value]) -> Option<&'static str> {
    let first = items.first()?;
    Some(if first.pointer("/_links/delete_api_path").is_some() {
        "d"
    } else {
        "r"
    })
}

/// A package's files, filled on first use.
pub async fn files(
    core: &Core,
    target: &Namespace,
    package_id: i64,
    credential: &Credential,
) -> Result<RecordHit<Vec<Value>>, Error> {
    let path = format!("{}/packages/{package_id}/package_files", target.api_path());
    core.record(
        RecordSpec {
            scope: package_scope(target, package_id),
            credential,
            kind: "packages_files",
            key: Some(files_key(target, package_id)),
            url: core.gitlab_url(&path),
            offline_any: None,
        },
        || async move {
            let items = fetch_pages(core, &path, "order_by=id&sort=asc", credential).await?;
            Ok(Filled {
                key: files_key(target, package_id),
                value: items,
            })
        },
    )
    .await
}

/// A package's pipelines, filled on first use by following the upstream's keyset links.
pub async fn pipelines(
    core: &Core,
    target: &Namespace,
    package_id: i64,
    credential: &Credential,
) -> Result<RecordHit<Vec<Value>>, Error> {
    let path = format!("{}/packages/{package_id}/pipelines", target.api_path());
    core.record(
        RecordSpec {
            scope: package_scope(target, package_id),
            credential,
            kind: "packages_pipelines",
            key: Some(pipelines_key(target, package_id)),
            url: core.gitlab_url(&path),
            offline_any: None,
        },
        || async move {
            let mut next = Some(format!("{path}?per_page=20"));
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            let mut pages = 0;
            while let Some(path_and_query) = next.take() {
                pages += 1;
                let (items, headers) = fetch_one(core, &path_and_query, credential).await?;
                for item in items {
                    if seen.insert(id_of(&item)) {
                        out.push(item);
                    }
                }
                next = headers
                    .get(http::header::LINK)
                    .and_then(|v| v.to_str().ok())
                    .and_then(next_link)
                    .filter(|_| pages < MAX_PAGES);
            }
            Ok(Filled {
                key: pipelines_key(target, package_id),
                value: out,
            })
        },
    )
    .await
}

/// The path and query of a `Link` header's `rel="next"` (only `/api/v4/` paths: the host is
/// whatever GitLab calls itself, the request goes to the configured upstream).
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") {
            return None;
        }
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        url.find("/api/v4/").map(|i| url[i..].to_string())
    })
}

/// Every page of an offset-paginated upstream list, deduplicated by id.
async fn fetch_pages(
    core: &Core,
    path: &str,
    params: &str,
    credential: &Credential,
) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut page = 1u64;
    loop {
        let (items, headers) = fetch_one(
            core,
            &format!("{path}?{params}&page={page}&per_page=100"),
            credential,
        )
        .await?;
        for item in items {
            if seen.insert(id_of(&item)) {
                out.push(item);
            }
        }
        let next = headers
            .get("x-next-page")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match next {
            Some(n) if n > page && n <= MAX_PAGES => page = n,
            _ => return Ok(out),
        }
    }
}

/// One upstream page: a JSON array, and the response headers.
async fn fetch_one(
    core: &Core,
    path_and_query: &str,
    credential: &Credential,
) -> Result<(Vec<Value>, http::HeaderMap), Error> {
    let body = core
        .uncached_get(path_and_query, credential, "packages_api")
        .await?;
    let headers = body.headers.clone();
    let url = body.url.clone();
    let raw = body.read_all(MAX_PAGE_BYTES).await?;
    let items: Vec<Value> = serde_json::from_slice(&raw).map_err(|e| {
        Error::Upstream(UpstreamError::Body {
            url,
            reason: format!("not a JSON array of records: {e}"),
        })
    })?;
    Ok((items, headers))
}

/// A package as the local index last saw it, wherever it was listed (ids are global).
pub fn known_package(core: &Core, package_id: i64) -> Result<Option<Value>, Error> {
    let mut found = None;
    core.edit_records::<Vec<Value>, _>("pkgidx/", |_, items| {
        if found.is_none() {
            found = items.iter().find(|i| id_of(i) == package_id).cloned();
        }
        false
    })?;
    Ok(found)
}

/// A deleted package leaves every local list at once.
pub fn forget_package(core: &Core, package_id: i64) -> Result<(), Error> {
    core.edit_records::<Vec<Value>, _>("pkgidx/", |_, items| {
        let before = items.len();
        items.retain(|i| id_of(i) != package_id);
        items.len() != before
    })?;
    let suffix = format!("/{package_id}");
    core.remove_records("pkgfiles/", |k| k.ends_with(&suffix))?;
    core.remove_records("pkgpipes/", |k| k.ends_with(&suffix))?;
    Ok(())
}

/// A deleted file leaves its package's file lists; returns its name if it was known.
pub fn forget_file(core: &Core, package_id: i64, file_id: i64) -> Result<Option<String>, Error> {
    let suffix = format!("/{package_id}");
    let mut name = None;
    core.edit_records::<Vec<Value>, _>("pkgfiles/", |key, files| {
        if !key.ends_with(&suffix) {
            return false;
        }
        let before = files.len();
        files.retain(|f| {
            let gone = id_of(f) == file_id;
            if gone {
                name = Some(str_field(f, "file_name").to_string());
            }
            !gone
        });
        files.len() != before
    })?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages_api::params::{ListKind, Query};

    #[test]
    fn listings_name_projects_both_ways() {
        let item = serde_json::json!({"id": 7, "_links": {"web_path": "/acme/web/-/packages/7"}});
        assert_eq!(
            project_names(
                &Namespace::Project("42".into()),
                std::slice::from_ref(&item)
            ),
            vec![("42".to_string(), "acme/web".to_string())]
        );
        // By path: the id comes only with delete_api_path (a maintainer's listing).
        assert!(project_names(&Namespace::Project("acme/web".into()), &[item]).is_empty());
        let item = serde_json::json!({"id": 7, "_links": {
            "web_path": "/acme/web/-/packages/7",
            "delete_api_path": "https://gitlab.example.com/api/v4/projects/42/packages/7"}});
        assert_eq!(
            project_names(&Namespace::Project("acme/web".into()), &[item]),
            vec![("42".to_string(), "acme/web".to_string())]
        );
        let items = [
            serde_json::json!({"id": 1, "project_id": 42, "project_path": "acme/web"}),
            serde_json::json!({"id": 2, "project_id": 43, "project_path": "acme/sub/tools"}),
            serde_json::json!({"id": 3, "project_id": 42, "project_path": "acme/web"}),
        ];
        assert_eq!(
            project_names(&Namespace::Group("acme".into()), &items),
            vec![
                ("42".to_string(), "acme/web".to_string()),
                ("43".to_string(), "acme/sub/tools".to_string())
            ]
        );
    }

    #[test]
    fn bundle_keys_carry_no_credential_hash() {
        let cred = Credential::private_token(&crate::config::Secret::new("glpat-secret".into()));
        let h = cred.hash().hex();
        let project = Namespace::Project("acme/web".into());
        let group = Namespace::Group("acme".into());
        assert_eq!(bundle_key(&class_key(&cred, &project)), None);
        let rekeyed = |k: String| bundle_key(&k).map(Cow::into_owned);
        assert_eq!(
            rekeyed(list_key(&project, &format!("c-{h}"), Slice::DISPLAYABLE)).as_deref(),
            Some("pkgidx/p:acme/web/bundle/displayable")
        );
        assert_eq!(
            rekeyed(list_key(&group, &h, Slice::DISPLAYABLE)).as_deref(),
            Some("pkgidx/g:acme/bundle/displayable")
        );
        // Classes, files and everything else stay as they are.
        for k in [
            list_key(&project, "d", Slice::DISPLAYABLE),
            files_key(&project, 7),
            "mirror/npm:x".to_string(),
        ] {
            assert_eq!(rekeyed(k.clone()), Some(k));
        }
    }

    #[test]
    fn slices_follow_the_query() {
        let s = |q: &str, kind| {
            Slice::for_query(&ListQuery::parse(&Query::parse(Some(q)), kind, "1").unwrap())
        };
        assert_eq!(s("", ListKind::Project), Slice::DISPLAYABLE);
        assert_eq!(
            s("status=error&package_type=npm", ListKind::Project),
            Slice::DISPLAYABLE
        );
        let h = s(
            "status=hidden&package_type=terraform_module",
            ListKind::Project,
        );
        assert_eq!(h.name(), "hidden+terraform");
        assert_eq!(
            h.upstream_params(),
            "include_versionless=true&status=hidden&package_type=terraform_module"
        );
        let g = s("exclude_subgroups=true", ListKind::Group);
        assert_eq!(g.name(), "displayable+direct");
    }

    #[test]
    fn next_links() {
        let l = "<https://gitlab.example.com/api/v4/projects/1/packages/2/pipelines?cursor=abc&per_page=20>; rel=\"next\"";
        assert_eq!(
            next_link(l).as_deref(),
            Some("/api/v4/projects/1/packages/2/pipelines?cursor=abc&per_page=20")
        );
        assert_eq!(next_link("<https://x/api/v4/a>; rel=\"first\""), None);
    }

    #[test]
    fn targets() {
        let p = Namespace::Project("acme/web".into());
        assert_eq!(p.api_path(), "/api/v4/projects/acme%2Fweb");
        assert_eq!(scope_of(&p), "pkgapi/p:acme/web");
        assert_eq!(class_of(&[]), None);
        assert_eq!(
            class_of(&[serde_json::json!({"_links": {"delete_api_path": "x"}})]),
            Some("d")
        );
        assert_eq!(class_of(&[serde_json::json!({"_links": {}})]), Some("r"));
    }
}
