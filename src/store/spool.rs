//! Request bodies too large to hold in memory while they arrive (npm publish) are spooled to
//! a temp file in the store's tmp area. The file is never visible content: dropping the
//! spool deletes it, and a crash leaves it for [`super::Layout::init`] to remove.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;

use crate::error::StoreError;

/// A body being received into, then read back from, a temp file.
pub struct Spool {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    len: u64,
}

impl Spool {
    pub(super) async fn create(path: PathBuf) -> Result<Self, StoreError> {
        let file = super::tmp::create_new_tmp(&path).await?;
        Ok(Spool {
            path,
            file: Some(file),
            len: 0,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append a chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let file = self.file.as_mut().ok_or(StoreError::Finished("spool"))?;
        file.write_all(chunk)
            .await
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// The body is complete: flush it and close the write handle.
    pub async fn finish(&mut self) -> Result<(), StoreError> {
        if let Some(mut file) = self.file.take() {
            file.flush()
                .await
                .map_err(|e| StoreError::io(&self.path, e))?;
        }
        Ok(())
    }

    /// The whole body in memory (one copy).
    pub async fn read(&self) -> Result<Vec<u8>, StoreError> {
        tokio::fs::read(&self.path)
            .await
            .map_err(|e| StoreError::io(&self.path, e))
    }

    /// A fresh read handle from the start (to stream the body out).
    pub async fn open(&self) -> Result<tokio::fs::File, StoreError> {
        tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| StoreError::io(&self.path, e))
    }
}

impl Drop for Spool {
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::Layout;
    use super::super::BlobStore;

    #[tokio::test]
    async fn a_spool_reads_back_and_is_deleted_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        l.init().unwrap();
        let s = BlobStore::new(l.blobs(), l.tmp());
        let mut sp = s.spool().await.unwrap();
        sp.write(b"abc").await.unwrap();
        sp.write(b"def").await.unwrap();
        sp.finish().await.unwrap();
        assert_eq!(sp.len(), 6);
        assert_eq!(sp.read().await.unwrap(), b"abcdef");
        drop(sp);
        assert_eq!(std::fs::read_dir(l.tmp()).unwrap().count(), 0);
    }
}
