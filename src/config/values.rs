//! The value parsers of the configuration keys: sizes, durations, URLs, addresses, hashes
//! and names, from a [`Raw`] value as the file or the environment gave it. Each failure is an
//! [`Invalid`] whose text says what was expected; the caller adds where the value came from.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A value as written: a TOML string, integer, boolean or array of strings (the schema has
/// already checked which), or an environment variable's text read as the key's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

impl Raw {
    /// A value from the file (its kind already checked against the key's).
    pub fn from_toml(value: &toml::Value) -> Raw {
        match value {
            toml::Value::String(s) => Raw::Str(s.clone()),
            toml::Value::Integer(n) => Raw::Int(*n),
            toml::Value::Boolean(b) => Raw::Bool(*b),
            toml::Value::Array(items) => Raw::List(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            other => Raw::Str(other.to_string()),
        }
    }
}

/// Why a value was refused (the key and its origin are added by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    fn new(reason: impl Into<String>) -> Invalid {
        Invalid(reason.into())
    }
}

type Parsed<T> = Result<T, Invalid>;

fn string(raw: Raw) -> Parsed<String> {
    match raw {
        Raw::Str(s) => Ok(s),
        other => Err(Invalid(format!("expected a string, found {other:?}"))),
    }
}

fn list(raw: Raw) -> Parsed<Vec<String>> {
    match raw {
        Raw::List(items) => Ok(items),
        other => Err(Invalid(format!(
            "expected an array of strings, found {other:?}"
        ))),
    }
}

/// Parses a size: `"512MiB"`, `"50GiB"`, `"10MB"`, `"1.5GiB"`, `"1024"`, `"0"`.
/// Units (case-insensitive): B, KB/KiB, MB/MiB, GB/GiB, TB/TiB, where KB = 1000
/// and KiB = 1024; no unit means bytes. Fractions are rounded down to a byte.
pub fn parse_size(s: &str) -> Parsed<u64> {
    let invalid = || {
        Invalid(format!(
            "invalid size {s:?} (expected e.g. \"512MiB\", \"50GiB\")"
        ))
    };
    let too_large = || Invalid(format!("invalid size {s:?}: too large"));
    let t = s.trim();
    if t.starts_with('-') {
        return Err(Invalid(format!("invalid size {s:?}: must not be negative")));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return Err(invalid());
    }
    // Only digits remain, so a parse failure is an overflow.
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let mut total = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        if multiplier == 1 {
            return Err(Invalid(format!(
                "invalid size {s:?}: a number of bytes must be whole"
            )));
        }
        // At most 18 digits: below 10^18 * 2^40 < 2^128.
        let fraction = &fraction[..fraction.len().min(18)];
        let numerator: u128 = fraction.parse().map_err(|_| invalid())?;
        let scale = 10u128.pow(fraction.len() as u32);
        let extra =
            u64::try_from(numerator * u128::from(multiplier) / scale).map_err(|_| too_large())?;
        total = total.checked_add(extra).ok_or_else(too_large)?;
    }
    Ok(total)
}

/// Parses a duration: humantime (`"30s"`, `"5m"`, `"7d"`, `"1h30m"`), or a
/// bare integer number of seconds (`"0"` allowed).
pub fn parse_duration(s: &str) -> Parsed<Duration> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| Invalid(format!("invalid duration {s:?}: too large")));
    }
    if t.starts_with('-') {
        return Err(Invalid(format!(
            "invalid duration {s:?}: must not be negative"
        )));
    }
    humantime::parse_duration(t).map_err(|_| {
        Invalid(format!(
            "invalid duration {s:?} (expected e.g. \"30s\", \"5m\", \"7d\")"
        ))
    })
}

/// A size key: a string with a unit, or an integer number of bytes.
pub fn size(raw: Raw) -> Parsed<u64> {
    match raw {
        Raw::Int(n) => {
            u64::try_from(n).map_err(|_| Invalid(format!("invalid size {n}: must not be negative")))
        }
        other => parse_size(&string(other)?),
    }
}

/// A duration key: humantime, or an integer number of seconds.
pub fn duration(raw: Raw) -> Parsed<Duration> {
    match raw {
        Raw::Int(n) => u64::try_from(n)
            .map(Duration::from_secs)
            .map_err(|_| Invalid(format!("invalid duration {n}: must not be negative"))),
        other => parse_duration(&string(other)?),
    }
}

