//! Access to an offline mirror (`cache.offline = true`): with no upstream to ask, readers are
//! checked against `[[offline.tokens]]` (the sha256 of each token, compared in constant time,
//! with scopes); with no tokens configured the mirror is open to anonymous readers. The
//! operator endpoints' `server.ops_tokens` are checked the same way ([`ops_allows`]), online
//! or not.

use sha2::{Digest, Sha256};

use super::credential::{CredKind, Credential};
use crate::config::OfflineConfig;

/// What a request reads, for scopes: a project (id or path), a group path, or the instance
/// (instance-level npm, `/go/`, the sumdb: only `"*"` covers those).
use crate::gitlab::Namespace;

/// Does any configured token in the request cover `owner`?
pub fn allows(config: &OfflineConfig, credential: &Credential, owner: &Namespace) -> bool {
    if config.tokens.is_empty() {
        return true;
    }
    let presented = presented(credential, |_, _| true);
    config
        .tokens
        .iter()
        .any(|tok| matches(&presented, &tok.sha256) && tok.scopes.iter().any(|s| covers(s, owner)))
}

/// May this request read the operator endpoints (`server.ops_tokens`)? Only a token sent as
/// `PRIVATE-TOKEN` or `Authorization: Bearer` counts.
pub fn ops_allows(ops_tokens: &[[u8; 32]], credential: &Credential) -> bool {
    let presented = presented(credential, |kind, value| match kind {
        CredKind::PrivateToken => true,
        CredKind::Authorization => value
            .split_once(' ')
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")),
        _ => false,
    });
    ops_tokens.iter().any(|tok| matches(&presented, tok))
}

/// Is `token` (typed into the operator page's login form) one of `server.ops_tokens`?
/// Compared in constant time against every configured hash.
pub fn ops_token_ok(ops_tokens: &[[u8; 32]], token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    ops_tokens
        .iter()
        .fold(false, |acc, t| acc | constant_time_eq(&presented, t))
}

/// The sha256 of every bare token the request carries in a header `keep` accepts.
fn presented(credential: &Credential, keep: impl Fn(CredKind, &str) -> bool) -> Vec<[u8; 32]> {
    credential
        .secrets()
        .filter(|(kind, secret)| keep(*kind, secret))
        .filter_map(|(kind, secret)| token_of(kind, secret))
        .map(|t| Sha256::digest(t.as_bytes()).into())
        .collect()
}

/// Is `want` among `presented`? Compares against every hash without early exit on the bytes.
fn matches(presented: &[[u8; 32]], want: &[u8; 32]) -> bool {
    presented
        .iter()
        .fold(false, |acc, h| acc | constant_time_eq(h, want))
}

/// The bare token inside a header value (Bearer, Basic password, or the value itself).
fn token_of(kind: CredKind, value: &str) -> Option<String> {
    match kind {
        CredKind::Authorization => {
            let (scheme, rest) = value.split_once(' ')?;
            if scheme.eq_ignore_ascii_case("bearer") {
                Some(rest.trim().to_string())
            } else if scheme.eq_ignore_ascii_case("basic") {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .ok()?;
                let text = String::from_utf8(raw).ok()?;
                text.split_once(':').map(|(_, p)| p.to_string())
            } else {
                None
            }
        }
        _ => Some(value.to_string()),
    }
}

fn covers(scope: &str, owner: &Namespace) -> bool {
    if scope == "*" {
        return true;
    }
    match owner {
        Namespace::Project(p) => p == scope || p.starts_with(&format!("{scope}/")),
        Namespace::Group(g) => g == scope || g.starts_with(&format!("{scope}/")),
        Namespace::Instance => false,
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OfflineToken;
    use http::{HeaderMap, HeaderValue};

    fn cfg(token: &str, scopes: &[&str]) -> OfflineConfig {
        OfflineConfig {
            tokens: vec![OfflineToken {
                sha256: Sha256::digest(token.as_bytes()).into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            }],
            trusted_keys: vec![],
        }
    }

    fn cred(name: &'static str, value: &str) -> Credential {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        Credential::from_headers(&h)
    }

    #[test]
    fn tokens_and_scopes() {
        let c = cfg("s3cret", &["42", "acme"]);
        let p42 = Namespace::Project("42".into());
        assert!(allows(&c, &cred("private-token", "s3cret"), &p42));
        assert!(allows(&c, &cred("authorization", "Bearer s3cret"), &p42));
        assert!(allows(
            &c,
            &cred("authorization", "Basic dXNlcjpzM2NyZXQ="),
            &p42
        ));
        assert!(allows(
            &c,
            &cred("private-token", "s3cret"),
            &Namespace::Project("acme/web".into())
        ));
        assert!(!allows(
            &c,
            &cred("private-token", "s3cret"),
            &Namespace::Project("7".into())
        ));
        assert!(!allows(
            &c,
            &cred("private-token", "s3cret"),
            &Namespace::Instance
        ));
        assert!(!allows(&c, &cred("private-token", "wrong"), &p42));
        assert!(!allows(&c, &Credential::anonymous(), &p42));
        assert!(allows(
            &cfg("t", &["*"]),
            &cred("job-token", "t"),
            &Namespace::Instance
        ));
        assert!(allows(
            &OfflineConfig::default(),
            &Credential::anonymous(),
            &Namespace::Instance
        ));
    }

    #[test]
    fn ops_tokens_by_private_token_or_bearer_only() {
        let ops: Vec<[u8; 32]> = vec![Sha256::digest(b"ops").into()];
        assert!(ops_allows(&ops, &cred("private-token", "ops")));
        assert!(ops_allows(&ops, &cred("authorization", "Bearer ops")));
        assert!(!ops_allows(&ops, &cred("job-token", "ops")));
        assert!(!ops_allows(&ops, &cred("authorization", "Basic dTpvcHM=")));
        assert!(!ops_allows(&ops, &cred("private-token", "nope")));
        assert!(!ops_allows(&ops, &Credential::anonymous()));
        assert!(!ops_allows(&[], &cred("private-token", "ops")));
        assert!(ops_token_ok(&ops, "ops"));
        assert!(!ops_token_ok(&ops, "op"));
        assert!(!ops_token_ok(&ops, ""));
        assert!(!ops_token_ok(&[], "ops"));
    }
}
