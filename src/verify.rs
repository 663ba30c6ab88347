//! `packrat verify`: re-hash every blob, check that every index entry points at a present,
//! correct blob, and that every npm tarball and Go module file is what its metadata says
//! (its packument's shasum/integrity, the checksum database's `h1:`, see [`crate::integrity`]);
//! move bad blobs to `quarantine/`, drop the entries that point at them (or at nothing),
//! report each fault. The caller exits 1 when the report is not clean.

use std::collections::HashSet;

use crate::error::StoreError;
use crate::progress::Progress;
use crate::store::{BlobEntry, BlobStore, Digest, MetaRecord, Store, Tree};

#[derive(Debug, Default)]
pub struct Report {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub entries_checked: u64,
    /// One line per fault found (and repaired by quarantine or removal).
    pub faults: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.faults.is_empty()
    }
}

pub fn run(store: &Store) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let quarantine = store.layout.quarantine();
    let blobs = store.blobs.walk();
    let mut good: HashSet<Digest> = HashSet::new();
    let mut progress = Progress::new("verify", blobs.len() as u64);
    for listed in blobs {
        report.blobs_checked += 1;
        let verdict = match listed.digest {
            None => Err("its name is not a sha256 digest where the store keeps it".to_string()),
            Some(d) => {
                // An object store's blob is re-hashed as it streams from the bucket (its disk
                // tier copy is not the one the other nodes read).
                let hashed = if store.blobs.is_shared() {
                    store.blobs.hash_listed(&listed)
                } else {
                    let local = store
                        .blobs
                        .local_path(&d)
                        .unwrap_or_else(|| listed.location.clone());
                    BlobStore::hash_file(&local)
                };
                match hashed {
                    Ok((got, len)) => {
                        report.bytes_checked += len;
                        if got != d {
                            Err(format!("content hashes to {got}, not {d}"))
                        } else {
                            good.insert(d);
                            Ok(())
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let path = listed.location;
        if let Err(reason) = verdict {
            let moved = store.blobs.quarantine(&path, &quarantine)?;
            let line = format!(
                "bad blob {}: {reason}; moved to {}",
                path.display(),
                moved.display()
            );
            progress.println(&line);
            report.faults.push(line);
        }
        progress.inc();
    }
    progress.finish();
    // Beside a shared bucket, this node's own metadata variants.
    for listed in store.blobs.walk_local() {
        report.blobs_checked += 1;
        let verdict = match listed.digest {
            None => Err("its name is not a sha256 digest where the store keeps it".to_string()),
            Some(d) => match BlobStore::hash_file(&listed.location) {
                Ok((got, len)) => {
                    report.bytes_checked += len;
                    if got == d {
                        good.insert(d);
                        Ok(())
                    } else {
                        Err(format!("content hashes to {got}, not {d}"))
                    }
                }
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(reason) = verdict {
            let moved = store
                .blobs
                .quarantine_local(&listed.location, &quarantine)?;
            report.faults.push(format!(
                "bad blob {}: {reason}; moved to {}",
                listed.location.display(),
                moved.display()
            ));
        }
    }

    let index = &store.index;
    let (entries, undecodable) = index.scan_all::<BlobEntry>(Tree::Blobs)?;
    for key in undecodable {
        report
            .faults
            .push(format!("index entry {key} does not decode; removed"));
        index.remove(Tree::Blobs, &key)?;
    }
    let mut present = Vec::with_capacity(entries.len());
    for (key, entry) in entries {
        report.entries_checked += 1;
        if good.contains(&entry.digest) {
            present.push((key, entry));
        } else {
            report.faults.push(format!(
                "index entry {key} points at missing or bad blob {}; removed (it will be fetched again)",
                entry.digest
            ));
            index.remove(Tree::Blobs, &key)?;
        }
    }
    let (records, undecodable) = index.scan_all::<MetaRecord>(Tree::Meta)?;
    // Content against metadata: self-consistent blobs that are not what their packument or
    // the checksum database names are quarantined like corrupt ones.
    let checks = crate::integrity::Checks::from_records(
        records.iter().map(|(k, r)| (k.as_str(), r)),
        present.iter().map(|(k, e)| (k.as_str(), &e.digest)),
        |d| {
            store
                .blobs
                .local_path(d)
                .and_then(|p| std::fs::read(p).ok())
        },
    );
    for (key, entry) in &present {
        let Some(path) = store.blobs.local_path(&entry.digest) else {
            continue;
        };
        if let Err(why) = checks.check(key, &path) {
            store.blobs.quarantine(&path, &quarantine)?;
            good.remove(&entry.digest);
            index.remove(Tree::Blobs, key)?;
            let line = format!("bad content {why}; moved to quarantine, index entry removed");
            report.faults.push(line);
        }
    }
    for key in undecodable {
        report
            .faults
            .push(format!("metadata record {key} does not decode; removed"));
        index.remove(Tree::Meta, &key)?;
    }
    for (key, rec) in records {
        report.entries_checked += 1;
        let missing = rec
            .variants
            .iter()
            .chain(rec.raw.iter())
            .find(|v| !good.contains(&v.digest));
        if let Some(v) = missing {
            report.faults.push(format!(
                "metadata record {key} points at missing or bad blob {} ({}); removed (it will be fetched again)",
                v.digest, v.name
            ));
            index.remove(Tree::Meta, &key)?;
        }
    }
    index.flush_sync()?;
    Ok(report)
}
