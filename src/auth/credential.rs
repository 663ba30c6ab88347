//! Credentials as GitLab accepts them. A [`Credential`] never prints its secret; the only form
//! that is stored, used as a cache key or logged is its [`CredentialHash`].

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::config::Secret;

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

    /// Collect the credential headers GitLab accepts (API.md §4).
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
        Credential { parts }
    }

    /// A bare token, sent as `PRIVATE-TOKEN` (used for `upstream.token_env`).
    pub fn private_token(token: &Secret) -> Self {
        Credential {
            parts: vec![(CredKind::PrivateToken, token.clone())],
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn hash(&self) -> CredentialHash {
        let mut h = Sha256::new();
        for (k, s) in &self.parts {
            h.update(k.label().as_bytes());
            h.update([0]);
            h.update(s.expose().as_bytes());
            h.update([0]);
        }
        CredentialHash(h.finalize().into())
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
}
