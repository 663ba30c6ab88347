//! Mirroring Go modules ahead of time (`packrat sync`): `.info`, `.mod` and `.zip` through
//! the same gate, cache and checks as serving, and the checksum database lookup plus the
//! tiles that verify it, so `GOSUMDB` verification works offline.

use std::sync::Arc;

use super::{context, sumdb, FileKind, ModulePath, ModuleVersion};
use crate::auth::Credential;
use crate::cache::{CacheOutcome, Core};
use crate::error::Error;
use crate::gc::MIRROR_PREFIX;
use crate::npm::sync::drain;

use super::GoTarget;

pub struct Synced {
    /// Files fetched now (the rest were already present).
    pub fetched: u32,
    pub bytes: u64,
    /// Checksum database records and tiles cached for this version.
    pub sumdb: u32,
}

/// Fetch (or confirm present) one module version: `.info` + `.mod`, and `.zip` unless only
/// the `go.mod` is needed (go.sum `/go.mod` lines).
pub async fn sync_module(
    core: &Arc<Core>,
    target: &GoTarget,
    module: &ModulePath,
    version: &ModuleVersion,
    mod_only: bool,
    credential: &Credential,
) -> Result<Synced, Error> {
    let anonymous = Credential::anonymous();
    let ctx = context(core, target, module, credential, &anonymous).await?;
    ctx.list(module).await?;
    let mut out = Synced {
        fetched: 0,
        bytes: 0,
        sumdb: 0,
    };
    let kinds: &[FileKind] = if mod_only {
        &[FileKind::Mod]
    } else {
        &[FileKind::Info, FileKind::Mod, FileKind::Zip]
    };
    for kind in kinds {
        let reply = ctx.file(module, version, *kind).await?;
        if reply.outcome != CacheOutcome::Hit {
            out.fetched += 1;
        }
        out.bytes += drain(reply.body).await?;
        let key = format!("{}@{}.{}", ctx.key(module), version.as_str(), kind.ext());
        core.put_aux(&format!("{MIRROR_PREFIX}{key}"), &key)?;
    }
    out.sumdb = sync_sumdb(core, module, version).await.unwrap_or_else(|e| {
        tracing::info!(%module, error = %e, "no checksum database record cached");
        0
    });
    Ok(out)
}

/// Cache `latest`, the lookup for `module@version`, and every tile a fresh go command needs to
/// check that record's inclusion in the signed tree.
async fn sync_sumdb(
    core: &Arc<Core>,
    module: &ModulePath,
    version: &ModuleVersion,
) -> Result<u32, Error> {
    let name = sumdb::served_name(&core.config.forwarding.go_sumdb);
    let lookup = format!("lookup/{}@{}", module.escaped(), version.escaped());
    let reply = sumdb::handle(core, &name, &lookup).await?;
    let body = read_reply(reply).await?;
    let (record, size) = parse_lookup(&body).ok_or_else(|| {
        Error::Internal(format!(
            "unexpected checksum database answer for {module}@{}",
            version.as_str()
        ))
    })?;
    let mut n = 1;
    for tile in tiles_for(record, size) {
        let reply = sumdb::handle(core, &name, &tile).await?;
        drain(reply.body).await?;
        n += 1;
    }
    let reply = sumdb::handle(core, &name, "latest").await?;
    drain(reply.body).await?;
    Ok(n)
}

async fn read_reply(reply: crate::server::reply::Reply) -> Result<Vec<u8>, Error> {
    use crate::server::reply::ReplyBody;
    use futures_util::StreamExt;
    Ok(match reply.body {
        ReplyBody::Empty => Vec::new(),
        ReplyBody::Bytes(b) => b.to_vec(),
        ReplyBody::File(mut f, _) => {
            use tokio::io::AsyncReadExt;
            let mut v = Vec::new();
            f.read_to_end(&mut v)
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
            v
        }
        ReplyBody::Stream(mut s, _) => {
            let mut v = Vec::new();
            while let Some(c) = s.next().await {
                v.extend_from_slice(&c.map_err(|e| Error::Internal(e.to_string()))?);
            }
            v
        }
    })
}

/// A lookup answer is `<record id>\n<go.sum lines>\n\n<signed note>`, the note's text being
/// `go.sum database tree\n<size>\n<root hash>\n`.
fn parse_lookup(body: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(body).ok()?;
    let record: u64 = text.lines().next()?.trim().parse().ok()?;
    let mut lines = text.lines().skip_while(|l| *l != "go.sum database tree");
    lines.next()?;
    let size: u64 = lines.next()?.trim().parse().ok()?;
    (record < size).then_some((record, size))
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
    }
}
