//! Packument variants: built once per upstream revision, never re-parsed per request.
//!
//! GitLab's packument is already the abbreviated ("corgi") shape, and GitLab ignores
//! `Accept`; packrat serves it as `json` (+ `json.gz`) and keeps `dist-tags` as its own small
//! variant. A public registry's full packument also gets npm's abbreviated form (`abbrev`,
//! `abbrev.gz`). Tarball URLs are rewritten to packrat's public URL *with the route prefix the
//! client used*, and each file's upstream URL and checksums are indexed for the tarball route;
//! a file that a new revision of a document shared by all callers no longer lists is retired
//! (its tarball stops being served).

use std::io::Write;

use bytes::Bytes;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::name::PackageName;
use crate::cache::Origin;
use crate::cache::{Build, Built, BuiltVariant, Retired};
use crate::error::{Error, UpstreamError};
use crate::urls::origin_of;

/// Where one tarball lives upstream and what it must hash to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TarballRef {
    /// Absolute upstream URL.
    pub url: String,
    pub shasum: Option<String>,
    pub integrity: Option<String>,
}

pub struct PackumentBuilder {
    pub name: PackageName,
    /// e.g. `http://packrat:8080/api/v4/projects/42/packages/npm`
    pub tarball_base: String,
    /// The GitLab base URL (tarball URLs are re-anchored on it, whatever host GitLab wrote).
    pub upstream_base: String,
    /// Prefix of the aux keys for this document's files.
    pub aux_prefix: String,
    /// A full packument from a public registry: also precompute npm's abbreviated form.
    pub abbreviate: bool,
    /// Where the document comes from: a public registry's tarballs are fetched only from
    /// that registry's own origin.
    pub origin: Origin,
}

/// The per-version keys of npm's abbreviated ("corgi") metadata.
const ABBREVIATED_VERSION_KEYS: &[&str] = &[
    "name",
    "version",
    "deprecated",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "bundleDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "acceptDependencies",
    "bin",
    "directories",
    "dist",
    "engines",
    "os",
    "cpu",
    "libc",
    "funding",
    "license",
    "_hasShrinkwrap",
    "hasInstallScript",
];

pub const JSON: &str = "json";
pub const ABBREV: &str = "abbrev";
pub const ABBREV_GZ: &str = "abbrev.gz";
pub const JSON_GZ: &str = "json.gz";
pub const DIST_TAGS: &str = "dist-tags";

impl PackumentBuilder {
    pub fn file_key(aux_prefix: &str, file: &str) -> String {
        format!("{aux_prefix}{file}")
    }
}

impl Build for PackumentBuilder {
    fn base(&self) -> String {
        self.tarball_base.clone()
    }

    fn files_prefix(&self) -> Option<String> {
        Some(self.aux_prefix.clone())
    }

    /// A version the document no longer lists was deleted: its tarball record by owner and
    /// the blob that answered for it go too.
    fn retire(&self, key: &str, record: &Value) -> Retired {
        let Ok(tref) = serde_json::from_value::<TarballRef>(record.clone()) else {
            return Retired::default();
        };
        let mut out = Retired {
            aux: Vec::new(),
            blobs: vec![super::blob_key(self.origin, &tref.url)],
        };
        let file = key.strip_prefix(self.aux_prefix.as_str()).unwrap_or("");
        if let (Some(owner), false) = (owner_of(&tref.url), file.is_empty()) {
            out.aux
                .push(format!("{OWNER_PREFIX}{}/{file}/{owner}", self.name));
        }
        out
    }

