//! Credentials as GitLab accepts them. A [`Credential`] never prints its secret; the only form
//! that is stored, used as a cache key or logged is its [`CredentialHash`].

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::secret::Secret;

/// Which header carried a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CredKind {
    /// `PRIVATE-TOKEN` (any case): personal, project or group access token.
    PrivateToken,
    /// `JOB-TOKEN`: a CI job token.
    JobToken,
    /// `Deploy-Token`.
    DeployToken,
    /// `Authorization` (Bearer or Basic), forwarded as sent.
    Authorization,
}

impl CredKind {
    pub fn header(self) -> HeaderName {
        match self {
            CredKind::PrivateToken => HeaderName::from_static("private-token"),
            CredKind::JobToken => HeaderName::from_static("job-token"),
            CredKind::DeployToken => HeaderName::from_static("deploy-token"),
            CredKind::Authorization => http::header::AUTHORIZATION,
        }
    }

    fn label(self) -> &'static str {
        match self {
            CredKind::PrivateToken => "PRIVATE-TOKEN",
            CredKind::JobToken => "JOB-TOKEN",
            CredKind::DeployToken => "Deploy-Token",
            CredKind::Authorization => "Authorization",
        }
    }
}

/// The credentials a request carried (zero or more), exactly as sent, for forwarding upstream.
#[derive(Clone, Default)]
pub struct Credential {
    parts: Vec<(CredKind, Secret)>,
    /// Its hash, computed once (a request asks for it at every gate it passes).
    hash: std::sync::OnceLock<CredentialHash>,
}

/// sha256 over the credential's parts: the only identity packrat keeps of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialHash(pub [u8; 32]);

impl CredentialHash {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for CredentialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cred:{}", &self.hex()[..12])
    }
}

impl Credential {
    pub fn anonymous() -> Self {
        Credential::default()
    }

    /// Collect the credential headers GitLab accepts
    /// (<https://docs.gitlab.com/api/rest/authentication/>).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut parts = Vec::new();
        for kind in [
            CredKind::PrivateToken,
            CredKind::JobToken,
            CredKind::DeployToken,
            CredKind::Authorization,
        ] {
            if let Some(v) = headers.get(kind.header()).and_then(|v| v.to_str().ok()) {
                let v = v.trim();
                if !v.is_empty() {
                    parts.push((kind, Secret::new(v.to_string())));
                }
            }
        }
        Credential {
            parts,
            hash: std::sync::OnceLock::new(),
        }
    }

    /// The credential of a request: its headers, and the `?private_token=` / `?job_token=`
    /// query parameters GitLab also accepts (<https://docs.gitlab.com/api/rest/authentication/>).
    /// A query parameter takes the place of a header of the same kind, as GitLab's auth finders
    /// read the parameter first. Upstream it is sent as that header, never in a URL.
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Self {
        let mut c = Self::from_headers(headers);
        for (kind, value) in query_credentials(query.unwrap_or("")) {
            c.parts.retain(|(k, _)| *k != kind);
            c.parts.push((kind, Secret::new(value)));
        }
        c.parts.sort_by_key(|(k, _)| *k);
        c
    }

    /// A bare token, sent as `PRIVATE-TOKEN` (used for `upstream.token_env`).
    pub fn private_token(token: &Secret) -> Self {
        Credential {
            parts: vec![(CredKind::PrivateToken, token.clone())],
            hash: std::sync::OnceLock::new(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.parts.is_empty()
    }

    /// Only `Authorization: Basic …`: on GitLab's npm routes that is read as a deploy token
    /// and nothing else (GitLab's auth finders; the tokens its npm docs list:
    /// <https://docs.gitlab.com/user/packages/npm_registry/>).
    pub fn is_basic_only(&self) -> bool {
        !self.parts.is_empty()
            && self.parts.iter().all(|(k, s)| {
                *k == CredKind::Authorization
                    && s.expose()
                        .split_once(' ')
                        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            })
    }

    pub fn hash(&self) -> CredentialHash {
        *self.hash.get_or_init(|| {
            let mut h = Sha256::new();
            for (k, s) in &self.parts {
                h.update(k.label().as_bytes());
                h.update([0]);
                h.update(s.expose().as_bytes());
                h.update([0]);
            }
            CredentialHash(h.finalize().into())
        })
    }

    /// The raw secrets, for the offline token check only (never logged, never stored).
    pub fn secrets(&self) -> impl Iterator<Item = (CredKind, &str)> + '_ {
        self.parts.iter().map(|(k, s)| (*k, s.expose()))
    }

    /// Headers to send upstream. Never call this for a host other than the one the
    /// credential was meant for.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        self.parts.iter().filter_map(|(k, s)| {
            let mut v = HeaderValue::from_str(s.expose()).ok()?;
            v.set_sensitive(true);
            Some((k.header(), v))
        })
    }
}

