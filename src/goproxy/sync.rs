//! Mirroring Go modules ahead of time (`packrat sync`): `.info`, `.mod` and `.zip` through
//! the same gate, cache and checks as serving, and the checksum database lookup plus the
//! tiles that verify it, so `GOSUMDB` verification works offline.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{context, sumdb, FileKind, ModulePath, ModuleVersion};
use crate::auth::Credential;
use crate::cache::{CacheOutcome, Core};
use crate::error::Error;

use crate::gitlab::Namespace;

pub struct Synced {
    /// Files fetched now (the rest were already present).
    pub fetched: u32,
    pub bytes: u64,
    /// The checksum database record for this version (`None` for a private module, which
    /// is never looked up publicly). Its tiles are fetched once for all records, by
    /// [`sync_tiles`].
    pub lookup: Option<Lookup>,
}

/// A cached checksum database lookup: the record's id and the tree size its note signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub record: u64,
    pub size: u64,
}

/// Fetch (or confirm present) one module version: `.info` + `.mod`, and `.zip` unless only
/// the `go.mod` is needed (go.sum `/go.mod` lines), and its checksum database lookup unless
/// the module is private. Every failure is returned: a public module without its lookup
/// would fail `GOSUMDB` verification offline.
pub async fn sync_module(
    core: &Arc<Core>,
    target: &Namespace,
    module: &ModulePath,
    version: &ModuleVersion,
    mod_only: bool,
    credential: &Credential,
) -> Result<Synced, Error> {
    let anonymous = Credential::anonymous();
    let ctx = context(core, target, module, credential, &anonymous).await?;
    ctx.list(module).await?;
    // Both names of the project, so the mirror answers at either spelling offline.
    if let super::Source::Gitlab(project) = &ctx.source {
        core.learn_project_names(credential, project).await;
    }
    let mut out = Synced {
        fetched: 0,
        bytes: 0,
        lookup: None,
    };
    let kinds: &[FileKind] = if mod_only {
        &[FileKind::Mod]
    } else {
        &[FileKind::Info, FileKind::Mod, FileKind::Zip]
    };
    for kind in kinds {
        let reply = ctx.file(module, version, *kind).await?;
        let fetched = reply.outcome != CacheOutcome::Hit;
        let n = reply.body.drain().await.map_err(|e| Error::Sync {
            item: format!("{module}@{}", version.as_str()),
            reason: format!("download failed: {e}"),
        })?;
        if fetched {
            out.fetched += 1;
            out.bytes += n;
        }
        let key = format!("{}@{}.{}", ctx.key(module), version.as_str(), kind.ext());
        pin(core, &key)?;
    }
    // Asked after the files: a module GitLab served is pinned by now, hence private.
    if !super::is_private(core, module.as_str()).await? {
        let lookup = format!("lookup/{}@{}", module.escaped(), version.escaped());
        let body = read_reply(fetch_sumdb(core, &lookup).await?).await?;
        let (record, size) = parse_lookup(&body).ok_or_else(|| Error::Sync {
            item: format!("{module}@{}", version.as_str()),
            reason: "unexpected checksum database answer".into(),
        })?;
        out.lookup = Some(Lookup { record, size });
    }
    Ok(out)
}

/// Keep a synced blob through gc and background eviction.
fn pin(core: &Core, blob_key: &str) -> Result<(), Error> {
    core.pin_for_mirror(blob_key)
}

/// Serve a checksum database path through the cache; lookups and tiles are pinned.
async fn fetch_sumdb(core: &Arc<Core>, rest: &str) -> Result<crate::reply::Reply, Error> {
    let name = sumdb::served_name(&core.config().forwarding.go_sumdb);
    let reply = sumdb::handle(core, &name, rest).await?;
    if rest != "latest" {
        pin(core, &format!("sumdb:{name}/{rest}"))?;
    }
    Ok(reply)
}

/// After all lookups: cache `latest` once, then every tile that proves the synced records
/// (see [`tile_set`]). Returns the number of tiles.
pub async fn sync_tiles(core: &Arc<Core>, lookups: &[Lookup]) -> Result<u32, Error> {
    if lookups.is_empty() {
        return Ok(0);
    }
    let body = read_reply(fetch_sumdb(core, "latest").await?).await?;
    let latest = parse_tree_size(&body).ok_or_else(|| Error::Sync {
        item: "latest".into(),
        reason: "unexpected checksum database answer".into(),
    })?;
    let mut n = 0;
    for tile in tile_set(lookups, latest) {
        fetch_sumdb(core, &tile)
            .await?
            .body
            .drain()
            .await
            .map_err(|e| Error::Sync {
                item: tile.clone(),
                reason: format!("download failed: {e}"),
            })?;
        n += 1;
    }
    Ok(n)
}

/// The tiles a go command needs to verify `lookups` offline. It proves each record in the
/// largest tree it has seen, which depends on the order it looks records up in: so for
/// each record, the tiles at its own tree size and at the largest size (of `latest` and
/// every lookup), plus those proving its tree a prefix of the largest one.
pub fn tile_set(lookups: &[Lookup], latest: u64) -> BTreeSet<String> {
    let max = lookups.iter().map(|l| l.size).fold(latest, u64::max);
    let mut out = BTreeSet::new();
    for l in lookups {
        out.extend(tiles_for(l.record, l.size));
        out.extend(tiles_for(l.record, max));
        if l.size < max {
            out.extend(tiles_for(l.size - 1, max));
        }
    }
    out
}

