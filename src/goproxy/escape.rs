//! Go module paths and versions, validated at the edge (`golang.org/x/mod/module` rules).
//!
//! In URLs the go command writes upper-case letters as `!` + lower-case (`!azure` = `Azure`),
//! and percent-encodes `!` as `%21`: decode percent-escapes first, then undo `!`.

use std::fmt;

use crate::error::{Error, RequestError};

/// A module path such as `gitlab.example.com/acme/Lib/v2` (decoded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModulePath(String);

/// A semantic version such as `v1.2.3`, `v2.0.0-rc.1` or a pseudo-version (decoded).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleVersion(String);

fn bad(what: &str) -> Error {
    Error::Request(RequestError::BadRequest(format!(
        "400 Bad request - {what}"
    )))
}

/// Undo Go's case encoding: `!x` → `X`. Upper-case letters or a `!` not followed by a
/// lower-case letter are invalid.
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bang = false;
    for c in s.chars() {
        if bang {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() {
            return None;
        } else {
            out.push(c);
        }
    }
    (!bang).then_some(out)
}

/// Go's case encoding of a decoded path or version.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

impl ModulePath {
    /// From the escaped URL form.
    pub fn from_url(raw: &str) -> Result<Self, Error> {
        let decoded = percent_decode(raw).ok_or_else(|| bad("module path is not valid UTF-8"))?;
        let path = unescape(&decoded).ok_or_else(|| bad("invalid case escape in module path"))?;
        Self::parse(&path)
    }

    pub fn parse(path: &str) -> Result<Self, Error> {
        if path.is_empty() || path.len() > 1024 {
            return Err(bad("\"Module Name\" not given"));
        }
        let mut elems = path.split('/');
        let first = elems.next().unwrap_or("");
        if !first.contains('.') || first.starts_with('-') || first.starts_with('.') {
            return Err(bad("module path must begin with a host name"));
        }
        for e in path.split('/') {
            if e.is_empty() || e == "." || e == ".." || e.starts_with('.') || e.ends_with('.') {
                return Err(bad("invalid module path element"));
            }
            if !e
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            {
                return Err(bad("invalid character in module path"));
            }
        }
        Ok(ModulePath(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The escaped form used in URLs.
    pub fn escaped(&self) -> String {
        escape(&self.0)
    }

    /// The `/vN` major suffix, if any (N ≥ 2).
    pub fn major_suffix(&self) -> Option<u64> {
        let last = self.0.rsplit('/').next()?;
        let n: u64 = last.strip_prefix('v')?.parse().ok()?;
        (n >= 2 && !last[1..].starts_with('0')).then_some(n)
    }
}

impl fmt::Display for ModulePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ModuleVersion {
    /// From the escaped URL form; `None` for anything that is not a semantic version.
    pub fn from_url(raw: &str) -> Option<Self> {
        let decoded = percent_decode(raw)?;
        let v = unescape(&decoded)?;
        Self::parse(&v)
    }

    pub fn parse(v: &str) -> Option<Self> {
        let rest = v.strip_prefix('v')?;
        let (core, build) = match rest.split_once('+') {
            Some((c, b)) => (c, Some(b)),
            None => (rest, None),
        };
        let (nums, pre) = match core.split_once('-') {
            Some((n, p)) => (n, Some(p)),
            None => (core, None),
        };
        let parts: Vec<&str> = nums.split('.').collect();
        if parts.len() != 3 || !parts.iter().all(|p| numeric(p)) {
            return None;
        }
        if let Some(pre) = pre {
            if !pre
                .split('.')
                .all(|id| ident(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || numeric(id)))
            {
                return None;
            }
        }
        if let Some(b) = build {
            if !b.split('.').all(ident) {
                return None;
            }
        }
        (v.len() <= 256).then(|| ModuleVersion(v.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn escaped(&self) -> String {
        escape(&self.0)
    }

    pub fn is_prerelease(&self) -> bool {
        self.0.split('+').next().is_some_and(|c| c.contains('-'))
    }

    pub fn major(&self) -> u64 {
        self.0[1..]
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// Semantic-version precedence (build metadata ignored).
    pub fn cmp_semver(&self, other: &Self) -> std::cmp::Ordering {
        fn split(v: &str) -> (Vec<u64>, Option<Vec<&str>>) {
            let core = v[1..].split('+').next().unwrap_or("");
            let (nums, pre) = match core.split_once('-') {
                Some((n, p)) => (n, Some(p.split('.').collect())),
                None => (core, None),
            };
            (
                nums.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
                pre,
            )
        }
        let (a, ap) = split(&self.0);
        let (b, bp) = split(&other.0);
        a.cmp(&b).then_with(|| match (ap, bp) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => {
                for (i, j) in x.iter().zip(y.iter()) {
                    let o = match (i.parse::<u64>(), j.parse::<u64>()) {
                        (Ok(m), Ok(n)) => m.cmp(&n),
                        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
                        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
                        (Err(_), Err(_)) => i.cmp(j),
                    };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
        })
    }
}

fn numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_escaping_round_trips() {
        assert_eq!(
            unescape("github.com/!azure/!a!b").as_deref(),
            Some("github.com/Azure/AB")
        );
        assert_eq!(escape("github.com/Azure/AB"), "github.com/!azure/!a!b");
        assert_eq!(unescape("x/!!a"), None);
        assert_eq!(unescape("x/!A"), None);
        assert_eq!(unescape("x/Abc"), None);
        assert_eq!(unescape("x/a!"), None);
        let m = ModulePath::from_url("gitlab.example.com%2Facme%2F!lib").unwrap();
        assert_eq!(m.as_str(), "gitlab.example.com/acme/Lib");
        assert_eq!(m.escaped(), "gitlab.example.com/acme/!lib");
    }

    #[test]
    fn module_paths() {
        assert!(ModulePath::parse("gitlab.example.com/acme/lib/v2").is_ok());
        for bad in [
            "",
            "nohost/x",
            "gitlab.example.com/../x",
            "gitlab.example.com//x",
            "gitlab.example.com/a b",
            ".x.com/a",
        ] {
            assert!(ModulePath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ModulePath::parse("h.com/a/v2").unwrap().major_suffix(),
            Some(2)
        );
        assert_eq!(
            ModulePath::parse("h.com/a/v1").unwrap().major_suffix(),
            None
        );
    }

    #[test]
    fn versions() {
        for ok in [
            "v1.2.3",
            "v0.0.0-20240101120000-abcdefabcdef",
            "v2.0.0-rc.1",
            "v1.0.1-!prerelease",
            "v1.2.3+incompatible",
        ] {
            assert!(ModuleVersion::from_url(ok).is_some(), "{ok}");
        }
        for bad in [
            "1.2.3",
            "v1.2",
            "v01.2.3",
            "latest",
            "v1.2.3-",
            "v1.2.3-01",
            "../v1.2.3",
            "v1.2.3-Pre",
        ] {
            assert!(ModuleVersion::from_url(bad).is_none(), "{bad}");
        }
        let v = |s: &str| ModuleVersion::parse(s).unwrap();
        assert!(v("v1.10.0").cmp_semver(&v("v1.9.0")).is_gt());
        assert!(v("v1.0.0").cmp_semver(&v("v1.0.0-rc.1")).is_gt());
        assert!(v("v1.0.0-rc.10").cmp_semver(&v("v1.0.0-rc.9")).is_gt());
        assert_eq!(
            ModuleVersion::from_url("v1.0.1-!prerelease")
                .unwrap()
                .as_str(),
            "v1.0.1-Prerelease"
        );
    }
}
