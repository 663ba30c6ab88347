//! A Go module zip is checked before it becomes visible, as strictly as the go command's own
//! `golang.org/x/mod/zip.CheckZip`: well-formed, every entry under `<module>@<version>/`,
//! every path valid (`module.CheckFilePath`), no duplicate entries and no two paths equal but
//! for case, within Go's limits (go.mod and LICENSE 16 MiB each, 500 MiB in all, counted
//! from the bytes actually decompressed, not the sizes the zip declares).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Go's limits (golang.org/x/mod/zip).
pub const MAX_ZIP: u64 = 500 << 20;
pub const MAX_GO_MOD: u64 = 16 << 20;
const MAX_LICENSE: u64 = 16 << 20;
const MAX_UNCOMPRESSED: u64 = 500 << 20;

/// Why a module zip is refused: what the go command would say of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadZip(pub String);

pub fn check(path: &Path, module: &str, version: &str) -> Result<(), BadZip> {
    let open = || File::open(path).map_err(|e| BadZip(format!("cannot open module zip: {e}")));
    let mut zip =
        zip::ZipArchive::new(open()?).map_err(|e| BadZip(format!("not a valid zip: {e}")))?;
    // The zip crate keeps only the last of several entries with one name: read the names
    // from the central directory itself.
    let names = if zip.is_empty() {
        Vec::new()
    } else {
        central_names(&mut open()?, zip.central_directory_start(), zip.offset())?
    };
    if names.len() < zip.len() {
        return Err(BadZip(
            "not a valid zip: central directory is shorter than the zip says".to_owned(),
        ));
    }
    let prefix = format!("{module}@{version}/");
    let mut seen: HashMap<String, String> = HashMap::with_capacity(names.len());
    for name in &names {
        let Some(rel) = name.strip_prefix(&prefix) else {
            return Err(BadZip(format!("zip entry {name:?} is outside {prefix:?}")));
        };
        if rel.is_empty() {
            continue;
        }
        let (rel, dir) = match rel.strip_suffix('/') {
            Some(d) => (d, true),
            None => (rel, false),
        };
        check_file_path(rel)
            .map_err(|why| BadZip(format!("zip entry {name:?} has an unsafe path: {why}")))?;
        if dir {
            continue;
        }
        if let Some(prev) = seen.insert(rel.to_lowercase(), name.clone()) {
            return Err(BadZip(if &prev == name {
                format!("zip entry {name:?} appears more than once")
            } else {
                format!("zip entries {prev:?} and {name:?} collide when case is ignored")
            }));
        }
    }
    // Declared sizes first (cheap), then what decompression actually yields.
    let mut declared: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| BadZip(format!("zip entry {i} is unreadable: {e}")))?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > MAX_UNCOMPRESSED {
        return Err(BadZip(format!(
            "module zip expands beyond {MAX_UNCOMPRESSED} bytes"
        )));
    }
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| BadZip(format!("zip entry {i} is unreadable: {e}")))?;
        let name = entry.name().to_string();
        let limit = match name.strip_prefix(&prefix) {
            Some("go.mod") => Some(("go.mod", MAX_GO_MOD)),
            Some("LICENSE") => Some(("LICENSE", MAX_LICENSE)),
            _ => None,
        };
        let room = MAX_UNCOMPRESSED - total;
        let cap = limit.map_or(room, |(_, max)| max.min(room));
        let read = std::io::copy(&mut (&mut entry).take(cap + 1), &mut std::io::sink())
            .map_err(|e| BadZip(format!("zip entry {name:?} is unreadable: {e}")))?;
        if let Some((file, max)) = limit.filter(|(_, max)| read > *max) {
            return Err(BadZip(format!("{file} is larger than {max} bytes")));
        }
        total += read;
        if total > MAX_UNCOMPRESSED {
            return Err(BadZip(format!(
                "module zip expands beyond {MAX_UNCOMPRESSED} bytes"
            )));
        }
    }
    Ok(())
}

