//! A fake Go checksum database that is a real one: records of `h1:` hashes in a Merkle tree
//! (RFC 6962, as `golang.org/x/mod/sumdb/tlog`), a tree head signed with Ed25519 in the
//! `golang.org/x/mod/sumdb/note` format, served over its own 127.0.0.1 listener as
//! `latest`, `lookup/<module>@<version>` and `tile/8/<L>/<NNN>[.p/<W>]` (and `tile/8/data/...`).
//! The real go command verifies it with `GOSUMDB="<verifier key> <url>"`.
//!
//! Its name is the listener's host, `127.0.0.1`: that is what packrat serves it as
//! (`/go/sumdb/<host of forwarding.go_sumdb>/`). Before the given records the log holds
//! [`FILLER`] records of made-up modules, so real lookups need tiles from two levels
//! (`tile/8/0/001.p/W` and `tile/8/1/000.p/1`), as against a big public database.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sha2::{Digest as _, Sha256};

use crate::support::fake_gitlab::go::{h1_mod, h1_zip};
use crate::support::fake_gitlab::World;
use crate::support::serve::{self, lock, Reply, RequestLog, Server};

/// Made-up records logged before the real ones.
pub const FILLER: usize = 300;
/// Tile height, as sum.golang.org uses.
const H: u32 = 8;
/// The signing key's seed: fixed, so the verifier key is the same in every run.
const SEED: [u8; 32] = *b"packrat fake checksum database!!";

type Hash = [u8; 32];

/// One module version as the database records it.
#[derive(Clone, Debug)]
pub struct SumdbEntry {
    pub module: String,
    pub version: String,
    /// `h1:` of the module zip.
    pub zip_h1: String,
    /// `h1:` of its go.mod.
    pub mod_h1: String,
}

impl SumdbEntry {
    /// The record text: the two go.sum lines.
    pub fn record(&self) -> String {
        format!(
            "{m} {v} {z}\n{m} {v}/go.mod {g}\n",
            m = self.module,
            v = self.version,
            z = self.zip_h1,
            g = self.mod_h1
        )
    }
}

/// Entries for every module version the fake GitLab serves for `world`, hashed from the
/// zips and go.mod files it builds.
pub fn entries_for(world: &World) -> Vec<SumdbEntry> {
    world
        .go_module_versions()
        .into_iter()
        .map(|mv| SumdbEntry {
            zip_h1: h1_zip(&world.go_zip(&mv.module, &mv.version).expect("zip")),
            mod_h1: h1_mod(&world.go_mod(&mv.module, &mv.version).expect("go.mod")),
            module: mv.module,
            version: mv.version,
        })
        .collect()
}

struct Shared {
    records: Vec<String>,
    leaves: Vec<Hash>,
    /// `module@version` → record id
    ids: HashMap<String, usize>,
    signed_tree: String,
    /// Every request path.
    log: RequestLog<String>,
}

/// A running fake checksum database; dropping it stops the listener.
pub struct FakeSumdb {
    addr: SocketAddr,
    name: String,
    vkey: String,
    shared: Arc<Shared>,
    server: Mutex<Option<Server>>,
}

fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

