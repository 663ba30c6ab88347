//! `packrat gc` (and `serve`'s background eviction): bring the blob store under a size.
//!
//! Order of eviction: blobs no index record points at (old metadata revisions, leftovers)
//! first; then files (tarballs, zips) least recently used first, by the access times `serve`
//! batches into the index. Blobs that a synced lockfile or manifest still needs (recorded by
//! `packrat sync` under `mirror/`) are kept unless `include_pinned`. Metadata variants of
//! current records are never evicted (they are small, and serving depends on them).

use std::collections::{HashMap, HashSet};

use crate::error::StoreError;
use crate::progress::Progress;
use crate::store::{BlobEntry, Digest, MetaRecord, Store, Tree};

/// Aux prefix under which `sync` records the blob keys a mirror must keep.
pub const MIRROR_PREFIX: &str = "mirror/";

/// The shared-record namespace of access-time batches (`digest hex → unix ms`), one object
/// per batch per node.
pub const SHARED_ATIMES: &str = "atime";

#[derive(Debug, Default)]
pub struct Report {
    pub before: u64,
    pub after: u64,
    pub evicted: Vec<(Digest, u64)>,
    pub kept_pinned: u64,
}

pub fn run(store: &Store, max_size: u64, include_pinned: bool) -> Result<Report, StoreError> {
    let index = &store.index;
    let blobs = store.blobs.walk();
    let before: u64 = blobs.iter().map(|l| l.size).sum();
    let mut report = Report {
        before,
        after: before,
        ..Report::default()
    };
    if before <= max_size {
        return Ok(report);
    }
    if store.blobs.is_shared() {
        return run_shared(store, &blobs, max_size, include_pinned, report);
    }
    let (records, _) = index.scan_all::<MetaRecord>(Tree::Meta)?;
    let metadata: HashSet<Digest> = records
        .iter()
        .flat_map(|(_, r)| r.variants.iter().chain(r.raw.iter()).map(|v| v.digest))
        .collect();
    let (entries, _) = index.scan_all::<BlobEntry>(Tree::Blobs)?;
    let by_key: HashMap<&str, &BlobEntry> = entries.iter().map(|(k, e)| (k.as_str(), e)).collect();
    let (keys_of, pinned) = keys_and_pins(store, &entries, &by_key)?;
    let atime = |d: &Digest, fallback: u64| -> u64 {
        index
            .get::<u64>(Tree::Atime, &d.hex())
            .ok()
            .flatten()
            .unwrap_or(fallback)
    };
    // (priority, last use, digest, size): orphans first, then LRU files.
    let mut candidates: Vec<(u8, u64, Digest, u64)> = Vec::new();
    for listed in &blobs {
        let (Some(d), size) = (&listed.digest, &listed.size) else {
            continue;
        };
        if metadata.contains(d) {
            continue;
        }
        match keys_of.get(d) {
            None => candidates.push((0, 0, *d, *size)),
            Some(keys) => {
                if pinned.contains(d) && !include_pinned {
                    report.kept_pinned += 1;
                    continue;
                }
                let fetched = keys
                    .iter()
                    .filter_map(|k| by_key.get(k.as_str()))
                    .map(|e| e.fetched_at)
                    .max()
                    .unwrap_or(0);
                candidates.push((1, atime(d, fetched), *d, *size));
            }
        }
    }
    candidates.sort_by_key(|&(prio, used, _, _)| (prio, used));
    let order = candidates.into_iter().map(|(_, _, d, size)| (d, size));
    evict(store, &keys_of, order, max_size, &mut report)?;
    index.flush_sync()?;
    Ok(report)
}