    fn build(&self, raw: &[u8]) -> Result<Built, Error> {
        let bad = |reason: &str| {
            Error::Upstream(UpstreamError::Body {
                url: format!("{} metadata", self.name),
                reason: reason.to_string(),
            })
        };
        // Borrowed raw values: a 20 MB packument is never turned into one big `Value` tree.
        // Only each version object is parsed (to rewrite its tarball URL); everything else
        // is copied through as the upstream wrote it.
        let top: IndexMap<String, &RawValue> =
            serde_json::from_slice(raw).map_err(|e| bad(&format!("not a JSON object: {e}")))?;
        let mut aux = Vec::new();
        let mut json = Vec::with_capacity(raw.len() + raw.len() / 8);
        let mut abbrev_versions = serde_json::Map::new();
        json.push(b'{');
        for (i, (key, value)) in top.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, key).map_err(|e| bad(&e.to_string()))?;
            json.push(b':');
            if key == "versions" {
                let versions: IndexMap<String, &RawValue> = serde_json::from_str(value.get())
                    .map_err(|e| bad(&format!("versions is not an object: {e}")))?;
                json.push(b'{');
                for (j, (version, meta)) in versions.iter().enumerate() {
                    if j > 0 {
                        json.push(b',');
                    }
                    let mut meta: Value =
                        serde_json::from_str(meta.get()).map_err(|e| bad(&e.to_string()))?;
                    aux.extend(self.rewrite(&mut meta));
                    if self.abbreviate {
                        let mut small = serde_json::Map::new();
                        if let Some(obj) = meta.as_object() {
                            for k in ABBREVIATED_VERSION_KEYS {
                                if let Some(v) = obj.get(*k) {
                                    small.insert((*k).to_string(), v.clone());
                                }
                            }
                            if obj
                                .get("scripts")
                                .and_then(Value::as_object)
                                .is_some_and(|s| {
                                    ["preinstall", "install", "postinstall"]
                                        .iter()
                                        .any(|k| s.contains_key(*k))
                                })
                            {
                                small.insert("hasInstallScript".into(), Value::Bool(true));
                            }
                        }
                        abbrev_versions.insert(version.clone(), Value::Object(small));
                    }
                    serde_json::to_writer(&mut json, version).map_err(|e| bad(&e.to_string()))?;
                    json.push(b':');
                    serde_json::to_writer(&mut json, &meta).map_err(|e| bad(&e.to_string()))?;
                }
                json.push(b'}');
            } else {
                json.extend_from_slice(value.get().as_bytes());
            }
        }
        json.push(b'}');
        let dist_tags: Value = match top.get("dist-tags") {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| bad(&e.to_string()))?,
            None => Value::Object(serde_json::Map::new()),
        };
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&json).map_err(|e| bad(&e.to_string()))?;
        let gz = gz.finish().map_err(|e| bad(&e.to_string()))?;
        let tags = serde_json::to_vec(&dist_tags).map_err(|e| bad(&e.to_string()))?;
        let mut variants = Vec::new();
        if self.abbreviate {
            let mut doc = serde_json::Map::new();
            for k in ["name", "modified"] {
                if let Some(v) = top.get(k) {
                    doc.insert(
                        k.into(),
                        serde_json::from_str(v.get()).map_err(|e| bad(&e.to_string()))?,
                    );
                }
            }
            if doc.get("modified").is_none() {
                if let Some(m) = top
                    .get("time")
                    .and_then(|t| serde_json::from_str::<Value>(t.get()).ok())
                    .and_then(|t| t.get("modified").cloned())
                {
                    doc.insert("modified".into(), m);
                }
            }
            doc.insert("dist-tags".into(), dist_tags.clone());
            doc.insert("versions".into(), Value::Object(abbrev_versions));
            let abbrev = serde_json::to_vec(&doc).map_err(|e| bad(&e.to_string()))?;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&abbrev).map_err(|e| bad(&e.to_string()))?;
            let abbrev_gz = gz.finish().map_err(|e| bad(&e.to_string()))?;
            variants.push(BuiltVariant {
                name: ABBREV,
                bytes: Bytes::from(abbrev),
                content_type: "application/vnd.npm.install-v1+json",
            });
            variants.push(BuiltVariant {
                name: ABBREV_GZ,
                bytes: Bytes::from(abbrev_gz),
                content_type: "application/vnd.npm.install-v1+json",
            });
        }
        variants.extend([
            BuiltVariant {
                name: JSON,
                bytes: Bytes::from(json),
                content_type: "application/json",
            },
            BuiltVariant {
                name: JSON_GZ,
                bytes: Bytes::from(gz),
                content_type: "application/json",
            },
            BuiltVariant {
                name: DIST_TAGS,
                bytes: Bytes::from(tags),
                content_type: "application/json",
            },
        ]);
        Ok(Built { variants, aux })
    }
}

/// Aux key prefix of the prefix-independent file records: `npmowner/<name>/<file>/<project
/// id>` → [`TarballRef`]. An offline mirror finds a file there whatever prefix synced it.
pub const OWNER_PREFIX: &str = "npmowner/";

/// The GitLab project that holds a tarball, from its URL (GitLab always writes the project
/// route with the numeric id: `/api/v4/projects/<id>/packages/npm/...`).
pub fn owner_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("/api/v4/projects/")?;
    let (id, tail) = rest.split_once('/')?;
    (tail.starts_with("packages/npm/") && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .then_some(id)
}

impl PackumentBuilder {
    /// Point one version's `dist.tarball` at packrat; return the file's index records: by this
    /// document's prefix, and (for a GitLab file) by name, file and owning project.
    fn rewrite(&self, meta: &mut Value) -> Vec<(String, Value)> {
        let Some((key, tref)) = self.rewrite_one(meta) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(2);
        let file = key.strip_prefix(self.aux_prefix.as_str()).unwrap_or("");
        if let (Some(owner), false) = (owner_of(&tref.url), file.is_empty()) {
            if let Ok(v) = serde_json::to_value(&tref) {
                out.push((format!("{OWNER_PREFIX}{}/{file}/{owner}", self.name), v));
            }
        }
        if let Ok(v) = serde_json::to_value(&tref) {
            out.push((key, v));
        }
        out
    }

