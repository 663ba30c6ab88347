//! Content checked against metadata, whatever a bundle's manifest says ([`crate::bundle`]):
//! every npm tarball against its packument's `shasum`/`integrity`, and every Go `.zip` and
//! `.mod` against the checksum-database records held beside it (`h1:` hashes, as `go.sum` has
//! them). A blob can be self-consistent (its name is its sha256) and still not be what its
//! metadata names: that is a forgery or a corruption, refused by `import` and quarantined by
//! `verify` ([`crate::verify`]).
//!
//! [`Checks::from_records`] reads the expectations from index records (metadata documents and
//! checksum-database lookups, through a closure that reads a blob's bytes);
//! [`Checks::check`] tests one blob index entry against them.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::store::digest::Hasher;
use crate::store::{Digest, Expect, MetaRecord};

/// What a blob index key must hash to.
#[derive(Debug, Clone)]
enum Want {
    /// npm: `dist.shasum` / `dist.integrity` from a packument.
    Npm { expect: Expect, from: String },
    /// Go: the `h1:` of a module zip (`dirhash.HashZip`) from a checksum-database lookup.
    GoZip { h1: String },
    /// Go: the `h1:` of a `go.mod` (`<module> <version>/go.mod h1:…`).
    GoMod { h1: String },
}

/// How stored content disagrees with the metadata that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Disagreement(pub String);

/// Expectations for blob index keys.
#[derive(Debug, Default)]
pub struct Checks {
    wants: HashMap<String, Vec<Want>>,
    /// Checksum database records by `<module>@<version>` (decoded): (zip h1, go.mod h1).
    go: HashMap<String, (Option<String>, Option<String>)>,
}