/// `gc` on a shared bucket: one node's index does not know what the others reference, so
/// there are no orphans here; every blob is ranked by its last access across nodes (the
/// batches every node writes, this node's own times, else when this node fetched it) and
/// the least recently used go first. This node's mirror pins are kept.
fn run_shared(
    store: &Store,
    blobs: &[crate::store::Listed],
    max_size: u64,
    include_pinned: bool,
    mut report: Report,
) -> Result<Report, StoreError> {
    let index = &store.index;
    let mut last: HashMap<Digest, u64> = HashMap::new();
    let mut note = |d: Digest, t: u64| {
        let e = last.entry(d).or_insert(0);
        *e = (*e).max(t);
    };
    let batches = store.blobs.shared_scan(SHARED_ATIMES)?;
    let consumed: Vec<String> = batches.iter().map(|(name, _)| name.clone()).collect();
    for (_, batch) in &batches {
        let Ok(map) = serde_json::from_slice::<HashMap<String, u64>>(batch) else {
            continue;
        };
        for (hex, t) in map {
            if let Some(d) = Digest::parse(&hex) {
                note(d, t);
            }
        }
    }
    let (local, _) = index.scan_all::<u64>(Tree::Atime)?;
    for (hex, t) in local {
        if let Some(d) = Digest::parse(&hex) {
            note(d, t);
        }
    }
    let (entries, _) = index.scan_all::<BlobEntry>(Tree::Blobs)?;
    for (_, e) in &entries {
        note(e.digest, e.fetched_at);
    }
    let by_key: HashMap<&str, &BlobEntry> = entries.iter().map(|(k, e)| (k.as_str(), e)).collect();
    let (keys_of, pinned) = keys_and_pins(store, &entries, &by_key)?;
    let stored: HashSet<Digest> = blobs.iter().filter_map(|l| l.digest).collect();
    let mut candidates: Vec<(u64, Digest, u64)> = Vec::new();
    for listed in blobs {
        let Some(d) = listed.digest else { continue };
        if pinned.contains(&d) && !include_pinned {
            report.kept_pinned += 1;
            continue;
        }
        candidates.push((last.get(&d).copied().unwrap_or(0), d, listed.size));
    }
    candidates.sort_by_key(|&(used, _, _)| used);
    let order = candidates.into_iter().map(|(_, d, size)| (d, size));
    evict(store, &keys_of, order, max_size, &mut report)?;
    // The batches read are replaced by one, of the blobs still stored: the records stay
    // few however long the nodes run.
    let evicted: HashSet<Digest> = report.evicted.iter().map(|(d, _)| *d).collect();
    let merged: serde_json::Map<String, serde_json::Value> = last
        .iter()
        .filter(|(d, _)| !evicted.contains(d) && stored.contains(d))
        .map(|(d, t)| (d.hex(), serde_json::Value::from(*t)))
        .collect();
    let bytes = serde_json::to_vec(&merged).map_err(|e| StoreError::Decode {
        key: SHARED_ATIMES.into(),
        reason: e.to_string(),
    })?;
    let name = format!(
        "gc-{}-{:016x}",
        crate::store::now_ms(),
        rand::random::<u64>()
    );
    store
        .blobs
        .shared_put_blocking(SHARED_ATIMES, &name, bytes.into())?;
    store.blobs.shared_remove(&consumed)?;
    index.flush_sync()?;
    Ok(report)
}

/// Which index keys name each blob, and which blobs a mirror pin keeps.
#[allow(clippy::type_complexity)]
fn keys_and_pins(
    store: &Store,
    entries: &[(String, BlobEntry)],
    by_key: &HashMap<&str, &BlobEntry>,
) -> Result<(HashMap<Digest, Vec<String>>, HashSet<Digest>), StoreError> {
    let mut keys_of: HashMap<Digest, Vec<String>> = HashMap::new();
    for (k, e) in entries {
        keys_of.entry(e.digest).or_default().push(k.clone());
    }
    let pinned = store
        .index
        .scan::<String>(Tree::Aux, MIRROR_PREFIX)?
        .into_iter()
        .filter_map(|(_, blob_key)| by_key.get(blob_key.as_str()).map(|e| e.digest))
        .collect();
    Ok((keys_of, pinned))
}

/// Evicts blobs in `order` (least wanted first) until the store is within `max_size`: their
/// index records, access times and bytes.
fn evict(
    store: &Store,
    keys_of: &HashMap<Digest, Vec<String>>,
    order: impl ExactSizeIterator<Item = (Digest, u64)>,
    max_size: u64,
    report: &mut Report,
) -> Result<(), StoreError> {
    let index = &store.index;
    let mut progress = Progress::new("gc", order.len() as u64);
    for (d, size) in order {
        if report.after <= max_size {
            break;
        }
        for k in keys_of.get(&d).into_iter().flatten() {
            index.remove(Tree::Blobs, k)?;
        }
        index.remove(Tree::Atime, &d.hex())?;
        store.blobs.remove(&d)?;
        report.after = report.after.saturating_sub(size);
        report.evicted.push((d, size));
        progress.inc();
    }
    progress.finish();
    Ok(())
}
