//! Running `packrat sync`: every item the inputs name is fetched through the same cache code
//! as `serve` (same gate, verification and store), concurrently with a bound. What is already
//! present and verified is skipped (a cache hit), so an interrupted sync resumes where it
//! stopped. Failures are collected and named; the caller exits 1 if there are any.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;

use super::{Item, Resolved, Skipped};
use crate::auth::Credential;
use crate::cache::{CacheOutcome, Core};
use crate::error::Error;
use crate::gitlab::Namespace;
use crate::goproxy::sync::Lookup;
use crate::goproxy::{self, ModulePath, ModuleVersion};
use crate::npm::sync::{sync_version, Want};
use crate::npm::PackageName;
use crate::packages_api::index::{self, Slice};
use crate::progress::Progress;

/// Downloads at once.
pub const CONCURRENCY: usize = 8;

/// What a sync did. `items == fetched + present + failed.len()`.
#[derive(Debug, Default)]
pub struct Summary {
    pub items: usize,
    pub fetched: usize,
    pub present: usize,
    /// Bytes downloaded now (what was already present is not counted).
    pub bytes: u64,
    /// Items that failed, each named.
    pub failed: Vec<String>,
    /// Failures that are not one item's: an input that could not be read, the checksum
    /// database tiles.
    pub errors: Vec<String>,
    pub skipped: Vec<Skipped>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.errors.is_empty()
    }
}

/// One item's result: newly fetched (with the bytes downloaded), or already present.
pub(crate) enum Done {
    Fetched(u64),
    Present,
}