async fn read_reply(reply: crate::reply::Reply) -> Result<Vec<u8>, Error> {
    reply.body.into_bytes().await.map_err(|e| Error::Sync {
        item: "checksum database".into(),
        reason: format!("reading its answer: {e}"),
    })
}

/// A lookup answer is `<record id>\n<go.sum lines>\n\n<signed note>`, the note's text being
/// `go.sum database tree\n<size>\n<root hash>\n`.
pub fn parse_lookup(body: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(body).ok()?;
    let record: u64 = text.lines().next()?.trim().parse().ok()?;
    let size = parse_tree_size(body)?;
    (record < size).then_some((record, size))
}

/// The tree size in a signed tree note (`latest`, or the note ending a lookup answer).
pub fn parse_tree_size(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let mut lines = text.lines().skip_while(|l| *l != "go.sum database tree");
    lines.next()?;
    let size: u64 = lines.next()?.trim().parse().ok()?;
    (size > 0).then_some(size)
}

/// Tile height of the Go checksum database.
const H: u32 = 8;

/// The hash tiles that prove record `r` in a tree of `n` records (`tlog` layout): at every
/// level, the tile holding `r`'s ancestor and the tile at the tree's right edge, each at the
/// width the tree of size `n` gives it.
pub fn tiles_for(r: u64, n: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut level = 0u32;
    loop {
        let shift = H * level;
        if shift >= 64 {
            break;
        }
        let count = n >> shift; // hashes stored at this tile level's tree level
        if count == 0 {
            break;
        }
        let width = 1u64 << H;
        for k in [(r >> shift) / width, (count - 1) / width] {
            let w = (count - k * width).min(width);
            let path = tile_path(level, k, w);
            if !out.contains(&path) {
                out.push(path);
            }
        }
        level += 1;
    }
    out
}

fn tile_path(level: u32, index: u64, width: u64) -> String {
    let mut n = index;
    let mut s = format!("{:03}", n % 1000);
    while n >= 1000 {
        n /= 1000;
        s = format!("x{:03}/{s}", n % 1000);
    }
    let full = 1u64 << H;
    if width < full {
        format!("tile/{H}/{level}/{s}.p/{width}")
    } else {
        format!("tile/{H}/{level}/{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_follow_tlog() {
        assert_eq!(tile_path(0, 1_234_067, 256), "tile/8/0/x001/x234/067");
        assert_eq!(tile_path(1, 5, 17), "tile/8/1/005.p/17");
        // 3 records: one partial tile at level 0.
        assert_eq!(tiles_for(1, 3), vec!["tile/8/0/000.p/3"]);
        // 600 records, record 10: full tile 0, right-edge partial tile 2, and level 1.
        assert_eq!(
            tiles_for(10, 600),
            vec!["tile/8/0/000", "tile/8/0/002.p/88", "tile/8/1/000.p/2"]
        );
    }

    #[test]
    fn lookup_answers_parse() {
        let body = b"7\nexample.com/m v1.0.0 h1:abc=\nexample.com/m v1.0.0/go.mod h1:def=\n\ngo.sum database tree\n12\nROOT=\n\n\xe2\x80\x94 sum.example AAAA\n";
        assert_eq!(parse_lookup(body), Some((7, 12)));
        assert_eq!(parse_lookup(b"garbage"), None);
        let latest = b"go.sum database tree\n600\nROOT=\n\n\xe2\x80\x94 sum.example AAAA\n";
        assert_eq!(parse_tree_size(latest), Some(600));
    }

    #[test]
    fn tile_set_proves_records_at_the_largest_tree() {
        let l = |record, size| Lookup { record, size };
        // One record, tree unchanged since its lookup: its own tiles only.
        assert_eq!(
            tile_set(&[l(1, 3)], 3).into_iter().collect::<Vec<_>>(),
            vec!["tile/8/0/000.p/3"]
        );
        // Two lookups at sizes 300 and 600, latest 610: every record is proved at its own
        // size and at 610, and each older tree is proved a prefix of 610.
        let set = tile_set(&[l(10, 300), l(550, 600)], 610);
        for t in tiles_for(10, 300)
            .into_iter()
            .chain(tiles_for(550, 600))
            .chain(tiles_for(10, 610))
            .chain(tiles_for(550, 610))
            .chain(tiles_for(299, 610))
            .chain(tiles_for(599, 610))
        {
            assert!(set.contains(&t), "{t} missing from {set:?}");
        }
        // At 610: level 0 right edge is tile 2 with 98 hashes, level 1 has 2 (partial) hashes.
        assert!(set.contains("tile/8/0/002.p/98"));
        assert!(set.contains("tile/8/1/000.p/2"));
        assert!(set.contains("tile/8/0/001.p/44")); // 300 records: right edge of tile 1
                                                    // Nothing twice, nothing else.
        let mut all: Vec<String> = [
            tiles_for(10, 300),
            tiles_for(550, 600),
            tiles_for(10, 610),
            tiles_for(550, 610),
            tiles_for(299, 610),
            tiles_for(599, 610),
        ]
        .concat();
        all.sort();
        all.dedup();
        assert_eq!(set.into_iter().collect::<Vec<_>>(), all);
    }
}
