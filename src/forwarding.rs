//! The dependency-confusion guard: forwarding rules (first match wins) and first-seen origin
//! pinning.
//!
//! - A name the GitLab upstream does not have may be fetched from a public registry only if
//!   the first matching `[[forwarding.rules]]` entry says `forward = true` and a registry is
//!   configured. No rules = nothing forwarded.
//! - A name once served from GitLab is pinned as private. From then on it is never resolved
//!   from a public registry, even if GitLab answers 404 (token expired, package deleted,
//!   project renamed): packrat answers 404, counts `dependency_confusion_blocked` and logs a
//!   warning naming the package.
//! - A name first served from a public registry that later appears in GitLab switches to
//!   GitLab (and is then pinned); the switch is logged. Versions from the two origins are
//!   kept in separate records and never merged.
//! - "GitLab does not have it" must be established before any of this applies: a 404 that
//!   only says *this caller* may not see the project (a non-member, a job token of another
//!   project) is a refusal, not an absence. The adapters decide that (see
//!   `npm::resolve`); a refusal is passed on as it is, never forwarded and never counted.

use serde::{Deserialize, Serialize};

use crate::cache::Core;
use crate::error::Error;
use crate::store::now_ms;

/// Which namespace a name lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Npm,
    Go,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Npm => "npm",
            Kind::Go => "go",
        }
    }
}

/// A name pinned to the GitLab upstream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pin {
    pub kind: Kind,
    pub name: String,
    /// Unix milliseconds when GitLab first served it through packrat.
    pub first_seen: u64,
}

/// Attempts to resolve a pinned name from a public registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Blocked {
    pub kind: Kind,
    pub name: String,
    pub count: u64,
    pub first: u64,
    pub last: u64,
}

/// Names as GitLab compares them: case does not matter, so pins are keyed in lower case
/// (no case variant of a pinned name ever reaches a public registry).
fn fold(name: &str) -> String {
    name.to_lowercase()
}

fn pin_key(kind: Kind, name: &str) -> String {
    format!("pin/{}/{}", kind.as_str(), fold(name))
}

fn blocked_key(kind: Kind, name: &str) -> String {
    format!("blocked/{}/{}", kind.as_str(), fold(name))
}

fn public_key(kind: Kind, name: &str) -> String {
    format!("public-seen/{}/{}", kind.as_str(), fold(name))
}

/// Record that GitLab served `name`. Cheap when already pinned (one index read). On a shared
/// store the pin is written for every node too (the first node's pin stands there).
pub async fn pin(core: &Core, kind: Kind, name: &str) -> Result<(), Error> {
    let key = pin_key(kind, name);
    if core.pin_known(&key) {
        return Ok(());
    }
    if core.aux::<Pin>(&key)?.is_some() {
        core.pin_seen(&key);
        return Ok(());
    }
    if core.aux::<u64>(&public_key(kind, name))?.is_some() {
        tracing::warn!(kind = kind.as_str(), name, "name previously served from a public registry now comes from GitLab; pinned to GitLab from now on");
    }
    core.put_shared_aux(
        &key,
        &Pin {
            kind,
            name: name.to_string(),
            first_seen: now_ms(),
        },
    )
    .await?;
    core.pin_seen(&key);
    Ok(())
}

/// Whether `name`, in any case, was ever served by GitLab: through this node, or (on a
/// shared store) through any node.
pub async fn is_pinned(core: &Core, kind: Kind, name: &str) -> Result<bool, Error> {
    let key = pin_key(kind, name);
    if core.pin_known(&key) {
        return Ok(true);
    }
    let pinned = core.shared_aux::<Pin>(&key).await?.is_some();
    if pinned {
        core.pin_seen(&key);
    }
    Ok(pinned)
}

/// Pins written before their keys were case-folded (data directories of earlier releases)
/// get their folded key too, so every spelling of a pinned name stays pinned. Run once when a
/// command opens the index for serving or syncing; returns how many it added.
pub fn fold_pin_keys(core: &Core) -> Result<usize, Error> {
    let mut added = 0;
    for (key, pin) in core.aux_scan_keyed::<Pin>("pin/")? {
        let folded = pin_key(pin.kind, &pin.name);
        if folded != key && core.aux::<Pin>(&folded)?.is_none() {
            core.put_aux(&folded, &pin)?;
            added += 1;
        }
    }
    Ok(added)
}

/// Record that a public registry served `name` (for the switch-over log line).
pub fn seen_public(core: &Core, kind: Kind, name: &str) -> Result<(), Error> {
    let key = public_key(kind, name);
    if core.aux::<u64>(&key)?.is_none() {
        core.put_aux(&key, &now_ms())?;
    }
    Ok(())
}

/// The decision for a name GitLab does not have: may it come from the public registry?
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward to this registry base URL.
    Forward(String),
    /// Not forwarded: no rule allows it, or no registry is configured.
    NotAllowed,
    /// Pinned to GitLab: refused, counted and logged.
    Blocked,
}

/// Call only once the upstream is known not to have `name` (see the module docs).
pub async fn decide(core: &Core, kind: Kind, name: &str) -> Result<Verdict, Error> {
    if is_pinned(core, kind, name).await? {
        block(core, kind, name)?;
        return Ok(Verdict::Blocked);
    }
    match public_registry(core, kind, name) {
        Some(r) => Ok(Verdict::Forward(r)),
        None => Ok(Verdict::NotAllowed),
    }
}

/// The public registry `name` may be fetched from if the upstream does not have it: the
/// configured registry, when the first matching rule says `forward = true`. Ignores pins.
pub fn public_registry(core: &Core, kind: Kind, name: &str) -> Option<String> {
    let fwd = &core.config().forwarding;
    let registry = match kind {
        Kind::Npm => fwd.npm_registry.clone(),
        Kind::Go => fwd.go_proxy.clone(),
    };
    registry.filter(|_| fwd.may_forward(name))
}

fn block(core: &Core, kind: Kind, name: &str) -> Result<(), Error> {
    core.metrics().confusion_blocked.inc();
    tracing::warn!(
        kind = kind.as_str(),
        name,
        "dependency confusion blocked: GitLab no longer answers for this pinned private name; it will not be resolved from a public registry"
    );
    let key = blocked_key(kind, name);
    let now = now_ms();
    let mut b = core.aux::<Blocked>(&key)?.unwrap_or(Blocked {
        kind,
        name: name.to_string(),
        count: 0,
        first: now,
        last: now,
    });
    b.count += 1;
    b.last = now;
    core.put_aux(&key, &b)
}

/// Everything pinned and every blocked attempt, for `/-/pins`.
#[derive(Serialize)]
pub struct Report {
    pub pins: Vec<Pin>,
    pub blocked: Vec<Blocked>,
}

pub fn report(core: &Core) -> Result<Report, Error> {
    Ok(Report {
        pins: core.aux_scan::<Pin>("pin/")?,
        blocked: core.aux_scan::<Blocked>("blocked/")?,
    })
}