/// Parse all inputs and fetch everything they name.
pub async fn run(core: Arc<Core>, inputs: &[PathBuf]) -> Summary {
    let credential = match &core.config().upstream.token {
        Some(t) => Credential::private_token(t),
        None => Credential::anonymous(),
    };
    let lookups = Mutex::new(Vec::new());
    let lookups = &lookups;
    let mut summary = drive(inputs, |item| {
        let core = core.clone();
        let credential = credential.clone();
        async move {
            fetch(&core, &item, &credential, lookups)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    let lookups = std::mem::take(&mut *lookups.lock().unwrap_or_else(|p| p.into_inner()));
    if let Err(e) = goproxy::sync::sync_tiles(&core, &lookups).await {
        summary.errors.push(format!("{TILES}: {e}"));
    }
    // What was fetched is served at verification and committed right after: it must have
    // landed in the store before the index is flushed and the command ends.
    if !core
        .downloads_landed(std::time::Duration::from_secs(120))
        .await
    {
        summary
            .errors
            .push("some downloads were still being committed to the store when sync ended".into());
    }
    summary
}

/// How a failure to cache the checksum database tiles is named in the summary.
pub(crate) const TILES: &str = "go checksum database tiles";

/// Parse every input, then run `fetch` on each item, [`CONCURRENCY`] at a time, with a
/// progress bar, collecting the summary. Shared by the in-process sync and `--via`.
pub(crate) async fn drive<F, Fut, E>(inputs: &[PathBuf], fetch: F) -> Summary
where
    F: Fn(Item) -> Fut,
    Fut: std::future::Future<Output = Result<Done, E>>,
    E: std::fmt::Display,
{
    let mut summary = Summary::default();
    let mut parsed = super::Parsed::default();
    for path in inputs {
        match super::parse_path(path) {
            Ok(p) => parsed.merge(p),
            Err(e) => summary.errors.push(e.to_string()),
        }
    }
    summary.skipped = parsed.skipped;
    summary.items = parsed.items.len();
    let mut progress = Progress::new("sync", parsed.items.len() as u64);
    let results = futures_util::stream::iter(parsed.items)
        .map(|item| {
            let label = item.to_string();
            let fut = fetch(item);
            async move { (label, fut.await) }
        })
        .buffer_unordered(CONCURRENCY);
    futures_util::pin_mut!(results);
    while let Some((label, r)) = results.next().await {
        match r {
            Ok(Done::Fetched(b)) => {
                summary.fetched += 1;
                summary.bytes += b;
            }
            Ok(Done::Present) => summary.present += 1,
            Err(e) => {
                let line = format!("{label}: {e}");
                progress.println(&format!("failed: {line}"));
                summary.failed.push(line);
            }
        }
        progress.inc();
    }
    progress.finish();
    summary
}

async fn fetch(
    core: &Arc<Core>,
    item: &Item,
    credential: &Credential,
    lookups: &Mutex<Vec<Lookup>>,
) -> Result<Done, Error> {
    match item {
        Item::Npm {
            name,
            version,
            integrity,
            resolved,
        } => {
            let name = PackageName::parse(name)?;
            let scope = match resolved {
                Some(Resolved::Gitlab { path }) => scope_of(path),
                _ => Namespace::Instance,
            };
            let s = sync_version(
                core,
                &scope,
                &name,
                Want::Exact(version),
                integrity.as_deref(),
                credential,
            )
            .await?;
            Ok(done(s.outcome, s.bytes))
        }
        Item::NpmRange {
            name,
            range,
            project,
        } => {
            let name = PackageName::parse(name)?;
            let scope = match project {
                Some(p) => p.namespace(),
                None => Namespace::Instance,
            };
            let s = sync_version(core, &scope, &name, Want::Range(range), None, credential).await?;
            Ok(done(s.outcome, s.bytes))
        }
        Item::Go {
            module,
            version,
            mod_only,
            project,
        } => {
            let module = ModulePath::parse(module)?;
            let version = ModuleVersion::parse(version).ok_or_else(|| Error::Sync {
                item: format!("{module}@{version}"),
                reason: "not a semantic version".into(),
            })?;
            let target = match project {
                Some(p) => p.namespace(),
                None => Namespace::Instance,
            };
            let s =
                goproxy::sync::sync_module(core, &target, &module, &version, *mod_only, credential)
                    .await?;
            if let Some(l) = s.lookup {
                lookups.lock().unwrap_or_else(|p| p.into_inner()).push(l);
            }
            Ok(if s.fetched > 0 {
                Done::Fetched(s.bytes)
            } else {
                Done::Present
            })
        }
        Item::Packages { project } => {
            // The project's package list (GitLab's default view) and every package's files
            // and pipelines, so the offline mirror answers the Packages API for it.
            let target = project.namespace();
            let list = index::list(core, &target, Slice::DISPLAYABLE, credential).await?;
            let mut fetched = list.outcome != CacheOutcome::Hit;
            for item in &list.value {
                let Some(id) = item.get("id").and_then(serde_json::Value::as_i64) else {
                    continue;
                };
                let files = index::files(core, &target, id, credential).await?;
                let pipes = index::pipelines(core, &target, id, credential).await?;
                fetched |= files.outcome != CacheOutcome::Hit || pipes.outcome != CacheOutcome::Hit;
            }
            // Listings, not downloads: no bytes counted.
            Ok(if fetched {
                Done::Fetched(0)
            } else {
                Done::Present
            })
        }
    }
}

fn done(outcome: CacheOutcome, bytes: u64) -> Done {
    if outcome == CacheOutcome::Hit {
        Done::Present
    } else {
        Done::Fetched(bytes)
    }
}

/// The npm prefix a lockfile's `resolved` path was made through (GitLab's or packrat's).
fn scope_of(path: &str) -> Namespace {
    let rest = path.trim_start_matches("/api/v4/");
    if let Some(after) = rest.strip_prefix("projects/") {
        if let Some((id, tail)) = after.split_once('/') {
            if tail.starts_with("packages/npm/") {
                if let Some(id) = Namespace::parse_id(id) {
                    return Namespace::Project(id);
                }
            }
        }
    }
    if let Some(after) = rest.strip_prefix("groups/") {
        if let Some((id, tail)) = after.split_once('/') {
            if tail.starts_with("-/packages/npm/") {
                if let Some(id) = Namespace::parse_id(id) {
                    return Namespace::Group(id);
                }
            }
        }
    }
    Namespace::Instance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_paths_map_to_prefixes() {
        assert_eq!(
            scope_of("/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"),
            Namespace::Project("42".into())
        );
        assert_eq!(
            scope_of("/api/v4/projects/acme%2Fweb/packages/npm/@acme/ui/-/x.tgz"),
            Namespace::Project("acme/web".into())
        );
        assert_eq!(
            scope_of("/api/v4/groups/acme/-/packages/npm/@acme/ui/-/x.tgz"),
            Namespace::Group("acme".into())
        );
        assert_eq!(
            scope_of("/api/v4/packages/npm/@acme/ui/-/x.tgz"),
            Namespace::Instance
        );
    }
}
