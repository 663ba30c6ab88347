//! The data directory layout, defined in one place. Format versions live in directory names:
//! a format change creates a new directory instead of migrating in place.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

pub const INDEX_DIR: &str = "index-v1";
pub const BLOBS_DIR: &str = "blobs-v1/sha256";
pub const TMP_DIR: &str = "tmp";
pub const QUARANTINE_DIR: &str = "quarantine";
pub const LOCK_FILE: &str = "packrat.lock";

#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn index(&self) -> PathBuf {
        self.root.join(INDEX_DIR)
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join(BLOBS_DIR)
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }
    pub fn quarantine(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }

    /// Create the directories, the CACHEDIR.TAG, and clear temp files a crash left behind.
    #[allow(clippy::disallowed_methods)] // store/ owns the data directory
    pub fn init(&self) -> Result<(), StoreError> {
        for d in [
            self.root.clone(),
            self.blobs(),
            self.tmp(),
            self.quarantine(),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| StoreError::io(&d, e))?;
        }
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            std::fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a packrat cache; see https://bford.info/cachedir/\n",
            )
            .map_err(|e| StoreError::io(&tag, e))?;
        }
        // Temp files are never visible content: anything left over is from a crash.
        if let Ok(entries) = std::fs::read_dir(self.tmp()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Take the data directory's exclusive lock: one process owns it (sled is single-process).
    pub fn lock(&self) -> Result<DirLock, StoreError> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                dir: self.root.clone(),
                reason: "stop the running `packrat serve` first, or use `packrat sync --via URL`"
                    .into(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
        }
    }
}

/// Held for the life of the process that owns the data directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Path of a blob below `blobs`: `ab/cd/<hex>`. Derived from the digest only.
pub fn blob_path(blobs: &Path, hex: &str) -> PathBuf {
    blobs.join(&hex[0..2]).join(&hex[2..4]).join(hex)
}
