//! Content digests: sha256 addresses blobs; sha1 and sha512 verify npm `shasum`/`integrity`.

use std::fmt;

use base64::Engine;

use crate::error::Mismatch;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};

/// A sha256 content address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).ok_or_else(|| serde::de::Error::custom("bad sha256 hex"))
    }
}

/// What a download must match before it becomes visible.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub sha256: Option<[u8; 32]>,
    pub sha1: Option<[u8; 20]>,
    pub sha512: Option<[u8; 64]>,
    /// Exact size, when known in advance.
    pub size: Option<u64>,
    /// Refuse content larger than this.
    pub max_size: Option<u64>,
}

impl Expect {
    /// From npm's `dist.shasum` (sha1 hex) and `dist.integrity` (SRI, possibly several hashes).
    pub fn npm(shasum: Option<&str>, integrity: Option<&str>) -> Self {
        let mut e = Expect::default();
        if let Some(s) = shasum {
            let mut b = [0u8; 20];
            if hex::decode_to_slice(s.trim(), &mut b).is_ok() {
                e.sha1 = Some(b);
            }
        }
        if let Some(sri) = integrity {
            for part in sri.split_whitespace() {
                let Some((alg, b64)) = part.split_once('-') else {
                    continue;
                };
                let b64 = b64.split('?').next().unwrap_or(b64);
                let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                    continue;
                };
                match alg {
                    "sha512" if raw.len() == 64 => {
                        let mut b = [0u8; 64];
                        b.copy_from_slice(&raw);
                        e.sha512 = Some(b);
                    }
                    "sha1" if raw.len() == 20 && e.sha1.is_none() => {
                        let mut b = [0u8; 20];
                        b.copy_from_slice(&raw);
                        e.sha1 = Some(b);
                    }
                    _ => {}
                }
            }
        }
        e
    }

    /// What a lockfile's `integrity` (SRI) asks of a tarball: `npm ci` refuses any other
    /// offline with EINTEGRITY.
    pub fn lockfile(integrity: &str) -> Self {
        Expect::npm(None, Some(integrity))
    }

    /// Check the hashed tarball of `name`'s `version` against this [`Expect::lockfile`]: the
    /// error says that it does not match the lockfile, and why.
    pub fn verify_lockfile(
        &self,
        hasher: Hasher,
        len: u64,
        name: impl std::fmt::Display,
        version: &str,
    ) -> Result<Digest, LockfileMismatch> {
        hasher.verify(self, len).map_err(|why| LockfileMismatch {
            name: name.to_string(),
            version: version.to_owned(),
            why,
        })
    }
}

/// A tarball that is not what a lockfile's `integrity` says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {version}: the tarball does not match the lockfile's integrity ({why})")]
pub struct LockfileMismatch {
    pub name: String,
    pub version: String,
    pub why: Mismatch,
}

/// Incremental hashing of everything written to a blob, in one pass.
pub struct Hasher {
    sha256: Sha256,
    sha1: Option<Sha1>,
    sha512: Option<Sha512>,
}

impl Hasher {
    /// For an npm tarball whose checksums arrive while it is written (the packument fetched
    /// at the same time): sha256 (its address) and sha1, GitLab's `dist.shasum`, the one
    /// checksum a GitLab packument carries (its `dist` is rebuilt with `shasum` and `tarball`
    /// only). sha512 is not computed speculatively: it was a fifth of a cold miss's CPU.
    pub fn deferred() -> Self {
        Hasher {
            sha256: Sha256::new(),
            sha1: Some(Sha1::new()),
            sha512: None,
        }
    }

    /// `expect` reduced to what this hasher can check: an sha512 it does not compute is
    /// dropped when an sha1 it does compute stays to check (never leaving nothing to check).
    pub fn checkable(&self, mut expect: Expect) -> Expect {
        if self.sha512.is_none() && self.sha1.is_some() && expect.sha1.is_some() {
            expect.sha512 = None;
        }
        expect
    }

    pub fn new(expect: &Expect) -> Self {
        Hasher {
            sha256: Sha256::new(),
            sha1: expect.sha1.map(|_| Sha1::new()),
            sha512: expect.sha512.map(|_| Sha512::new()),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        if let Some(h) = &mut self.sha1 {
            h.update(chunk);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(chunk);
        }
    }

    /// Finish and check against `expect`; returns the sha256 address.
    pub fn verify(self, expect: &Expect, len: u64) -> Result<Digest, Mismatch> {
        if let Some(size) = expect.size {
            if size != len {
                return Err(Mismatch::Size {
                    expected: size,
                    got: len,
                });
            }
        }
        let digest = Digest(self.sha256.finalize().into());
        if let Some(want) = expect.sha256 {
            if want != digest.0 {
                return Err(Mismatch::Sha256 {
                    expected: hex::encode(want),
                    got: digest.hex(),
                });
            }
        }
        // An expected hash that was not computed is a mismatch, never a pass.
        if expect.sha1.is_some() && self.sha1.is_none()
            || expect.sha512.is_some() && self.sha512.is_none()
        {
            return Err(Mismatch::NotComputed);
        }
        if let (Some(want), Some(h)) = (expect.sha1, self.sha1) {
            let got: [u8; 20] = h.finalize().into();
            if want != got {
                return Err(Mismatch::Sha1 {
                    expected: hex::encode(want),
                    got: hex::encode(got),
                });
            }
        }
        if let (Some(want), Some(h)) = (expect.sha512, self.sha512) {
            let got: [u8; 64] = h.finalize().into();
            if want != got {
                return Err(Mismatch::Sha512);
            }
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_expectations_parse_shasum_and_sri() {
        let data = b"hello";
        let sha1 = hex::encode(Sha1::digest(data));
        let sri = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(data))
        );
        let e = Expect::npm(Some(&sha1), Some(&sri));
        let mut h = Hasher::new(&e);
        h.update(data);
        assert!(h.verify(&e, 5).is_ok());

        let mut h = Hasher::new(&e);
        h.update(b"hellO");
        assert!(h.verify(&e, 5).is_err());
    }

    #[test]
    fn a_deferred_hasher_checks_shasum_and_never_passes_with_nothing_checked() {
        let data = b"tarball bytes";
        let sha1 = hex::encode(Sha1::digest(data));
        let sri = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(data))
        );
        let check = |shasum: Option<&str>, integrity: Option<&str>| {
            let mut h = Hasher::deferred();
            h.update(data);
            let expect = h.checkable(Expect::npm(shasum, integrity));
            h.verify(&expect, data.len() as u64)
        };
        assert!(check(Some(&sha1), None).is_ok());
        assert!(check(Some(&sha1), Some(&sri)).is_ok());
        let wrong = hex::encode(Sha1::digest(b"other"));
        assert!(matches!(
            check(Some(&wrong), Some(&sri)),
            Err(Mismatch::Sha1 { .. })
        ));
        // An sha512 alone cannot be dropped: nothing would be left to check.
        assert!(matches!(
            check(None, Some(&sri)),
            Err(Mismatch::NotComputed)
        ));
    }

    #[test]
    fn digest_round_trips_hex() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(&d.hex()), Some(d));
        assert_eq!(Digest::parse("zz"), None);
    }
}