/// Every entry name in the central directory at `start`, duplicates included.
fn central_names(file: &mut File, start: u64, offset: u64) -> Result<Vec<String>, BadZip> {
    const CENTRAL: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    let bad = |e: std::io::Error| {
        BadZip(format!(
            "not a valid zip: central directory unreadable: {e}"
        ))
    };
    let mut r = BufReader::new(file);
    let mut header = [0u8; 46];
    // `start` is absolute in the zip crate; accept it relative to prepended data too.
    let at_start = |pos: u64, r: &mut BufReader<&mut File>| -> Result<bool, BadZip> {
        r.seek(SeekFrom::Start(pos)).map_err(bad)?;
        let mut sig = [0u8; 4];
        Ok(r.read_exact(&mut sig).is_ok() && sig == CENTRAL)
    };
    if !at_start(start, &mut r)? && !at_start(start.saturating_add(offset), &mut r)? {
        return Err(BadZip(
            "not a valid zip: no central directory where the zip says".to_owned(),
        ));
    }
    let mut names = Vec::new();
    header[..4].copy_from_slice(&CENTRAL);
    loop {
        r.read_exact(&mut header[4..]).map_err(bad)?;
        let le = |i: usize| usize::from(u16::from_le_bytes([header[i], header[i + 1]]));
        let (name_len, extra_len, comment_len) = (le(28), le(30), le(32));
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name).map_err(bad)?;
        let name = String::from_utf8(name).map_err(|e| {
            BadZip(format!(
                "zip entry {:?} has an unsafe path: not UTF-8",
                e.as_bytes()
            ))
        })?;
        names.push(name);
        r.seek_relative(i64::try_from(extra_len + comment_len).unwrap_or(0))
            .map_err(bad)?;
        let mut sig = [0u8; 4];
        if r.read_exact(&mut sig).is_err() || sig != CENTRAL {
            return Ok(names);
        }
    }
}

/// `golang.org/x/mod/module.CheckFilePath`: a clean, relative, slash-separated path whose
/// elements are neither empty nor all dots, end in no dot, use only the characters Go allows
/// in file names (no control characters, backslashes or shell specials), and are not
/// Windows reserved names.
fn check_file_path(path: &str) -> Result<(), BadZip> {
    if path.is_empty() {
        return Err(BadZip("empty path".to_owned()));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(BadZip("leading or trailing slash".to_owned()));
    }
    for elem in path.split('/') {
        if elem.is_empty() {
            return Err(BadZip("empty path element".to_owned()));
        }
        if elem.bytes().all(|b| b == b'.') {
            return Err(BadZip(format!("invalid path element {elem:?}")));
        }
        if elem.ends_with('.') {
            return Err(BadZip(format!("trailing dot in path element {elem:?}")));
        }
        if let Some(c) = elem.chars().find(|c| !file_name_ok(*c)) {
            return Err(BadZip(format!(
                "invalid character {c:?} in path element {elem:?}"
            )));
        }
        let short = elem.split('.').next().unwrap_or(elem);
        if is_windows_reserved(short) {
            return Err(BadZip(format!(
                "{short:?} is a reserved file name on Windows"
            )));
        }
    }
    Ok(())
}

/// Go's `fileNameOK`.
fn file_name_ok(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c)
    } else {
        c.is_alphabetic()
    }
}

fn is_windows_reserved(short: &str) -> bool {
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(short))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test fixtures
mod tests {
    use super::*;
    use std::io::Write;

