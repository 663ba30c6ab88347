//! The sled index: typed, versioned records in a few trees.
//!
//! - `meta`: [`MetaRecord`] per metadata document (npm packument per route scope, Go list, …);
//! - `blobs`: [`BlobEntry`] per upstream file (tarball, zip, …) → its content digest;
//! - `aux`: adapter-owned small records (e.g. npm file name → upstream tarball + shasum);
//! - `auth`: [`Decision`] per (credential hash, scope): what the upstream said to whom;
//! - `ops`: the last run of each maintenance command (`crate::status::runs`), never bundled.
//!
//! Values are JSON behind a one-byte format version. A record that fails to decode is logged,
//! counted and treated as absent: the caller refetches and overwrites it.
//!
//! Hot reads ([`Index::get_shared`]) keep the decoded record in a bounded memory memo, so a
//! cache hit does not decode JSON; every write of a key through this type drops its memo
//! entry, and nothing else writes the index while a process holds the data directory.

use std::any::Any;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use crate::error::StoreError;

const FORMAT: u8 = 1;

/// Records that failed to decode since start (exported as a metric).
pub static CORRUPT_RECORDS: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    Meta,
    Blobs,
    Aux,
    Auth,
    /// Last access time (unix ms) per blob digest, flushed in batches; for LRU eviction.
    Atime,
    /// Operator records: the last sync, import, gc and verify runs.
    Ops,
}

/// Where content came from. A name once served from GitLab stays GitLab's (pinning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Gitlab,
    Public,
}

/// One stored representation of a metadata document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// e.g. `json`, `json.gz`, `abbrev`, `abbrev.gz`.
    pub name: String,
    pub digest: Digest,
    pub len: u64,
    /// Strong ETag for this exact representation (quoted).
    pub etag: String,
    pub content_type: String,
}

/// A metadata document as last seen upstream, with its precomputed variants.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Unix milliseconds when the upstream last confirmed this revision.
    pub fetched_at: u64,
    /// The upstream's validator, for `If-None-Match` revalidation.
    pub etag: Option<String>,
    pub origin: Origin,
    /// The body exactly as the upstream sent it: variants can be rebuilt from it offline.
    pub raw: Option<Variant>,
    /// The public base URL the variants were built for (rebuilt when it changes).
    pub built_for: String,
    pub variants: Vec<Variant>,
    /// The content revision this record holds: the upstream ETag it was stored with, else
    /// `sha256:<digest of raw>`. Set when the body is stored (a 304 does not change it); the
    /// aux records written with the document carry it (see `cache::AUX_REVISION`). `None`
    /// in records written before revisions existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl MetaRecord {
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// One upstream file and the blob holding it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub content_type: String,
    /// Unix milliseconds.
    pub fetched_at: u64,
    pub etag: Option<String>,
    pub origin: Origin,
}

/// The shared-record namespace (object store) of "which blob answers this upstream file".
pub const SHARED_BLOBS: &str = "blobs";

/// A [`BlobEntry`] as the nodes share it, with the key it answers (the record's object name
/// is only the key's hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharedBlob {
    pub key: String,
    pub entry: BlobEntry,
}

/// What the upstream answered a credential for a scope. Only the credential's sha256 is kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Decision {
    /// Unix milliseconds.
    pub at: u64,
    /// 200 = allowed; anything else is the refusal to repeat.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub www_authenticate: Option<String>,
    /// For a scope whose document differs per caller: the record revision this allow was
    /// granted on (the caller may be served that revision only). `None`: any revision for
    /// shared scopes, no revision (ask again) for per-caller ones; decisions stored before
    /// revisions existed decode as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.status < 300
    }
}

/// A full scan: decoded records, and the keys of records that do not decode.
pub type Scanned<T> = (Vec<(String, T)>, Vec<String>);

/// Decoded records by (tree, key), for [`Index::get_shared`].
type Memo = moka::sync::Cache<(Tree, Box<str>), Arc<dyn Any + Send + Sync>>;

/// Records memoised at most.
const MEMO_ENTRIES: u64 = 100_000;

pub struct Index {
    memo: Memo,
    db: sled::Db,
    meta: sled::Tree,
    blobs: sled::Tree,
    aux: sled::Tree,
    auth: sled::Tree,
    atime: sled::Tree,
    ops: sled::Tree,
}

