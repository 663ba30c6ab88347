//! Bundles: everything an offline mirror needs to serve, in one tar file.
//!
//! Layout, in this order (so import can check as it streams):
//! 1. `manifest.json`: format version, packrat version, created-at, counts, total bytes, the
//!    sha256 and size of every blob in the bundle, the sha256 of the index file;
//! 2. `manifest.sig` (signed bundles only, `export --sign`): an Ed25519 signature of the
//!    manifest's bytes ([`crate::signing`]); with `[offline] trusted_keys` set, import refuses
//!    a bundle without a valid one before it writes anything;
//! 3. `index.jsonl`: the index records needed to serve (metadata, blob entries, adapter
//!    records, pins). Never access decisions: no credential (not even a hash) leaves;
//! 4. `blobs/<sha256>`: the blobs, streamed from disk (exporting 10 GB needs no 10 GB of
//!    memory).
//!
//! A manifest that agrees with itself is not enough: before publishing, import checks every
//! npm tarball against its packument's shasum/integrity and every Go zip and go.mod against
//! the bundle's checksum-database records ([`crate::integrity`]).
//!
//! `--since OLD` leaves out the blobs OLD already carries. Import verifies every blob against
//! the manifest while staging it (verified, fsynced, not visible), checks the index digest and
//! that every record's blobs are in the bundle or already in the store, and only then
//! publishes everything. A truncated or tampered bundle is rejected and leaves the data
//! directory as it was; importing the same bundle twice is harmless.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::StoreError;
use crate::progress::Progress;
use crate::store::{
    now_ms, BlobEntry, Digest, Expect, MetaRecord, SharedBlob, StagedBlob, Store, Tree,
    SHARED_BLOBS,
};

pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SIGNATURE: &str = "manifest.sig";
const INDEX: &str = "index.jsonl";
const MAX_INDEX: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a packrat bundle ({1})")]
    NotABundle(String, String),
    #[error("{0}: the bundle is damaged or was tampered with: {1}; nothing was imported")]
    Damaged(String, String),
    #[error("{0}: this incremental bundle needs blobs the data directory does not have ({1} missing, e.g. {2}); import the bundle it was made --since first")]
    MissingBase(String, usize, String),
    #[error("{0}: {1}; nothing was imported (offline.trusted_keys lists the keys whose signature a bundle needs)")]
    Signature(String, String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub packrat_version: String,
    /// Unix milliseconds.
    pub created_at: u64,
    /// Index records in `index.jsonl`.
    pub entries: u64,
    pub blob_count: u64,
    pub total_bytes: u64,
    pub index_sha256: String,
    /// True when made with `--since`: some records' blobs are expected in the store already.
    pub incremental: bool,
    pub blobs: Vec<BlobRef>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    tree: String,
    key: String,
    value: serde_json::Value,
}

const TREES: [(Tree, &str); 3] = [
    (Tree::Meta, "meta"),
    (Tree::Blobs, "blobs"),
    (Tree::Aux, "aux"),
];