    const P: &str = "h.com/m@v1.0.0/";

    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(f.reopen().unwrap());
        for (n, data) in entries {
            w.start_file(
                *n,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        f
    }

    fn zip_with(names: &[&str]) -> tempfile::NamedTempFile {
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, &b"x"[..])).collect();
        zip_of(&entries)
    }

    fn check_names(names: &[&str]) -> Result<(), BadZip> {
        let names: Vec<String> = names.iter().map(|n| format!("{P}{n}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        check(zip_with(&refs).path(), "h.com/m", "v1.0.0")
    }

    /// Rewrites every occurrence of `from` in the file (names in local and central headers
    /// alike) to `to`, of the same length: how a zip with duplicate entries is made, as the
    /// zip crate refuses to write one.
    fn patch(f: &tempfile::NamedTempFile, from: &str, to: &str) {
        assert_eq!(from.len(), to.len());
        let mut bytes = std::fs::read(f.path()).unwrap();
        let (from, to) = (from.as_bytes(), to.as_bytes());
        let mut i = 0;
        while i + from.len() <= bytes.len() {
            if &bytes[i..i + from.len()] == from {
                bytes[i..i + from.len()].copy_from_slice(to);
            }
            i += 1;
        }
        std::fs::write(f.path(), bytes).unwrap();
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

    #[test]
    fn file_paths_as_go_checks_them() {
        for good in [
            &[
                "go.mod",
                "a/b.go",
                "dir/",
                "with space.txt",
                "x_y-z+1,2=3@4[5]{6}~7!#$%&()^.go",
            ][..],
            &["caf\u{e9}/\u{65e5}\u{672c}.go"],
            &["a.b/c.go", ".hidden/x.go", "CONFIG.go"],
        ] {
            assert_eq!(check_names(good), Ok(()), "{good:?}");
        }
        for bad in [
            "a//b.go",
            "a/./b.go",
            "a/../b.go",
            "./a.go",
            "a/.../b.go",
            "a\\b.go",
            "tab\there.go",
            "nl\n.go",
            "nul\u{0}.go",
            "del\u{7f}.go",
            "q\"uote.go",
            "star*.go",
            "pipe|.go",
            "lt<.go",
            "colon:.go",
            "trailing.",
            "dir./x.go",
            "con.go",
            "aux/x.go",
            "LPT1",
            "emoji\u{1f600}.go",
            "/lead.go",
        ] {
            let err = check_names(&[bad]).unwrap_err().0;
            assert!(err.contains("unsafe path"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn duplicates_and_case_collisions() {
        let dup = zip_with(&[
            "h.com/m@v1.0.0/go.mod",
            "h.com/m@v1.0.0/a.go",
            "h.com/m@v1.0.0/b.go",
        ]);
        patch(&dup, "/b.go", "/a.go");
        let err = check(dup.path(), "h.com/m", "v1.0.0").unwrap_err().0;
        assert!(err.contains("appears more than once"), "{err}");
        for pair in [["README.md", "readme.md"], ["Dir/a.go", "dir/a.go"]] {
            let err = check_names(&pair).unwrap_err().0;
            assert!(
                err.contains("collide when case is ignored"),
                "{pair:?}: {err}"
            );
        }
        // Directories are not files: `a/` next to `a/x.go` is fine.
        assert_eq!(check_names(&["a/", "a/x.go"]), Ok(()));
    }

    #[test]
    fn size_limits_count_what_is_read() {
        let big = vec![b'/'; (16 << 20) + 1];
        for file in ["go.mod", "LICENSE"] {
            let z = zip_of(&[(&format!("{P}{file}"), &big)]);
            let err = check(z.path(), "h.com/m", "v1.0.0").unwrap_err().0;
            assert!(err.contains(&format!("{file} is larger than")), "{err}");
            // Elsewhere in the tree the same size is fine.
            let z = zip_of(&[(&format!("{P}sub/{file}"), &big)]);
            assert_eq!(check(z.path(), "h.com/m", "v1.0.0"), Ok(()));
        }
        // A LICENSE that declares 1 byte but decompresses to more than 16 MiB.
        let z = zip_of(&[(&format!("{P}LICENSE"), &big)]);
        let mut bytes = std::fs::read(z.path()).unwrap();
        let (local, central) = {
            let mut a = zip::ZipArchive::new(std::fs::File::open(z.path()).unwrap()).unwrap();
            let e = a.by_index_raw(0).unwrap();
            (e.header_start() as usize, e.central_header_start() as usize)
        };
        bytes[local + 22..local + 26].copy_from_slice(&1u32.to_le_bytes());
        bytes[central + 24..central + 28].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(z.path(), bytes).unwrap();
        let err = check(z.path(), "h.com/m", "v1.0.0").unwrap_err().0;
        assert!(err.contains("LICENSE is larger than"), "{err}");
    }
}
