//! `packrat sync --via URL`: warm a running packrat by requesting everything the inputs name
//! through its HTTP routes (the data directory belongs to the running `serve`).

use std::path::PathBuf;
use std::sync::Mutex;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::run::{drive, Done, Summary, TILES};
use super::{Item, Resolved};
use crate::config::{Config, ProjectRef};
use crate::goproxy::sync::{parse_lookup, parse_tree_size, tile_set, Lookup};
use crate::goproxy::{sumdb, ModulePath, ModuleVersion};
use crate::npm::sync::{pick, Want};
use crate::npm::PackageName;
use crate::store::digest::Hasher;
use crate::store::Expect;

struct Via {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    sumdb: String,
}

pub async fn run(config: &Config, base: &str, inputs: &[PathBuf]) -> anyhow::Result<Summary> {
    let via = Via {
        client: crate::upstream::local_client(
            config
                .upstream
                .timeout
                .max(std::time::Duration::from_secs(300)),
        )?,
        base: base.trim_end_matches('/').to_string(),
        token: config
            .upstream
            .token
            .as_ref()
            .map(|t| t.expose().to_string()),
        sumdb: sumdb::served_name(&config.forwarding.go_sumdb),
    };
    let via = &via;
    let lookups = Mutex::new(Vec::new());
    let lookups = &lookups;
    let mut summary = drive(inputs, |item| async move {
        via.fetch(&item, lookups)
            .await
            .map_err(|e| format!("{e:#}"))
    })
    .await;
    let lookups = std::mem::take(&mut *lookups.lock().unwrap_or_else(|p| p.into_inner()));
    if let Err(e) = via.tiles(&lookups).await {
        summary.errors.push(format!("{TILES}: {e:#}"));
    }
    Ok(summary)
}

fn seg(p: &ProjectRef) -> String {
    match p {
        ProjectRef::Id(id) => id.to_string(),
        ProjectRef::Path(path) => utf8_percent_encode(path, NON_ALPHANUMERIC).to_string(),
    }
}

impl Via {
    /// GET a URL, read the body; (fetched by packrat just now?, bytes).
    async fn get(&self, url: &str) -> anyhow::Result<(bool, bytes::Bytes)> {
        self.get_opt(url)
            .await?
            .ok_or_else(|| anyhow::anyhow!("404 Not Found from {url}"))
    }

