//! The module map of ARCHITECTURE.md, checked against the imports: the protocol adapters
//! (`npm`, `goproxy`, `packages_api`) reach GitLab and the data directory only through the
//! cache core, never `crate::upstream` or `crate::store` directly, and the modules the table
//! names import no module above them.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `crate::<module>` paths a file names outside its test module and comments.
fn crate_imports(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let module: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((i + 1, module));
            rest = tail;
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Which top-level modules each layer may not import.
const RULES: &[(&str, &[&str])] = &[
    (
        "npm",
        &["upstream", "store", "server", "sync", "bundle", "gc"],
    ),
    (
        "goproxy",
        &["upstream", "store", "server", "sync", "bundle", "npm", "gc"],
    ),
    (
        "packages_api",
        &["upstream", "store", "server", "sync", "bundle", "npm", "gc"],
    ),
    (
        "store",
        &[
            "cache",
            "upstream",
            "server",
            "npm",
            "goproxy",
            "packages_api",
            "auth",
        ],
    ),
    (
        "upstream",
        &["cache", "store", "server", "npm", "goproxy", "packages_api"],
    ),
    (
        "cache",
        &["server", "npm", "goproxy", "packages_api", "sync"],
    ),
    (
        "auth",
        &[
            "cache",
            "server",
            "npm",
            "goproxy",
            "packages_api",
            "upstream",
        ],
    ),
];

#[test]
fn adapters_and_layers_import_only_what_the_module_map_allows() {
    let mut breaches = Vec::new();
    for (module, forbidden) in RULES {
        let root = src().join(module);
        let files = if root.is_dir() {
            rust_files(&root)
        } else {
            vec![src().join(format!("{module}.rs"))]
        };
        for file in files {
            for (line, imported) in crate_imports(&file) {
                if forbidden.contains(&imported.as_str()) {
                    breaches.push(format!(
                        "{}:{line}: {module} imports crate::{imported}",
                        file.strip_prefix(src()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "layering breaches:\n{}",
        breaches.join("\n")
    );
}