    fn rewrite_one(&self, meta: &mut Value) -> Option<(String, TarballRef)> {
        let dist = meta.get_mut("dist")?.as_object_mut()?;
        let url = dist.get("tarball")?.as_str()?.to_string();
        let (_, file) = url.rsplit_once("/-/")?;
        let file = percent_encoding::percent_decode_str(file)
            .decode_utf8_lossy()
            .into_owned();
        let rewritten = format!("{}/{}/-/{}", self.tarball_base, self.name, file);
        dist.insert("tarball".into(), Value::String(rewritten));
        let upstream_url = match (self.origin, url.find("/api/v4/")) {
            (Origin::Gitlab, Some(i)) => format!("{}{}", self.upstream_base, &url[i..]),
            (Origin::Gitlab, None) => url.clone(),
            // A public packument names its tarballs' hosts; packrat fetches only from the
            // registry it was configured with (anything else is a way into the network packrat
            // sits in). Such a version is listed, pointing at packrat, and its tarball is a
            // 404: no file record.
            (Origin::Public, _) if origin_of(&url) != origin_of(&self.upstream_base) => {
                tracing::warn!(name = %self.name, url = %crate::urls::redact(&url), "public tarball on another host than the registry's; not fetched");
                return None;
            }
            // In the form the HTTP client will fetch, so one file has one blob key.
            (Origin::Public, _) => url::Url::parse(&url).map_or(url.clone(), String::from),
        };
        let tref = TarballRef {
            url: upstream_url,
            shasum: dist
                .get("shasum")
                .and_then(Value::as_str)
                .map(str::to_string),
            integrity: dist
                .get("integrity")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        Some((Self::file_key(&self.aux_prefix, &file), tref))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_tarballs_and_indexes_files() {
        let raw = br#"{"name":"@acme/ui","versions":{"1.0.0":{"name":"@acme/ui","version":"1.0.0","dist":{"shasum":"ab","tarball":"https://gitlab.example.com/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"}}},"dist-tags":{"latest":"1.0.0"}}"#;
        let b = PackumentBuilder {
            name: PackageName::parse("@acme/ui").unwrap(),
            tarball_base: "http://p:1/api/v4/packages/npm".into(),
            upstream_base: "http://internal:8080".into(),
            aux_prefix: "npmfile/i/@acme/ui/".into(),
            abbreviate: false,
            origin: Origin::Gitlab,
        };
        let built = b.build(raw).unwrap();
        let json: Value = serde_json::from_slice(&built.variants[0].bytes).unwrap();
        assert_eq!(
            json["versions"]["1.0.0"]["dist"]["tarball"],
            "http://p:1/api/v4/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"
        );
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["name", "versions", "dist-tags"], "key order kept");
        assert_eq!(built.aux[0].0, "npmowner/@acme/ui/@acme/ui-1.0.0.tgz/42");
        assert_eq!(built.aux[1].0, "npmfile/i/@acme/ui/@acme/ui-1.0.0.tgz");
        assert_eq!(built.aux[0].1, built.aux[1].1);
        assert_eq!(
            built.aux[1].1["url"],
            "http://internal:8080/api/v4/projects/42/packages/npm/@acme/ui/-/@acme/ui-1.0.0.tgz"
        );
        assert_eq!(&built.variants[2].bytes[..], br#"{"latest":"1.0.0"}"#);
        assert!(b.build(b"not json").is_err());
    }

    /// Found by the packument fuzz target: a public tarball URL spelled with another case of
    /// the scheme is the registry's, and is kept in the form the client fetches.
    #[test]
    fn public_tarball_urls_are_normalised() {
        let raw = br#"{"name":"x","versions":{"1.0.0":{"dist":{"shasum":"ab","tarball":"Http://Registry.test/x/-/x-1.0.0.tgz"}},"2.0.0":{"dist":{"shasum":"ab","tarball":"http://elsewhere.test/x/-/x-2.0.0.tgz"}}}}"#;
        let b = PackumentBuilder {
            name: PackageName::parse("x").unwrap(),
            tarball_base: "http://p:1/api/v4/packages/npm".into(),
            upstream_base: "http://registry.test".into(),
            aux_prefix: "npmpubfile/i/x/".into(),
            abbreviate: true,
            origin: Origin::Public,
        };
        let built = b.build(raw).unwrap();
        let urls: Vec<&str> = built
            .aux
            .iter()
            .filter_map(|(_, v)| v["url"].as_str())
            .collect();
        assert_eq!(
            urls,
            ["http://registry.test/x/-/x-1.0.0.tgz"],
            "the other host's is not fetched"
        );
    }
}