fn node_hash(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// RFC 6962 Merkle tree hash of the leaves.
pub fn tree_hash(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

/// `<name>+<hex8 key hash>+<base64(0x01 || public key)>`, and the signer's key hash.
fn verifier_key(name: &str, public: &[u8]) -> (String, [u8; 4]) {
    let mut key = vec![1u8];
    key.extend_from_slice(public);
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(&key);
    let digest = h.finalize();
    let hash: [u8; 4] = digest[..4].try_into().expect("4 bytes");
    (
        format!(
            "{name}+{}+{}",
            hex::encode(hash),
            base64::engine::general_purpose::STANDARD.encode(&key)
        ),
        hash,
    )
}

/// A signed note: text, a blank line, `— <name> <base64(key hash || signature)>`.
fn sign_note(text: &str, name: &str, kp: &Ed25519KeyPair, key_hash: [u8; 4]) -> String {
    let sig = kp.sign(text.as_bytes());
    let mut blob = key_hash.to_vec();
    blob.extend_from_slice(sig.as_ref());
    format!(
        "{text}\n\u{2014} {name} {}\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// Go's `!` case-decoding (strict: `!` must precede a lower-case letter; no upper case).
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
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

/// `tile/8/<L>/<x001/234>[.p/<W>]` → (L, N, W); L = -1 for `data`.
pub fn parse_tile(path: &str) -> Option<(i64, u64, usize)> {
    let rest = path.strip_prefix("tile/")?;
    let mut segs: Vec<&str> = rest.split('/').collect();
    if segs.len() < 3 || segs[0] != H.to_string() {
        return None;
    }
    let level: i64 = match segs[1] {
        "data" => -1,
        l if l.len() == 1 && l.bytes().all(|b| b.is_ascii_digit()) => l.parse().ok()?,
        _ => return None,
    };
    segs.drain(..2);
    let mut width = 1usize << H;
    if segs.len() >= 2 && segs[segs.len() - 2].ends_with(".p") {
        let w = segs.pop()?;
        width = w
            .parse::<usize>()
            .ok()
            .filter(|w| (1..(1 << H)).contains(w))?;
        if w != width.to_string() {
            return None;
        }
        let last = segs.pop()?.strip_suffix(".p")?;
        segs.push(last);
    }
    let three = |s: &str| {
        (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (last, upper) = segs.split_last()?;
    let mut n = 0u64;
    for s in upper {
        n = n * 1000 + three(s.strip_prefix('x')?)?;
    }
    n = n * 1000 + three(last)?;
    Some((level, n, width))
}

impl FakeSumdb {
    /// Starts a database holding [`FILLER`] made-up records followed by `entries`.
    pub async fn start(entries: &[SumdbEntry]) -> FakeSumdb {
        let (listener, addr) = serve::bind_any("fake sumdb");
        let name = addr.ip().to_string();
        let kp = Ed25519KeyPair::from_seed_unchecked(&SEED).expect("ed25519 seed");
        let (vkey, key_hash) = verifier_key(&name, kp.public_key().as_ref());

        let mut records: Vec<String> = (0..FILLER)
            .map(|i| {
                let fake = |what: &str| {
                    format!(
                        "h1:{}",
                        base64::engine::general_purpose::STANDARD
                            .encode(Sha256::digest(format!("filler {i} {what}")))
                    )
                };
                format!(
                    "example.com/filler/m{i:03} v1.0.{i} {}\nexample.com/filler/m{i:03} v1.0.{i}/go.mod {}\n",
                    fake("zip"),
                    fake("mod")
                )
            })
            .collect();
        let mut ids = HashMap::new();
        for e in entries {
            ids.insert(format!("{}@{}", e.module, e.version), records.len());
            records.push(e.record());
        }
        let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r.as_bytes())).collect();
        let root = tree_hash(&leaves);
        let tree = format!(
            "go.sum database tree\n{}\n{}\n",
            leaves.len(),
            base64::engine::general_purpose::STANDARD.encode(root)
        );
        let signed_tree = sign_note(&tree, &name, &kp, key_hash);
        let shared = Arc::new(Shared {
            records,
            leaves,
            ids,
            signed_tree,
            log: RequestLog::default(),
        });
        let server = serve::serve_replies(listener, shared.clone(), |shared, req| {
            answer(shared, req.uri().path())
        });
        FakeSumdb {
            addr,
            name,
            vkey,
            server: Mutex::new(Some(server)),
            shared,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The database's name (`127.0.0.1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, `<name>+<hash>+<key>`.
    pub fn verifier_key(&self) -> &str {
        &self.vkey
    }

    /// A `GOSUMDB` value: this database's key, reached at `url`.
    pub fn gosumdb(&self, url: &str) -> String {
        format!("{} {url}", self.vkey)
    }

    /// The signed tree head `latest` serves.
    pub fn signed_tree(&self) -> &str {
        &self.shared.signed_tree
    }

    /// Records in the log (filler included).
    pub fn size(&self) -> usize {
        self.shared.records.len()
    }

    serve::request_counters!(shared.log => String);

    /// Closes the listener and drops open connections: connects are refused from then on.
    pub async fn go_down(&self) {
        let server = lock(&self.server).take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }
}

fn not_found() -> Reply {
    Reply::text(404, "not found\n")
}

fn answer(shared: &Shared, path: &str) -> Reply {
    shared.log.push(path.to_string());
    let Some(rest) = path.strip_prefix('/') else {
        return not_found();
    };
    if rest == "latest" {
        return Reply::text(200, shared.signed_tree.clone());
    }
    if let Some(key) = rest.strip_prefix("lookup/") {
        let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        let found = decoded.rsplit_once('@').and_then(|(m, v)| {
            let key = format!("{}@{}", unescape(m)?, unescape(v)?);
            shared.ids.get(&key).copied()
        });
        return match found {
            Some(id) => Reply::text(
                200,
                format!("{id}\n{}\n{}", shared.records[id], shared.signed_tree),
            ),
            None => not_found(),
        };
    }
    let Some((level, n, width)) = parse_tile(rest) else {
        return not_found();
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let first = n.saturating_mul(1 << H);
    let mut body = Vec::new();
    if level < 0 {
        if first.saturating_add(width) > shared.records.len() {
            return not_found();
        }
        for id in first..first + width {
            body.extend_from_slice(format!("{id}\n{}\n", shared.records[id]).as_bytes());
        }
    } else {
        // Entry i is the hash of the complete subtree of height level*H at index first+i.
        let span = 1usize << (H as usize * level as usize);
        if (first + width).saturating_mul(span) > shared.leaves.len() {
            return not_found();
        }
        for i in first..first + width {
            body.extend_from_slice(&tree_hash(&shared.leaves[i * span..(i + 1) * span]));
        }
    }
    Reply::new(200, "application/octet-stream", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths() {
        assert_eq!(parse_tile("tile/8/0/000"), Some((0, 0, 256)));
        assert_eq!(parse_tile("tile/8/0/001.p/45"), Some((0, 1, 45)));
        assert_eq!(parse_tile("tile/8/1/x001/234.p/5"), Some((1, 1234, 5)));
        assert_eq!(
            parse_tile("tile/8/data/x002/x000/007"),
            Some((-1, 2_000_007, 256))
        );
        for bad in [
            "tile/8/0/1",
            "tile/4/0/000",
            "tile/8/0/000.p/0",
            "tile/8/0/000.p/256",
            "tile/8/0/000.p/07",
            "tile/8/0/1000",
            "tile/8/0/y001/000",
            "tile/8/../000",
        ] {
            assert_eq!(parse_tile(bad), None, "{bad}");
        }
    }

    #[test]
    fn merkle_tree_hash() {
        // RFC 6962: MTH of two leaves is node(leaf0, leaf1); three leaves split 2 + 1.
        let l: Vec<Hash> = (0..3u8).map(|i| leaf_hash(&[i])).collect();
        assert_eq!(tree_hash(&l[..2]), node_hash(&l[0], &l[1]));
        assert_eq!(tree_hash(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }
}