/// A duration that must not be zero (a timeout).
pub fn positive_duration(raw: Raw) -> Parsed<Duration> {
    let d = duration(raw)?;
    if d.is_zero() {
        return Err(Invalid::new("must be greater than zero"));
    }
    Ok(d)
}

/// A whole number greater than zero (an integer, or its text from the environment).
pub fn positive_count(raw: Raw) -> Parsed<usize> {
    let n = match raw {
        Raw::Int(n) => n,
        Raw::Str(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| Invalid(format!("invalid number {s:?}")))?,
        other => return Err(Invalid(format!("invalid number {other:?}"))),
    };
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| Invalid(format!("invalid number {n}: must be greater than zero")))
}

pub fn boolean(raw: Raw) -> Parsed<bool> {
    match raw {
        Raw::Bool(b) => Ok(b),
        Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Invalid(format!(
                "invalid boolean {s:?} (expected true or false)"
            ))),
        },
        other => Err(Invalid(format!("expected a boolean, found {other:?}"))),
    }
}

pub fn listen(raw: Raw) -> Parsed<SocketAddr> {
    let s = string(raw)?;
    s.parse().map_err(|_| {
        Invalid(format!(
            "invalid listen address {s:?} (expected ip:port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"
        ))
    })
}

/// A path, or `None` when empty.
pub fn optional_path(raw: Raw) -> Parsed<Option<PathBuf>> {
    let v = string(raw)?;
    Ok((!v.is_empty()).then(|| PathBuf::from(v)))
}

/// A directory that must be named.
pub fn dir(raw: Raw) -> Parsed<PathBuf> {
    let v = string(raw)?;
    if v.is_empty() {
        return Err(Invalid::new("must not be empty"));
    }
    Ok(PathBuf::from(v))
}

/// A string that must not be empty.
pub fn name(raw: Raw) -> Parsed<String> {
    let v = string(raw)?;
    if v.trim().is_empty() {
        return Err(Invalid::new("must not be empty"));
    }
    Ok(v)
}

/// `storage.backend`: `fs` or `s3`.
pub fn storage_backend(raw: Raw) -> Parsed<super::StorageBackend> {
    match string(raw)?.as_str() {
        "fs" => Ok(super::StorageBackend::Fs),
        "s3" => Ok(super::StorageBackend::S3),
        other => Err(Invalid(format!(
            "unknown storage backend {other:?} (expected \"fs\" or \"s3\")"
        ))),
    }
}

/// An object key prefix: empty, or relative path segments; a missing trailing `/` is added.
pub fn key_prefix(raw: Raw) -> Parsed<String> {
    let v = string(raw)?;
    if v.is_empty() {
        return Ok(v);
    }
    if v.starts_with('/') || v.split('/').any(|s| s == "." || s == "..") || v.contains("//") {
        return Err(Invalid(format!(
            "invalid key prefix {v:?} (expected e.g. \"edge-eu/\": no leading `/`, no empty, `.` or `..` segments)"
        )));
    }
    Ok(if v.ends_with('/') { v } else { format!("{v}/") })
}

/// Any string, as written.
pub fn text(raw: Raw) -> Parsed<String> {
    string(raw)
}

/// An http(s) URL, or `None` when empty.
pub fn optional_url(raw: Raw) -> Parsed<Option<String>> {
    let v = string(raw)?;
    if v.is_empty() {
        return Ok(None);
    }
    parse_http_url(&v).map(Some)
}

/// An http(s) URL that must be given.
pub fn http_url(raw: Raw) -> Parsed<String> {
    parse_http_url(&string(raw)?)
}

/// Checks an absolute http(s) URL; returns it with a lower-case scheme and
/// no trailing `/`. Paths are allowed (GitLab under a relative URL), query,
/// fragment and user credentials are not.
pub fn parse_http_url(s: &str) -> Parsed<String> {
    let bad = |why: &str| Err(Invalid(format!("invalid URL {s:?}: {why}")));
    if s.is_empty() {
        return bad("must not be empty");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return bad("expected an http:// or https:// URL");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return bad("the scheme must be http or https");
    }
    if rest.contains(['?', '#']) {
        return bad("must not contain a query or fragment");
    }
    let rest = rest.trim_end_matches('/');
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return bad("must not contain user credentials");
    }
    if let Err(why) = check_authority(authority) {
        return bad(&why.0);
    }
    Ok(format!("{scheme}://{authority}{path}"))
}

