//! A Go module zip is checked before it becomes visible: well-formed, every entry under
//! `<module>@<version>/`, no `..` or absolute names, within Go's limits.

use std::path::Path;

/// Go's limits (golang.org/x/mod/zip).
pub const MAX_ZIP: u64 = 500 << 20;
pub const MAX_GO_MOD: u64 = 16 << 20;
const MAX_UNCOMPRESSED: u64 = 500 << 20;

pub fn check(path: &Path, module: &str, version: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open module zip: {e}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a valid zip: {e}"))?;
    let prefix = format!("{module}@{version}/");
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| format!("zip entry {i} is unreadable: {e}"))?;
        let name = entry.name().to_string();
        let Some(rel) = name.strip_prefix(&prefix) else {
            return Err(format!("zip entry {name:?} is outside {prefix:?}"));
        };
        if rel.starts_with('/')
            || rel.split('/').any(|s| s == ".." || s == ".")
            || name.contains('\\')
        {
            return Err(format!("zip entry {name:?} has an unsafe path"));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_UNCOMPRESSED {
            return Err(format!(
                "module zip expands beyond {MAX_UNCOMPRESSED} bytes"
            ));
        }
        if rel == "go.mod" && entry.size() > MAX_GO_MOD {
            return Err(format!("go.mod is larger than {MAX_GO_MOD} bytes"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test fixtures
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_with(names: &[&str]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(f.reopen().unwrap());
        for n in names {
            w.start_file(
                *n,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored),
            )
            .unwrap();
            w.write_all(b"x").unwrap();
        }
        w.finish().unwrap();
        f
    }

    #[test]
    fn layout_rules() {
        let ok = zip_with(&["h.com/m@v1.0.0/go.mod", "h.com/m@v1.0.0/a/b.go"]);
        assert!(check(ok.path(), "h.com/m", "v1.0.0").is_ok());
        let outside = zip_with(&["h.com/m@v1.0.0/go.mod", "other/x.go"]);
        assert!(check(outside.path(), "h.com/m", "v1.0.0").is_err());
        let dots = zip_with(&["h.com/m@v1.0.0/../x.go"]);
        assert!(check(dots.path(), "h.com/m", "v1.0.0").is_err());
        let garbage = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(garbage.path(), b"not a zip").unwrap();
        assert!(check(garbage.path(), "h.com/m", "v1.0.0").is_err());
    }
}
