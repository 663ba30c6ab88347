//! npm package names, validated at the edge. A name never becomes a file path; it is only a
//! key and a URL segment.

use std::fmt;

use crate::error::RequestError;

/// npm's limit on a package name's length.
const MAX_LEN: usize = 214;

/// A validated npm package name, e.g. `@acme/ui` or `left-pad`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackageName(String);

fn valid_part(s: &str, scope: bool) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') || (!scope && b == b'+')
        })
}

impl PackageName {
    /// Parse a decoded name (`@scope/name` or `name`). GitLab's validator answers
    /// `package_name should be a valid file path` for anything else.
    pub fn parse(s: &str) -> Result<Self, RequestError> {
        if s.is_empty() || s.len() > MAX_LEN {
            return Err(RequestError::BadPackageName);
        }
        let ok = match s.strip_prefix('@') {
            Some(rest) => match rest.split_once('/') {
                Some((scope, name)) => valid_part(scope, true) && valid_part(name, false),
                None => false,
            },
            None => valid_part(s, false),
        };
        if ok {
            Ok(PackageName(s.to_string()))
        } else {
            Err(RequestError::BadPackageName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form npm clients send in URLs: `@scope%2fname`.
    pub fn encoded(&self) -> String {
        self.0.replacen('/', "%2f", 1)
    }

    /// The scope without `@`, if any.
    pub fn scope(&self) -> Option<&str> {
        self.0.strip_prefix('@')?.split_once('/').map(|(s, _)| s)
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_npm_names() {
        for n in [
            "left-pad",
            "@acme/ui",
            "@acme/ui.core",
            "a+b",
            "@a-b/c_d",
            "x1",
        ] {
            assert!(PackageName::parse(n).is_ok(), "{n}");
        }
        assert_eq!(
            PackageName::parse("@acme/ui").unwrap().encoded(),
            "@acme%2fui"
        );
        assert_eq!(
            PackageName::parse("@acme/ui").unwrap().scope(),
            Some("acme")
        );
    }

    #[test]
    fn rejects_tricks() {
        let long = "a".repeat(2000);
        for n in [
            "",
            "..",
            ".",
            "@acme/..",
            "@../x",
            "a/b",
            "@acme",
            "@acme/",
            "a\0b",
            "a b",
            "../etc/passwd",
            "@acme/ui/extra",
            "\r\nhttp:",
            ".hidden",
            &long,
        ] {
            assert!(PackageName::parse(n).is_err(), "{n:?}");
        }
    }

    /// Found by the names fuzz target: dots inside a part are legal (GitLab's regex allows
    /// them), and never make a dot segment.
    #[test]
    fn dots_inside_a_part_are_not_segments() {
        let n = PackageName::parse("@acm../ui").unwrap();
        assert!(n.as_str().split('/').all(|seg| seg != ".." && seg != "."));
    }
}