impl Index {
    #[allow(clippy::disallowed_methods)] // store/ owns the index
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(16 << 20)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Index {
            memo: moka::sync::Cache::new(MEMO_ENTRIES),
            meta: db.open_tree("meta")?,
            blobs: db.open_tree("blobs")?,
            aux: db.open_tree("aux")?,
            auth: db.open_tree("auth")?,
            atime: db.open_tree("atime")?,
            ops: db.open_tree("ops")?,
            db,
        })
    }

    fn tree(&self, t: Tree) -> &sled::Tree {
        match t {
            Tree::Meta => &self.meta,
            Tree::Blobs => &self.blobs,
            Tree::Aux => &self.aux,
            Tree::Auth => &self.auth,
            Tree::Atime => &self.atime,
            Tree::Ops => &self.ops,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, t: Tree, key: &str) -> Result<Option<T>, StoreError> {
        let Some(v) = self.tree(t).get(key.as_bytes())? else {
            return Ok(None);
        };
        match decode(&v) {
            Ok(x) => Ok(Some(x)),
            Err(reason) => {
                CORRUPT_RECORDS.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tree = ?t, key, %reason, "index record does not decode; treating as absent");
                Ok(None)
            }
        }
    }

    /// A record, decoded once and shared: repeated reads of an unchanged key cost a memory
    /// lookup. A key read as another type than it was memoised as is decoded again.
    pub fn get_shared<T>(&self, t: Tree, key: &str) -> Result<Option<Arc<T>>, StoreError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let memo_key = (t, Box::<str>::from(key));
        if let Some(hit) = self.memo.get(&memo_key) {
            if let Ok(v) = hit.downcast::<T>() {
                return Ok(Some(v));
            }
        }
        let Some(v) = self.get::<T>(t, key)? else {
            return Ok(None);
        };
        let v = Arc::new(v);
        self.memo.insert(memo_key, v.clone());
        Ok(Some(v))
    }

    fn forget(&self, t: Tree, key: &str) {
        self.memo.invalidate(&(t, Box::<str>::from(key)));
    }

    pub fn put<T: Serialize>(&self, t: Tree, key: &str, value: &T) -> Result<(), StoreError> {
        let mut buf = vec![FORMAT];
        serde_json::to_writer(&mut buf, value).map_err(|e| StoreError::Decode {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        self.tree(t).insert(key.as_bytes(), buf)?;
        self.forget(t, key);
        Ok(())
    }

    pub fn remove(&self, t: Tree, key: &str) -> Result<(), StoreError> {
        self.tree(t).remove(key.as_bytes())?;
        self.forget(t, key);
        Ok(())
    }

    /// All (key, value) pairs of a tree under a key prefix; undecodable ones are skipped.
    pub fn scan<T: DeserializeOwned>(
        &self,
        t: Tree,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(t).scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            if let (Ok(k), Ok(v)) = (String::from_utf8(k.to_vec()), decode(&v)) {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// How many keys of a tree start with `prefix` (nothing decoded).
    pub fn count_prefix(&self, t: Tree, prefix: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for k in self.tree(t).scan_prefix(prefix.as_bytes()).keys() {
            k?;
            n += 1;
        }
        Ok(n)
    }

    /// Every record of a tree: decoded ones, and the keys of those that do not decode.
    pub fn scan_all<T: DeserializeOwned>(&self, t: Tree) -> Result<Scanned<T>, StoreError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for item in self.tree(t).iter() {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            match decode(&v) {
                Ok(x) => ok.push((key, x)),
                Err(_) => bad.push(key),
            }
        }
        Ok((ok, bad))
    }

    /// Raw JSON values of a tree (for bundles), with keys.
    pub fn export_tree(&self, t: Tree) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(t).iter() {
            let (k, v) = item?;
            if let (Ok(k), Ok(v)) = (
                String::from_utf8(k.to_vec()),
                decode::<serde_json::Value>(&v),
            ) {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Apply many writes at once (one sled batch per tree).
    pub fn apply(
        &self,
        t: Tree,
        entries: &[(String, serde_json::Value)],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            let mut buf = vec![FORMAT];
            serde_json::to_writer(&mut buf, v).map_err(|e| StoreError::Decode {
                key: k.clone(),
                reason: e.to_string(),
            })?;
            batch.insert(k.as_bytes(), buf);
        }
        self.tree(t).apply_batch(batch)?;
        for (k, _) in entries {
            self.forget(t, k);
        }
        Ok(())
    }

    pub fn flush_sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

/// Why a stored record does not decode.
#[derive(Debug, thiserror::Error)]
enum BadRecord {
    #[error("unknown record format {0}")]
    Format(u8),
    #[error("empty record")]
    Empty,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

fn decode<T: DeserializeOwned>(v: &[u8]) -> Result<T, BadRecord> {
    match v.split_first() {
        Some((&FORMAT, rest)) => Ok(serde_json::from_slice(rest)?),
        Some((other, _)) => Err(BadRecord::Format(*other)),
        None => Err(BadRecord::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let d = Decision {
            at: 1,
            status: 200,
            body: None,
            www_authenticate: None,
            revision: Some("\"abc\"".into()),
        };
        idx.put(Tree::Auth, "k", &d).unwrap();
        let back: Decision = idx.get(Tree::Auth, "k").unwrap().unwrap();
        assert_eq!(back.status, 200);
        assert_eq!(back.revision.as_deref(), Some("\"abc\""));
        // A decision stored before revisions existed decodes as "no revision".
        let old: Decision = serde_json::from_str(r#"{"at":1,"status":200}"#).unwrap();
        assert_eq!(old.revision, None);
        idx.tree(Tree::Auth)
            .insert("bad", &b"\x09junk"[..])
            .unwrap();
        assert!(idx.get::<Decision>(Tree::Auth, "bad").unwrap().is_none());
    }
}