fn check_authority(authority: &str) -> Parsed<()> {
    let port = if let Some(inner) = authority.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(Invalid::new("unclosed '[' in host"));
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(Invalid(format!("invalid IPv6 address [{v6}]")));
        }
        match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| Invalid::new("unexpected characters after ']'"))?,
            ),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(Invalid::new("missing host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(Invalid(format!("invalid host {host:?}")));
        }
        port
    };
    match port {
        Some(p)
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || p.parse::<u16>().is_err() =>
        {
            Err(Invalid(format!("invalid port {p:?}")))
        }
        _ => Ok(()),
    }
}

/// The name of an environment variable.
pub fn var_name(raw: Raw) -> Parsed<String> {
    let name = string(raw)?;
    if name.is_empty() {
        return Err(Invalid::new("must name an environment variable"));
    }
    if name.contains(['=', '\0']) || name.chars().any(char::is_whitespace) {
        return Err(Invalid(format!(
            "invalid environment variable name {name:?}"
        )));
    }
    Ok(name)
}

/// The host (without port) of a URL already checked by [`parse_http_url`].
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    host.to_ascii_lowercase()
}

/// `go.host`: a bare host name as module paths start with it (lower case, as Go requires of a
/// module path's first element); `None` when not given.
pub fn go_host(raw: Raw) -> Parsed<Option<String>> {
    let host = string(raw)?;
    let why = if host.is_empty() {
        "must not be empty"
    } else if host.contains("://") {
        "a module host has no scheme (e.g. \"gitlab.example.com\")"
    } else if host.contains('/') {
        "must be a host name only, without '/'"
    } else if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace"
    } else {
        return Ok(Some(host.to_ascii_lowercase()));
    };
    Err(Invalid(format!("invalid module host {host:?}: {why}")))
}

pub fn check_module_prefix(prefix: &str) -> Parsed<()> {
    let why = if prefix.is_empty() {
        "must not be empty"
    } else if prefix.contains("://") {
        "a module path has no scheme (e.g. \"gitlab.example.com/acme\")"
    } else if prefix.starts_with('/') || prefix.ends_with('/') {
        "must not start or end with '/'"
    } else if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace"
    } else {
        return Ok(());
    };
    Err(Invalid(format!("invalid module prefix {prefix:?}: {why}")))
}

/// 64 hex characters. The value is never echoed: a token pasted here by
/// mistake must not reach the logs.
pub fn parse_sha256(hex: &str) -> Parsed<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(Invalid(format!(
            "expected 64 hex characters (the sha256 of the token), found {} characters",
            hex.chars().count()
        )));
    }
    hex::decode_to_slice(hex, &mut out).map_err(|_| {
        Invalid::new(
            "expected 64 hex characters (the sha256 of the token), found a non-hex character",
        )
    })?;
    Ok(out)
}

/// A list of token hashes (`server.ops_tokens`).
pub fn sha256_list(raw: Raw) -> Parsed<Vec<[u8; 32]>> {
    list(raw)?
        .iter()
        .enumerate()
        .map(|(i, h)| parse_sha256(h).map_err(|r| Invalid(format!("entry {i}: {r}"))))
        .collect()
}

/// A list of Ed25519 public keys as `packrat keygen` writes them (`offline.trusted_keys`).
pub fn public_keys(raw: Raw) -> Parsed<Vec<[u8; 32]>> {
    list(raw)?
        .iter()
        .enumerate()
        .map(|(i, k)| {
            crate::signing::parse_public_key(k).map_err(|r| Invalid(format!("entry {i}: {r}")))
        })
        .collect()
}

pub fn check_scope(scope: &str) -> Parsed<()> {
    let why = if scope.is_empty() {
        "must not be empty"
    } else if scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace"
    } else if scope != "*" && (scope.starts_with('/') || scope.ends_with('/')) {
        "must not start or end with '/'"
    } else {
        return Ok(());
    };
    Err(Invalid(format!(
        "invalid scope {scope:?}: {why} (expected a project id, a group path, or \"*\")"
    )))
}