#[derive(Debug, Default)]
pub struct ExportReport {
    pub entries: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub skipped_since: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// [`crate::integrity`] over a bundle's records, reading blobs from where they are staged (or
/// already stored).
fn check_content(
    store: &Store,
    lines: &[Line],
    staged: &[StagedBlob],
) -> Result<(), crate::integrity::Disagreement> {
    let staged_at: HashMap<Digest, &Path> =
        staged.iter().map(|s| (s.info.digest, s.path())).collect();
    let path_of = |d: &Digest| -> std::path::PathBuf {
        staged_at
            .get(d)
            .map(|p| p.to_path_buf())
            .or_else(|| store.blobs.local_path(d))
            .unwrap_or_default()
    };
    let meta: Vec<(String, MetaRecord)> = lines
        .iter()
        .filter(|l| l.tree == "meta")
        .filter_map(|l| Some((l.key.clone(), serde_json::from_value(l.value.clone()).ok()?)))
        .collect();
    let blobs: Vec<(String, Digest)> = lines
        .iter()
        .filter(|l| l.tree == "blobs")
        .filter_map(|l| {
            let e: BlobEntry = serde_json::from_value(l.value.clone()).ok()?;
            Some((l.key.clone(), e.digest))
        })
        .collect();
    let checks = crate::integrity::Checks::from_records(
        meta.iter().map(|(k, r)| (k.as_str(), r)),
        blobs.iter().map(|(k, d)| (k.as_str(), d)),
        |d| std::fs::read(path_of(d)).ok(),
    );
    for (key, digest) in &blobs {
        checks.check(key, &path_of(digest))?;
    }
    Ok(())
}

/// The digests a set of records refers to.
fn referenced(lines: &[Line]) -> HashSet<Digest> {
    let mut out = HashSet::new();
    for l in lines {
        match l.tree.as_str() {
            "blobs" => {
                if let Ok(e) = serde_json::from_value::<BlobEntry>(l.value.clone()) {
                    out.insert(e.digest);
                }
            }
            "meta" => {
                if let Ok(r) = serde_json::from_value::<MetaRecord>(l.value.clone()) {
                    out.extend(r.variants.iter().chain(r.raw.iter()).map(|v| v.digest));
                }
            }
            _ => {}
        }
    }
    out
}

pub fn read_manifest(path: &Path) -> Result<Manifest, BundleError> {
    read_manifest_bytes(path).map(|(m, _)| m)
}

/// The manifest and its exact bytes (what a signature covers).
fn read_manifest_bytes(path: &Path) -> Result<(Manifest, Vec<u8>), BundleError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive.entries().map_err(io(path))?;
    let name = path.display().to_string();
    let mut first = entries
        .next()
        .ok_or_else(|| BundleError::NotABundle(name.clone(), "empty file".into()))?
        .map_err(|e| BundleError::NotABundle(name.clone(), e.to_string()))?;
    let entry_path = first
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if entry_path != MANIFEST {
        return Err(BundleError::NotABundle(
            name,
            format!("first entry is {entry_path:?}, not {MANIFEST}"),
        ));
    }
    let mut text = String::new();
    first
        .by_ref()
        .take(64 << 20)
        .read_to_string(&mut text)
        .map_err(|e| BundleError::Damaged(name.clone(), e.to_string()))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| BundleError::Damaged(name.clone(), format!("manifest: {e}")))?;
    if m.format != FORMAT {
        return Err(BundleError::NotABundle(
            name,
            format!("bundle format {} (this packrat reads {FORMAT})", m.format),
        ));
    }
    Ok((m, text.into_bytes()))
}

/// Write a bundle of everything cached (or only what `since` lacks) to `out`.
#[allow(clippy::disallowed_methods)] // the bundle file is the user's, outside the data directory
pub fn export(
    store: &Store,
    out: &Path,
    since: Option<&Path>,
    sign: Option<&crate::signing::SigningKey>,
) -> Result<ExportReport, BundleError> {
    let mut lines = Vec::new();
    let mut aux_keys = HashSet::new();
    for (tree, name) in TREES {
        for (key, value) in store.index.export_tree(tree)? {
            // No credential leaves, not even a hash; several credentials' copies of one
            // list become one.
            let key = match tree {
                Tree::Aux => match crate::packages_api::index::bundle_key(&key) {
                    Some(k) if aux_keys.insert(k.to_string()) => k.into_owned(),
                    _ => continue,
                },
                _ => key,
            };
            lines.push(Line {
                tree: name.to_string(),
                key,
                value,
            });
        }
    }
    let have: HashSet<Digest> = match since {
        Some(p) => read_manifest(p)?
            .blobs
            .iter()
            .filter_map(|b| Digest::parse(&b.sha256))
            .collect(),
        None => HashSet::new(),
    };
    let mut report = ExportReport::default();
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    let mut wanted: Vec<Digest> = referenced(&lines).into_iter().collect();
    wanted.sort();
    for d in wanted {
        if have.contains(&d) {
            report.skipped_since += 1;
            continue;
        }
        if let Some(meta) = store
            .blobs
            .local_path(&d)
            .and_then(|p| std::fs::metadata(p).ok())
        {
            blobs.push((d, meta.len()));
        }
    }
    let mut index_bytes = Vec::new();
    for l in &lines {
        serde_json::to_writer(&mut index_bytes, l)
            .map_err(|e| BundleError::Damaged("index".into(), e.to_string()))?;
        index_bytes.push(b'\n');
    }
    let manifest = Manifest {
        format: FORMAT,
        packrat_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: now_ms(),
        entries: lines.len() as u64,
        blob_count: blobs.len() as u64,
        total_bytes: blobs.iter().map(|(_, s)| s).sum(),
        index_sha256: hex::encode(Sha256::digest(&index_bytes)),
        incremental: since.is_some(),
        blobs: blobs
            .iter()
            .map(|(d, s)| BlobRef {
                sha256: d.hex(),
                size: *s,
            })
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BundleError::Damaged("manifest".into(), e.to_string()))?;

    // Write next to the target and rename at the end: a failed export leaves no bundle.
    let tmp = out.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let add = |tar: &mut tar::Builder<_>,
               name: &str,
               len: u64,
               data: &mut dyn Read|
     -> Result<(), BundleError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_mtime(manifest.created_at / 1000);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
            .map_err(io(Path::new(name)))
    };
    add(
        &mut tar,
        MANIFEST,
        manifest_bytes.len() as u64,
        &mut manifest_bytes.as_slice(),
    )?;
    if let Some(key) = sign {
        let sig = serde_json::to_vec_pretty(&key.sign(&manifest_bytes))
            .map_err(|e| BundleError::Damaged("signature".into(), e.to_string()))?;
        add(&mut tar, SIGNATURE, sig.len() as u64, &mut sig.as_slice())?;
    }
    add(
        &mut tar,
        INDEX,
        index_bytes.len() as u64,
        &mut index_bytes.as_slice(),
    )?;
    let mut progress = Progress::new("export", blobs.len() as u64);
    for (d, size) in &blobs {
        let path = store.blobs.local_path(d).unwrap_or_default();
        let f = std::fs::File::open(&path).map_err(io(&path))?;
        add(
            &mut tar,
            &format!("blobs/{}", d.hex()),
            *size,
            &mut f.take(*size),
        )?;
        report.bytes += size;
        progress.inc();
    }
    progress.finish();
    let mut w = tar.into_inner().map_err(io(&tmp))?;
    w.flush().map_err(io(&tmp))?;
    w.get_ref().sync_all().map_err(io(&tmp))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(io(out))?;
    report.entries = lines.len() as u64;
    report.blobs = blobs.len() as u64;
    Ok(report)
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub entries: u64,
    pub blobs_new: u64,
    pub blobs_present: u64,
    pub bytes: u64,
    /// The bundle carried a manifest signature (checked when `trusted_keys` are set).
    pub signed: bool,
    /// The bundle's manifest (what the status page summarises).
    pub manifest: Option<Manifest>,
}

