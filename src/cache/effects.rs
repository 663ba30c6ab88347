//! The local effects of writes that went through the upstream (publish, dist-tags, deletes):
//! what they change in the cache, in one place, so the adapters never touch the index
//! directly. Only GitLab's success gets here.
//!
//! - every adapter-filled record is refilled on its next read ([`Core::records_written`]);
//!   records a write removed an item from are edited or dropped in place
//!   ([`Core::edit_records`], [`Core::remove_records`]);
//! - an npm name's packuments revalidate at every prefix and no remembered "not found" for it
//!   stands ([`Core::npm_name_written`]);
//! - tarballs of deleted npm versions, and files of deleted packages, stop being served
//!   ([`Core::npm_files_gone`], [`Core::forget_blobs`]);
//! - a Go module's `@v/list` revalidates ([`Core::go_module_written`]);
//! - a published tarball goes from the request body into the store ([`Core::put_blob`]).

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;

use super::records::Stamped;
use super::records::EPOCH_KEY;
use super::Core;
use crate::error::Error;
use crate::store::{now_ms, BlobEntry, Digest, Expect, MetaRecord, Origin, Tree};

impl Core {
    /// A write went through: every adapter-filled record is refilled on its next read
    /// (stored copies stay usable for stale-if-error).
    pub fn records_written(&self) -> Result<(), Error> {
        Ok(self.store.index.put(Tree::Aux, EPOCH_KEY, &now_ms())?)
    }

    /// A stored record without any check (for write paths that only look things up).
    pub fn peek_record<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Stamped<T>>, Error> {
        Ok(self.store.index.get(Tree::Aux, key)?)
    }

    /// Edit every record under `prefix` in place (their age is kept); `edit` returns whether
    /// it changed the record. Returns how many changed.
    pub fn edit_records<T, F>(&self, prefix: &str, mut edit: F) -> Result<usize, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&str, &mut T) -> bool,
    {
        let mut changed = 0;
        for (key, mut rec) in self.store.index.scan::<Stamped<T>>(Tree::Aux, prefix)? {
            if edit(&key, &mut rec.value) {
                self.store.index.put(Tree::Aux, &key, &rec)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Remove the adapter records under `prefix` whose key satisfies `matches`.
    pub fn remove_records(
        &self,
        prefix: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<usize, Error> {
        let mut removed = 0;
        for (key, _) in self.store.index.scan::<IgnoredAny>(Tree::Aux, prefix)? {
            if matches(&key) {
                self.store.index.remove(Tree::Aux, &key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Make the metadata documents under `prefix` whose key satisfies `matches` stale, so the
    /// next read revalidates upstream. They stay usable for stale-if-error.
    pub fn invalidate_metadata(
        &self,
        prefix: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<usize, Error> {
        let ttl = u64::try_from(self.config.cache.metadata_ttl.as_millis()).unwrap_or(u64::MAX);
        let stale_at = now_ms().saturating_sub(ttl.saturating_add(1));
        let mut changed = 0;
        for (key, mut rec) in self.store.index.scan::<MetaRecord>(Tree::Meta, prefix)? {
            if matches(&key) && rec.fetched_at > stale_at {
                rec.fetched_at = stale_at;
                self.store.index.put(Tree::Meta, &key, &rec)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Forget which blob answers the upstream files under `prefix` whose key satisfies
    /// `matches` (a deleted version must not be served from the cache; the bytes stay for gc).
    pub fn forget_blobs(
        &self,
        prefix: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<usize, Error> {
        let mut removed = 0;
        for (key, _) in self.store.index.scan::<IgnoredAny>(Tree::Blobs, prefix)? {
            if matches(&key) {
                self.store.index.remove(Tree::Blobs, &key)?;
                self.unshare_record(key);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Commit bytes the client sent (a published tarball, in chunks) as the blob answering `key`,
    /// verified against `expect` like any download.
    pub async fn put_blob<C: AsRef<[u8]>>(
        &self,
        key: &str,
        chunks: impl Iterator<Item = Result<C, Error>>,
        expect: Expect,
        content_type: &str,
        origin: Origin,
    ) -> Result<Digest, Error> {
        let mut writer = self.store.blobs.create(expect).await?;
        for chunk in chunks {
            writer.write(chunk?.as_ref()).await?;
        }
        let info = writer.commit().await?;
        let entry = BlobEntry {
            digest: info.digest,
            size: info.len,
            content_type: content_type.to_string(),
            fetched_at: now_ms(),
            etag: None,
            origin,
        };
        self.store.index.put(Tree::Blobs, key, &entry)?;
        self.share_record(key, &entry).await;
        Ok(info.digest)
    }

    /// Every prefix's packument (and so dist-tags) of `name` revalidates on its next read, and
    /// no remembered "not found" for it stands: the next read by anyone sees the write.
    pub fn npm_name_written(&self, name: &str) -> Result<(), Error> {
        let suffix = format!("/{name}");
        self.invalidate_metadata("npm/", |k| k.ends_with(&suffix))?;
        self.decisions
            .forget_not_found(|scope| scope.starts_with("npm") && scope.ends_with(&suffix))?;
        Ok(())
    }

    /// Cached tarballs of `name` (one file, or all when `file` is `None`) are no longer served
    /// from the cache: the next request asks the upstream, which knows whether they still exist
    /// (a version deleted and published again must never be served from the old bytes). A file
    /// known to be deleted also loses its tarball record at every prefix, so the tarball route
    /// answers 404 even while a download of it is still landing in the cache.
    pub fn npm_files_gone(&self, name: &str, file: Option<&str>) -> Result<(), Error> {
        match file {
            Some(f) => {
                let suffix = format!("/{name}/-/{f}");
                self.forget_blobs("npm-tgz:", |k| k.ends_with(&suffix))?;
                let aux_suffix = format!("/{name}/{f}");
                self.remove_records("npmfile/", |k| k.ends_with(&aux_suffix))?;
            }
            None => {
                let infix = format!("/{name}/-/");
                self.forget_blobs("npm-tgz:", |k| k.contains(&infix))?;
            }
        }
        Ok(())
    }

    /// A Go module's `@v/list` at every project revalidates on its next read.
    pub fn go_module_written(&self, module: &str) -> Result<(), Error> {
        let suffix = format!("/{module}/list");
        self.invalidate_metadata("go/", |k| k.ends_with(&suffix))?;
        Ok(())
    }
}