impl Checks {
    /// Reads the expectations out of `meta` (npm packuments) and `blobs` (the checksum
    /// database lookups among the blob index entries); `read` gives a blob's bytes.
    pub fn from_records<'a>(
        meta: impl IntoIterator<Item = (&'a str, &'a MetaRecord)>,
        blobs: impl IntoIterator<Item = (&'a str, &'a Digest)>,
        read: impl Fn(&Digest) -> Option<Vec<u8>>,
    ) -> Checks {
        let mut checks = Checks::default();
        for (key, rec) in meta {
            let public = key.starts_with("npmpub/");
            if !(public || key.starts_with("npm/")) {
                continue;
            }
            let Some(raw) = rec.raw.as_ref().and_then(|r| read(&r.digest)) else {
                continue;
            };
            checks.add_packument(key, &raw, public);
        }
        for (key, digest) in blobs {
            let Some(lookup) = key
                .strip_prefix("sumdb:")
                .and_then(|rest| rest.split_once("/lookup/"))
                .map(|(_, l)| l)
            else {
                continue;
            };
            if let Some(body) = read(digest) {
                checks.add_lookup(lookup, &body);
            }
        }
        checks
    }

    fn add_packument(&mut self, doc_key: &str, raw: &[u8], public: bool) {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(raw) else {
            return;
        };
        let Some(versions) = doc.get("versions").and_then(|v| v.as_object()) else {
            return;
        };
        for meta in versions.values() {
            let Some(dist) = meta.get("dist") else {
                continue;
            };
            let (Some(url), shasum, integrity) = (
                dist.get("tarball").and_then(|v| v.as_str()),
                dist.get("shasum").and_then(|v| v.as_str()),
                dist.get("integrity").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            let expect = Expect::npm(shasum, integrity);
            if expect.sha1.is_none() && expect.sha512.is_none() {
                continue;
            }
            let blob_key = if public {
                format!("npmpub-tgz:{url}")
            } else {
                match url.find("/api/v4/") {
                    Some(i) => format!("npm-tgz:{}", &url[i..]),
                    None => continue,
                }
            };
            self.wants.entry(blob_key).or_default().push(Want::Npm {
                expect,
                from: doc_key.to_string(),
            });
        }
    }

    fn add_lookup(&mut self, lookup: &str, body: &[u8]) {
        let text = String::from_utf8_lossy(body);
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(module), Some(version), Some(h1), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !h1.starts_with("h1:") {
                continue;
            }
            let (version, is_mod) = match version.strip_suffix("/go.mod") {
                Some(v) => (v, true),
                None => (version, false),
            };
            let entry = self.go.entry(format!("{module}@{version}")).or_default();
            if is_mod {
                entry.1 = Some(h1.to_string());
            } else {
                entry.0 = Some(h1.to_string());
            }
        }
        let _ = lookup;
    }

    /// The expectations of one blob index key (Go keys are matched on `<module>@<version>`).
    fn wants_for(&self, key: &str) -> Vec<Want> {
        let mut out = self.wants.get(key).cloned().unwrap_or_default();
        if !(key.starts_with("gopub/") || key.starts_with("go/p:")) {
            return out;
        }
        for (ext, is_zip) in [(".zip", true), (".mod", false)] {
            let Some(stem) = key.strip_suffix(ext) else {
                continue;
            };
            // `gopub/<module>@<version>` or `go/p:<project, which may hold '/'>/<module>@<version>`.
            let found = match stem.strip_prefix("gopub/") {
                Some(mv) => self.go.get(mv),
                None => self
                    .go
                    .iter()
                    .find(|(mv, _)| stem.ends_with(&format!("/{mv}")))
                    .map(|(_, v)| v),
            };
            if let Some((zip, gomod)) = found {
                match (is_zip, zip, gomod) {
                    (true, Some(h1), _) => out.push(Want::GoZip { h1: h1.clone() }),
                    (false, _, Some(h1)) => out.push(Want::GoMod { h1: h1.clone() }),
                    _ => {}
                }
            }
        }
        out
    }

    /// Whether the blob at `path`, indexed under `key`, is what its metadata names. `Err` says
    /// how it disagrees.
    pub fn check(&self, key: &str, path: &Path) -> Result<(), Disagreement> {
        for want in self.wants_for(key) {
            match want {
                Want::Npm { expect, from } => {
                    let mut hasher = Hasher::new(&expect);
                    let len = hash_file(path, |chunk| hasher.update(chunk))?;
                    hasher.verify(&expect, len).map_err(|why| {
                        Disagreement(format!("{key}: the tarball disagrees with the shasum/integrity of its packument {from}: {why}"))
                    })?;
                }
                Want::GoZip { h1 } => {
                    let got = zip_h1(path)?;
                    if got != h1 {
                        return Err(Disagreement(format!(
                            "{key}: the module zip hashes to {got}, the checksum database says {h1}"
                        )));
                    }
                }
                Want::GoMod { h1 } => {
                    let mut h = Sha256::new();
                    hash_file(path, |chunk| h.update(chunk))?;
                    let got = h1_of(&[("go.mod".to_string(), h.finalize().into())]);
                    if got != h1 {
                        return Err(Disagreement(format!(
                            "{key}: the go.mod hashes to {got}, the checksum database says {h1}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// How many blob index keys have an expectation.
    pub fn len(&self) -> usize {
        self.wants.len() + self.go.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hash_file(path: &Path, mut update: impl FnMut(&[u8])) -> Result<u64, Disagreement> {
    let mut f =
        std::fs::File::open(path).map_err(|e| Disagreement(format!("{}: {e}", path.display())))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| Disagreement(format!("{}: {e}", path.display())))?;
        if k == 0 {
            return Ok(n);
        }
        update(&buf[..k]);
        n += k as u64;
    }
}

/// Go's `dirhash.Hash1`: sha256 over `"<sha256 hex>  <name>\n"` of every file, sorted by name.
fn h1_of(files: &[(String, [u8; 32])]) -> String {
    let mut sorted: Vec<&(String, [u8; 32])> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    for (name, sum) in sorted {
        h.update(format!("{}  {name}\n", hex::encode(sum)).as_bytes());
    }
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

/// Go's `dirhash.HashZip`: [`h1_of`] over every entry of the zip, named as in the zip.
fn zip_h1(path: &Path) -> Result<String, Disagreement> {
    let f =
        std::fs::File::open(path).map_err(|e| Disagreement(format!("{}: {e}", path.display())))?;
    let mut zip =
        zip::ZipArchive::new(f).map_err(|e| Disagreement(format!("not a valid zip: {e}")))?;
    let mut files = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Disagreement(format!("zip entry {i} is unreadable: {e}")))?;
        let name = entry.name().to_string();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = entry
                .read(&mut buf)
                .map_err(|e| Disagreement(format!("zip entry {name:?}: {e}")))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
        }
        files.push((name, h.finalize().into()));
    }
    Ok(h1_of(&files))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The h1 of a one-file set, as `go mod download -json` would print it: checked against
    /// Go's algorithm written out by hand.
    #[test]
    fn h1_is_gos_dirhash() {
        let sum: [u8; 32] = Sha256::digest(b"module example.com/x\n").into();
        let line = format!("{}  go.mod\n", hex::encode(sum));
        let want = format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(line.as_bytes()))
        );
        assert_eq!(h1_of(&[("go.mod".into(), sum)]), want);
    }

    #[test]
    fn lookups_give_zip_and_mod_hashes() {
        let mut c = Checks::default();
        c.add_lookup(
            "example.com/x@v1.0.0",
            b"123\nexample.com/x v1.0.0 h1:zip=\nexample.com/x v1.0.0/go.mod h1:mod=\n\ngo.sum database tree\n",
        );
        assert!(
            matches!(&c.wants_for("gopub/example.com/x@v1.0.0.zip")[..], [Want::GoZip { h1 }] if h1 == "h1:zip=")
        );
        assert!(
            matches!(&c.wants_for("gopub/example.com/x@v1.0.0.mod")[..], [Want::GoMod { h1 }] if h1 == "h1:mod=")
        );
        assert!(c.wants_for("gopub/example.com/x@v1.0.0.info").is_empty());
    }
}