    /// [`Via::get`], with a 404 as `None`.
    async fn get_opt(&self, url: &str) -> anyhow::Result<Option<(bool, bytes::Bytes)>> {
        let mut rb = self.client.get(url);
        if let Some(t) = &self.token {
            rb = rb.header("PRIVATE-TOKEN", t);
        }
        let resp = rb.send().await?;
        let status = resp.status();
        let hit = resp
            .headers()
            .get("x-packrat-cache")
            .is_some_and(|v| v.as_bytes() == b"hit");
        let body = resp.bytes().await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            anyhow::bail!(
                "{status} from {url}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(Some((!hit, body)))
    }

    fn sumdb_url(&self, rest: &str) -> String {
        format!("{}/go/sumdb/{}/{rest}", self.base, self.sumdb)
    }

    /// After all lookups: `latest` once, then the tiles proving every record.
    async fn tiles(&self, lookups: &[Lookup]) -> anyhow::Result<()> {
        if lookups.is_empty() {
            return Ok(());
        }
        let (_, body) = self.get(&self.sumdb_url("latest")).await?;
        let latest = parse_tree_size(&body)
            .ok_or_else(|| anyhow::anyhow!("unexpected checksum database answer for latest"))?;
        for tile in tile_set(lookups, latest) {
            self.get(&self.sumdb_url(&tile)).await?;
        }
        Ok(())
    }

    async fn fetch(&self, item: &Item, lookups: &Mutex<Vec<Lookup>>) -> anyhow::Result<Done> {
        match item {
            Item::Npm {
                name,
                version,
                integrity,
                resolved,
            } => {
                let prefix = match resolved {
                    Some(Resolved::Gitlab { path }) => npm_prefix(path),
                    _ => "/api/v4/packages/npm".to_string(),
                };
                self.npm(&prefix, name, Want::Exact(version), integrity.as_deref())
                    .await
            }
            Item::NpmRange {
                name,
                range,
                project,
            } => {
                let prefix = match project {
                    Some(p) => format!("/api/v4/projects/{}/packages/npm", seg(p)),
                    None => "/api/v4/packages/npm".to_string(),
                };
                self.npm(&prefix, name, Want::Range(range), None).await
            }
            Item::Go {
                module,
                version,
                mod_only,
                project,
            } => {
                let m = ModulePath::parse(module).map_err(|e| anyhow::anyhow!("{e}"))?;
                let v = ModuleVersion::parse(version)
                    .ok_or_else(|| anyhow::anyhow!("{version} is not a semantic version"))?;
                let dir = match project {
                    Some(p) => format!(
                        "{}/api/v4/projects/{}/packages/go/{}",
                        self.base,
                        seg(p),
                        m.escaped()
                    ),
                    None => format!("{}/go/{}", self.base, m.escaped()),
                };
                let exts: &[&str] = if *mod_only {
                    &["mod"]
                } else {
                    &["info", "mod", "zip"]
                };
                let (mut fetched, mut bytes) = (false, 0u64);
                for ext in exts {
                    let (f, b) = self.get(&format!("{dir}/@v/{}.{ext}", v.escaped())).await?;
                    fetched |= f;
                    if f {
                        bytes += b.len() as u64;
                    }
                }
                // A project's module is private: never looked up publicly. For the rest, the
                // running packrat answers 404 for a module it knows to be private (it holds the
                // pins); any other failure is this item's failure.
                if project.is_none() {
                    let url = self.sumdb_url(&format!("lookup/{}@{}", m.escaped(), v.escaped()));
                    if let Some((_, body)) = self.get_opt(&url).await? {
                        let (record, size) = parse_lookup(&body).ok_or_else(|| {
                            anyhow::anyhow!("unexpected checksum database answer from {url}")
                        })?;
                        lookups
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Lookup { record, size });
                    }
                }
                Ok(if fetched {
                    Done::Fetched(bytes)
                } else {
                    Done::Present
                })
            }
            Item::Packages { project } => {
                let base = format!("{}/api/v4/projects/{}/packages", self.base, seg(project));
                let mut fetched = false;
                let mut page = 1u32;
                loop {
                    let (f, body) = self
                        .get(&format!("{base}?per_page=100&page={page}"))
                        .await?;
                    fetched |= f;
                    let items: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
                    for item in &items {
                        if let Some(id) = item.get("id").and_then(serde_json::Value::as_i64) {
                            let (f, _) = self
                                .get(&format!("{base}/{id}/package_files?per_page=100"))
                                .await?;
                            fetched |= f;
                        }
                    }
                    if items.len() < 100 {
                        break;
                    }
                    page += 1;
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

    async fn npm(
        &self,
        prefix: &str,
        name: &str,
        want: Want<'_>,
        integrity: Option<&str>,
    ) -> anyhow::Result<Done> {
        let name = PackageName::parse(name)?;
        let (_, body) = self
            .get(&format!("{}{prefix}/{}", self.base, name.encoded()))
            .await?;
        let doc: serde_json::Value = serde_json::from_slice(&body)?;
        let version =
            pick(&doc, &want).ok_or_else(|| anyhow::anyhow!("no version of {name} matches"))?;
        let url = doc["versions"][&version]["dist"]["tarball"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{name}@{version} has no tarball"))?;
        let (fetched, body) = self.get(url).await?;
        if let Some(sri) = integrity {
            let expect = Expect::lockfile(sri);
            let mut hasher = Hasher::new(&expect);
            hasher.update(&body);
            expect
                .verify_lockfile(hasher, body.len() as u64, &name, &version)
                .map_err(anyhow::Error::msg)?;
        }
        Ok(if fetched {
            Done::Fetched(body.len() as u64)
        } else {
            Done::Present
        })
    }
}

/// `/api/v4/projects/42/packages/npm/@acme/ui/-/...` → `/api/v4/projects/42/packages/npm`.
fn npm_prefix(path: &str) -> String {
    match path.find("/packages/npm/") {
        Some(i) => path[..i + "/packages/npm".len()].to_string(),
        None => "/api/v4/packages/npm".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            npm_prefix("/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"),
            "/api/v4/projects/42/packages/npm"
        );
        assert_eq!(
            npm_prefix("/api/v4/groups/acme/-/packages/npm/@acme/ui/-/x.tgz"),
            "/api/v4/groups/acme/-/packages/npm"
        );
    }
}
