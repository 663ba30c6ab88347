//! Looking at what packrat left in a directory.

use std::path::{Path, PathBuf};

/// Every file below `dir` (none if it does not exist), in no particular order.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The bytes in every file below `dir`.
pub fn size(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}
