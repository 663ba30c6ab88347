//! `go.mod` and `go.sum`.
//!
//! `go.mod`: `require` lines and blocks (`// indirect` or not: all are mirrored), with
//! `replace` directives applied the way the go command applies them (a replacement for
//! one version wins over one for every version): a replacement by another module version
//! names that version; a replacement by a local directory (`./x`, `../x`, `/abs`) is
//! skipped with the reason. `module`, `go`, `toolchain`, `godebug`, `exclude`, `retract`,
//! `tool` and `ignore` are read past; any other directive is an error, as for the go
//! command. Quoted tokens (`"path"`, `` `path` ``) and `//` comments are understood.
//!
//! `go.sum`: the full module graph. `mod ver h1:…` names the module zip (and its
//! `.mod`); `mod ver/go.mod h1:…` alone names only the `.mod` (`mod_only`), as the go
//! command needs just that for modules pruned out of the build. One item per module
//! version. The all-empty `go.mod` hash that old go versions wrote by mistake is dropped,
//! as the go command drops it.
//!
//! Paths and versions stay in Go's decoded form (`github.com/BurntSushi/toml`,
//! `v1.0.0-RC1`); the `!`-escaping is the proxy protocol's business.

use super::{BadEntry, Collector, Item, ParseError, Parsed};

/// The hash of an empty go.mod, which go 1.11 and 1.12 wrote into go.sum by mistake.
const EMPTY_GOMOD_HASH: &str = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

const KNOWN: [&str; 10] = [
    "module",
    "go",
    "toolchain",
    "godebug",
    "require",
    "exclude",
    "replace",
    "retract",
    "tool",
    "ignore",
];

struct Require {
    module: String,
    version: String,
}

enum Namespace {
    Local(String),
    Module(String, String),
}

struct Replace {
    module: String,
    version: Option<String>,
    target: Namespace,
    line: usize,
}

pub(crate) fn parse_mod(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let mut requires = Vec::new();
    let mut replaces = Vec::new();
    let mut block: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |reason: BadEntry| ParseError::line_at(origin, line, reason);
        let tokens = tokens(raw).map_err(err)?;
        let Some(first) = tokens.first() else {
            continue;
        };
        let (verb, args) = match &block {
            Some(_) if first == ")" && tokens.len() == 1 => {
                block = None;
                continue;
            }
            Some(verb) => (verb.clone(), &tokens[..]),
            None => {
                if !KNOWN.contains(&first.as_str()) {
                    return Err(err(BadEntry(format!("unknown directive {first:?}"))));
                }
                if tokens.len() == 2 && tokens[1] == "(" {
                    block = Some(first.clone());
                    continue;
                }
                (first.clone(), &tokens[1..])
            }
        };
        match verb.as_str() {
            "require" => match args {
                [module, version] => {
                    check_version(version).map_err(err)?;
                    requires.push(Require {
                        module: module.clone(),
                        version: version.clone(),
                    });
                }
                _ => return Err(err("usage: require MODULE VERSION".into())),
            },
            "replace" => replaces.push(replace(args, line).map_err(err)?),
            _ => {}
        }
    }
    if block.is_some() {
        return Err(ParseError::format(
            origin,
            "unterminated block: a '(' without its ')'",
        ));
    }

    let mut out = Collector::default();
    for Require { module, version } in requires {
        let replacement = replaces
            .iter()
            .find(|r| r.module == module && r.version.as_deref() == Some(version.as_str()))
            .or_else(|| {
                replaces
                    .iter()
                    .find(|r| r.module == module && r.version.is_none())
            });
        match replacement.map(|r| (&r.target, r.line)) {
            Some((Namespace::Local(dir), line)) => out.skip(
                format!("{module} {version}"),
                format!("replaced by the local directory {dir} (line {line}): local source"),
            ),
            Some((Namespace::Module(new, new_version), _)) => out.item(go(new, new_version, false)),
            None => out.item(go(&module, &version, false)),
        }
    }
    Ok(out.finish())
}