impl ImportReport {
    /// An import's numbers and the bundle's manifest summary (never its blob list).
    pub fn details(&self, file: &std::path::Path) -> serde_json::Value {
        let r = self;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut v = serde_json::json!({
            "file": name,
            "entries": r.entries,
            "blobs_new": r.blobs_new,
            "blobs_present": r.blobs_present,
            "bytes": r.bytes,
            "signed": r.signed,
        });
        if let (Some(m), Some(obj)) = (&r.manifest, v.as_object_mut()) {
            obj.insert("format".into(), m.format.into());
            obj.insert("packrat_version".into(), m.packrat_version.clone().into());
            obj.insert("created_at".into(), m.created_at.into());
            obj.insert("blob_count".into(), m.blob_count.into());
            obj.insert("total_bytes".into(), m.total_bytes.into());
            obj.insert("incremental".into(), m.incremental.into());
            obj.insert("index_sha256".into(), m.index_sha256.clone().into());
        }
        v
    }
}

/// Load a bundle into the store, verifying everything before anything becomes visible. With
/// `trusted` keys, the manifest must carry a valid signature by one of them.
pub async fn import(
    store: &Store,
    path: &Path,
    trusted: &[[u8; 32]],
) -> Result<ImportReport, BundleError> {
    let name = path.display().to_string();
    let damaged = |why: String| BundleError::Damaged(name.clone(), why);
    let (manifest, manifest_bytes) = read_manifest_bytes(path)?;
    let expected: HashMap<String, u64> = manifest
        .blobs
        .iter()
        .map(|b| (b.sha256.clone(), b.size))
        .collect();
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive.entries().map_err(io(path))?;
    let _manifest_entry = entries.next();
    let mut index_entry = entries
        .next()
        .ok_or_else(|| damaged("the index is missing (truncated?)".into()))?
        .map_err(|e| damaged(e.to_string()))?;
    // A signature, when there is one, comes between the manifest and the index.
    let mut signature = None;
    if index_entry
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
        == SIGNATURE
    {
        let mut text = String::new();
        index_entry
            .by_ref()
            .take(64 << 10)
            .read_to_string(&mut text)
            .map_err(|e| damaged(format!("signature: {e}")))?;
        signature = Some(
            serde_json::from_str::<crate::signing::ManifestSignature>(&text)
                .map_err(|e| damaged(format!("signature: {e}")))?,
        );
        index_entry = entries
            .next()
            .ok_or_else(|| damaged("the index is missing (truncated?)".into()))?
            .map_err(|e| damaged(e.to_string()))?;
    }
    if !trusted.is_empty() {
        let why = match &signature {
            None => Some("the bundle is not signed (export it with --sign)".to_string()),
            Some(sig) if !crate::signing::verify(&manifest_bytes, sig, trusted) => Some(format!(
                "its manifest signature (by {}) is not valid for any trusted key",
                sig.key
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(BundleError::Signature(name, why));
        }
    }
    if index_entry
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
        != INDEX
    {
        return Err(damaged("the second entry is not the index".into()));
    }
    let mut index_bytes = Vec::new();
    index_entry
        .by_ref()
        .take(MAX_INDEX)
        .read_to_end(&mut index_bytes)
        .map_err(|e| damaged(format!("index: {e}")))?;
    if hex::encode(Sha256::digest(&index_bytes)) != manifest.index_sha256 {
        return Err(damaged(
            "the index does not match the manifest's digest".into(),
        ));
    }
    let mut lines = Vec::new();
    for l in index_bytes.lines() {
        let l = l.map_err(|e| damaged(e.to_string()))?;
        if l.is_empty() {
            continue;
        }
        lines.push(
            serde_json::from_str::<Line>(&l).map_err(|e| damaged(format!("index line: {e}")))?,
        );
    }
    if lines.len() as u64 != manifest.entries {
        return Err(damaged(format!(
            "{} index records, the manifest says {}",
            lines.len(),
            manifest.entries
        )));
    }

    let mut staged: Vec<StagedBlob> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut report = ImportReport {
        signed: signature.is_some(),
        ..ImportReport::default()
    };
    let mut progress = Progress::new("import", manifest.blob_count);
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(format!("truncated or corrupt archive: {e}")))?;
        let entry_name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let Some(hex) = entry_name.strip_prefix("blobs/") else {
            return Err(damaged(format!("unexpected entry {entry_name:?}")));
        };
        let Some(&size) = expected.get(hex) else {
            return Err(damaged(format!("blob {hex} is not in the manifest")));
        };
        let digest = Digest::parse(hex).ok_or_else(|| damaged(format!("bad blob name {hex:?}")))?;
        if !seen.insert(hex.to_string()) {
            return Err(damaged(format!("blob {hex} appears twice")));
        }
        let mut writer = store
            .blobs
            .create(Expect {
                sha256: Some(digest.0),
                size: Some(size),
                max_size: Some(size),
                ..Expect::default()
            })
            .await?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| damaged(format!("blob {hex}: {e} (truncated?)")))?;
            if n == 0 {
                break;
            }
            writer
                .write(&buf[..n])
                .await
                .map_err(|e| damaged(format!("blob {hex}: {e}")))?;
        }
        let s = writer
            .stage()
            .await
            .map_err(|e| damaged(format!("blob {hex}: {e}")))?;
        report.bytes += s.info.len;
        staged.push(s);
        progress.inc();
    }
    progress.finish();
    if seen.len() as u64 != manifest.blob_count {
        return Err(damaged(format!(
            "{} of {} blobs present (truncated?)",
            seen.len(),
            manifest.blob_count
        )));
    }
    // Every record's blobs must be in the bundle or already here.
    let missing: Vec<Digest> = referenced(&lines)
        .into_iter()
        .filter(|d| !seen.contains(&d.hex()) && !store.blobs.contains(d))
        .collect();
    if let Some(first) = missing.first() {
        return Err(BundleError::MissingBase(name, missing.len(), first.hex()));
    }
    // Content against metadata: a blob whose name is its digest may still not be what its
    // packument or the checksum database says (a forged, self-consistent bundle).
    check_content(store, &lines, &staged).map_err(|d| damaged(d.0))?;

    // Everything checked out: publish blobs, then the records that point at them. Metadata
    // variants go to this node's own disk (beside a shared bucket, they are per node).
    let variants: HashSet<Digest> = lines
        .iter()
        .filter(|l| l.tree == "meta")
        .filter_map(|l| serde_json::from_value::<MetaRecord>(l.value.clone()).ok())
        .flat_map(|r| r.variants.into_iter().chain(r.raw).map(|v| v.digest))
        .collect();
    for s in staged {
        if store.blobs.contains(&s.info.digest) {
            report.blobs_present += 1;
        } else {
            report.blobs_new += 1;
        }
        if variants.contains(&s.info.digest) {
            s.publish_local()?;
        } else {
            s.publish()?;
        }
    }
    for (tree, tname) in TREES {
        let batch: Vec<(String, serde_json::Value)> = lines
            .iter()
            .filter(|l| l.tree == tname)
            .map(|l| (l.key.clone(), l.value.clone()))
            .collect();
        store.index.apply(tree, &batch)?;
    }
    // On a shared bucket, the other nodes learn which blob answers each imported file.
    for l in lines.iter().filter(|l| l.tree == "blobs") {
        let Ok(entry) = serde_json::from_value::<BlobEntry>(l.value.clone()) else {
            continue;
        };
        let rec = SharedBlob {
            key: l.key.clone(),
            entry,
        };
        if let Ok(bytes) = serde_json::to_vec(&rec) {
            store
                .blobs
                .shared_put_blocking(SHARED_BLOBS, &l.key, bytes.into())?;
        }
    }
    store.index.flush_sync()?;
    report.entries = lines.len() as u64;
    report.manifest = Some(manifest);
    Ok(report)
}