/// The query parameters GitLab reads a credential from.
const QUERY_PARAMS: &[(&str, CredKind)] = &[
    ("private_token", CredKind::PrivateToken),
    ("job_token", CredKind::JobToken),
];

fn query_kind(pair: &str) -> Option<CredKind> {
    let key = pair.split_once('=').map_or(pair, |(k, _)| k);
    let key = form_decode(key);
    QUERY_PARAMS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, kind)| *kind)
}

fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Non-empty credential parameters of a raw query string (the last one of a kind wins).
fn query_credentials(query: &str) -> Vec<(CredKind, String)> {
    let mut found: Vec<(CredKind, String)> = Vec::new();
    for pair in query.split('&') {
        let Some(kind) = query_kind(pair) else {
            continue;
        };
        let value = form_decode(pair.split_once('=').map_or("", |(_, v)| v));
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        found.retain(|(k, _)| *k != kind);
        found.push((kind, value.to_string()));
    }
    found
}

/// `query` without its credential parameters, or `None` when nothing else is left: the only
/// form of a client's query string that may be forwarded upstream or logged.
pub fn strip_query_credentials(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && query_kind(pair).is_none())
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("anonymous");
        }
        for (i, (k, _)) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: ****", k.label())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_secret() {
        let mut h = HeaderMap::new();
        h.insert("private-token", HeaderValue::from_static("glpat-secret"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer glpat-secret"),
        );
        let c = Credential::from_headers(&h);
        let shown = format!("{c} {c:?} {:?}", c.hash());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("PRIVATE-TOKEN: ****"));
    }

    #[test]
    fn hash_depends_on_secret_and_kind() {
        let mut a = HeaderMap::new();
        a.insert("private-token", HeaderValue::from_static("t1"));
        let mut b = HeaderMap::new();
        b.insert("job-token", HeaderValue::from_static("t1"));
        let mut c = HeaderMap::new();
        c.insert("Private-Token", HeaderValue::from_static("t2"));
        let (a, b, c) = (
            Credential::from_headers(&a),
            Credential::from_headers(&b),
            Credential::from_headers(&c),
        );
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_ne!(a.hash(), Credential::anonymous().hash());
    }

    #[test]
    fn query_tokens_are_credentials_and_stripped_from_the_query() {
        let c = Credential::from_request(&HeaderMap::new(), Some("a=1&private_token=glpat-q%2B1"));
        let mut h = HeaderMap::new();
        h.insert("private-token", HeaderValue::from_static("glpat-q+1"));
        assert_eq!(
            c.hash(),
            Credential::from_headers(&h).hash(),
            "same as the header"
        );
        let sent: Vec<_> = c.headers().collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "private-token");
        assert_eq!(sent[0].1, "glpat-q+1");

        let c = Credential::from_request(&h, Some("job_token=jt"));
        let kinds: Vec<_> = c.secrets().map(|(k, _)| k).collect();
        assert_eq!(kinds, [CredKind::PrivateToken, CredKind::JobToken]);
        // A parameter takes the place of the header of its kind.
        let c = Credential::from_request(&h, Some("private_token=other"));
        let secrets: Vec<_> = c.secrets().map(|(_, s)| s.to_string()).collect();
        assert_eq!(secrets, ["other"]);
        // Empty values are no credential.
        assert!(Credential::from_request(&HeaderMap::new(), Some("private_token=")).is_anonymous());

        assert_eq!(
            strip_query_credentials("page=2&private_token=s&job%5Ftoken=t&per_page=5").as_deref(),
            Some("page=2&per_page=5")
        );
        assert_eq!(strip_query_credentials("private_token=s"), None);
        assert_eq!(
            strip_query_credentials("q=private_token").as_deref(),
            Some("q=private_token")
        );
    }
}