/// `old [version] => new version` or `old [version] => ./dir`.
fn replace(args: &[String], line: usize) -> Result<Replace, BadEntry> {
    const USAGE: &str = "usage: replace MODULE [VERSION] => NEW-MODULE VERSION | DIRECTORY";
    let arrow = args
        .iter()
        .position(|t| t == "=>")
        .ok_or_else(|| BadEntry::from(USAGE))?;
    let (left, right) = (&args[..arrow], &args[arrow + 1..]);
    let (module, version) = match left {
        [module] => (module.clone(), None),
        [module, version] => {
            check_version(version)?;
            (module.clone(), Some(version.clone()))
        }
        _ => return Err(USAGE.into()),
    };
    let target = match right {
        [dir] if is_local(dir) => Namespace::Local(dir.clone()),
        [other] => {
            return Err(BadEntry(format!(
                "replacement {other} without a version must be a local directory \
                 (rooted or starting with ./ or ../)"
            )))
        }
        [new, new_version] => {
            check_version(new_version)?;
            Namespace::Module(new.clone(), new_version.clone())
        }
        _ => return Err(USAGE.into()),
    };
    Ok(Replace {
        module,
        version,
        target,
        line,
    })
}

/// The go command's rule for a directory replacement (`modfile.IsDirectoryPath`).
fn is_local(path: &str) -> bool {
    let bytes = path.as_bytes();
    path.starts_with("./")
        || path.starts_with("../")
        || path.starts_with('/')
        || path.starts_with(".\\")
        || path.starts_with("..\\")
        || path.starts_with('\\')
        || path == "."
        || path == ".."
        || (bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":\\")
}

fn check_version(version: &str) -> Result<(), BadEntry> {
    if version.len() > 1 && version.starts_with('v') {
        Ok(())
    } else {
        Err(BadEntry(format!(
            "invalid version {version:?}: a module version starts with 'v' (v1.2.3)"
        )))
    }
}

fn go(module: &str, version: &str, mod_only: bool) -> Item {
    Item::Go {
        module: module.to_owned(),
        version: version.to_owned(),
        mod_only,
        project: None,
    }
}

/// Splits a go.mod line into tokens, dropping a `//` comment; `"…"` and `` `…` `` are
/// single tokens (unquoted), `(` and `)` are tokens of their own.
fn tokens(line: &str) -> Result<Vec<String>, BadEntry> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            _ if c.is_whitespace() => {
                chars.next();
            }
            '/' if line[i..].starts_with("//") => break,
            '(' | ')' => {
                out.push(c.to_string());
                chars.next();
            }
            '"' | '`' => {
                chars.next();
                let mut token = String::new();
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    match d {
                        '\\' if c == '"' => {
                            if let Some((_, e)) = chars.next() {
                                token.push(e);
                            }
                        }
                        _ if d == c => {
                            closed = true;
                            break;
                        }
                        _ => token.push(d),
                    }
                }
                if !closed {
                    return Err(BadEntry(format!("unterminated quoted string in {line:?}")));
                }
                out.push(token);
            }
            _ => {
                let mut token = String::new();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_whitespace() || d == '(' || d == ')' || d == '"' || d == '`' {
                        break;
                    }
                    if line[j..].starts_with("//") {
                        break;
                    }
                    token.push(d);
                    chars.next();
                }
                out.push(token);
            }
        }
    }
    Ok(out)
}

pub(crate) fn parse_sum(text: &str, origin: &str) -> Result<Parsed, ParseError> {
    let mut out = Collector::default();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let err = |reason: BadEntry| ParseError::line_at(origin, index + 1, reason);
        match fields[..] {
            [] => continue,
            [module, version, hash] => {
                if !hash.contains(':') {
                    return Err(err(BadEntry(format!(
                        "malformed hash {hash:?}: expected ALGORITHM:DIGEST (h1:…)"
                    ))));
                }
                if hash == EMPTY_GOMOD_HASH {
                    continue;
                }
                let (version, mod_only) = match version.strip_suffix("/go.mod") {
                    Some(version) => (version, true),
                    None => (version, false),
                };
                check_version(version).map_err(err)?;
                out.item(go(module, version, mod_only));
            }
            _ => {
                return Err(err(BadEntry(format!(
                    "malformed go.sum line: expected MODULE VERSION HASH, found {} fields",
                    fields.len()
                ))))
            }
        }
    }
    Ok(out.finish())
}
