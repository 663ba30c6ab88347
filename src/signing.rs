//! Signed bundles (the bundle layout: [`crate::bundle`]): Ed25519 keys, the signature of a
//! bundle's manifest, and its check.
//!
//! - `packrat keygen --out KEY` writes the private key (PKCS#8, base64 in a PEM-style armour,
//!   mode 0600) to `KEY` and the public key to `KEY.pub` as `ed25519:<base64 of 32 bytes>`,
//!   the form `[offline] trusted_keys` takes.
//! - `packrat export --sign KEY` signs the exact bytes of `manifest.json`; the signature goes in
//!   `manifest.sig` right after it. The manifest holds the digest of the index and of every
//!   blob, so the signature covers the whole bundle.
//! - With `trusted_keys` set, `packrat import` refuses a bundle whose manifest carries no valid
//!   signature by one of them, before it writes anything.

use std::path::Path;

use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

const PUBLIC_PREFIX: &str = "ed25519:";
const ARMOUR_BEGIN: &str = "-----BEGIN PACKRAT ED25519 PRIVATE KEY-----";
const ARMOUR_END: &str = "-----END PACKRAT ED25519 PRIVATE KEY-----";

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
    #[error("{0} already exists; refusing to overwrite a key (remove it first)")]
    Exists(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `manifest.sig`: which key signed the manifest, and the signature.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestSignature {
    pub alg: String,
    /// The signer's public key, `ed25519:<base64>`.
    pub key: String,
    /// base64 of the 64-byte Ed25519 signature over the manifest's bytes.
    pub sig: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `ed25519:<base64>` as written by `keygen` and listed in `trusted_keys`.
pub fn format_public_key(key: &[u8]) -> String {
    format!("{PUBLIC_PREFIX}{}", b64().encode(key))
}

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadKey(pub String);

/// Parses `ed25519:<base64 of 32 bytes>`.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], BadKey> {
    let body = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(|| {
        BadKey(format!("expected \"{PUBLIC_PREFIX}<base64>\" (the contents of a KEY.pub file written by `packrat keygen`)"))
    })?;
    let raw = b64()
        .decode(body)
        .map_err(|e| BadKey(format!("the key is not base64: {e}")))?;
    raw.try_into()
        .map_err(|_| BadKey("an Ed25519 public key is 32 bytes".to_owned()))
}

/// Writes a new key pair: `out` (private, 0600) and `out.pub`. Returns the public key text.
#[allow(clippy::disallowed_methods)] // the key files are the user's, outside the data directory
pub fn keygen(out: &Path) -> Result<String, SigningError> {
    let public_path = public_path(out);
    for p in [out, public_path.as_path()] {
        if p.exists() {
            return Err(SigningError::Exists(p.display().to_string()));
        }
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SigningError::Key {
        path: out.display().to_string(),
        reason: "the system random source failed".into(),
    })?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| SigningError::Key {
        path: out.display().to_string(),
        reason: e.to_string(),
    })?;
    let private = format!(
        "{ARMOUR_BEGIN}\n{}\n{ARMOUR_END}\n",
        b64().encode(pkcs8.as_ref())
    );
    write_private(out, private.as_bytes())?;
    let public = format_public_key(pair.public_key().as_ref());
    std::fs::write(&public_path, format!("{public}\n")).map_err(|source| SigningError::Io {
        path: public_path.display().to_string(),
        source,
    })?;
    Ok(public)
}

fn public_path(out: &Path) -> std::path::PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".pub");
    s.into()
}

#[allow(clippy::disallowed_methods)] // the key file is the user's
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SigningError> {
    use std::io::Write;
    let io = |source| SigningError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// A private key read from a file `keygen` wrote.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    pub fn load(path: &Path) -> Result<SigningKey, SigningError> {
        let bad = |reason: String| SigningError::Key {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let der = b64()
            .decode(body.trim())
            .map_err(|e| bad(format!("not a key written by `packrat keygen`: {e}")))?;
        Ed25519KeyPair::from_pkcs8(&der)
            .map(SigningKey)
            .map_err(|e| bad(format!("not an Ed25519 private key: {e}")))
    }

    pub fn sign(&self, manifest: &[u8]) -> ManifestSignature {
        ManifestSignature {
            alg: "ed25519".into(),
            key: format_public_key(self.0.public_key().as_ref()),
            sig: b64().encode(self.0.sign(manifest).as_ref()),
        }
    }
}

/// Whether `sig` is a valid signature of `manifest` by one of `trusted`. Every key is tried;
/// the signature's own `key` field is only a hint and never trusted by itself.
pub fn verify(manifest: &[u8], sig: &ManifestSignature, trusted: &[[u8; 32]]) -> bool {
    if sig.alg != "ed25519" {
        return false;
    }
    let Ok(raw) = b64().decode(sig.sig.trim()) else {
        return false;
    };
    trusted.iter().any(|key| {
        signature::UnparsedPublicKey::new(&signature::ED25519, key)
            .verify(manifest, &raw)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let public = keygen(&key).unwrap();
        assert!(matches!(keygen(&key), Err(SigningError::Exists(_))));
        let trusted = parse_public_key(&public).unwrap();
        let signer = SigningKey::load(&key).unwrap();
        let sig = signer.sign(b"manifest");
        assert!(verify(b"manifest", &sig, &[trusted]));
        assert!(!verify(b"manifest!", &sig, &[trusted]));
        assert!(!verify(b"manifest", &sig, &[[7u8; 32]]));
        let mut forged = sig.clone();
        forged.sig = b64().encode([0u8; 64]);
        assert!(!verify(b"manifest", &forged, &[trusted]));
        assert!(parse_public_key("ed25519:AAAA").is_err());
        assert!(parse_public_key("rsa:AAAA").is_err());
    }
}
