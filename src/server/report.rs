//! The status report (`GET /-/status`, and the page at `/-/ui`), assembled from where each
//! part lives: [`crate::status::Live`] (in memory, since start), the blob store's size and
//! `storage.max_size`, the pins and blocked attempts of [`crate::forwarding`], the runs in
//! the index's `ops` tree ([`crate::status::runs`]), and counts of what the index holds.

use std::sync::Arc;

use serde::Serialize;

use crate::cache::Core;
use crate::error::Error;
use crate::forwarding::{Blocked, Pin};
use crate::status::live::{
    percentile, Ecosystem, Event, Tally, UpstreamFailure, LATENCY_WINDOW_MS,
};
use crate::status::runs::{Run, RunKind};
pub use crate::status::Holding;
use crate::store::now_ms;

/// Rows shown at most in each table.
pub const TABLE_ROWS: usize = 20;
/// Pins and blocked attempts listed at most (the counts are complete).
const LISTED: usize = 200;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub build: Build,
    /// Unix milliseconds.
    pub now: u64,
    pub started_at: u64,
    pub uptime_seconds: u64,
    pub offline: bool,
    pub upstream: Upstream,
    pub requests: Vec<EcosystemRequests>,
    pub bytes: Bytes,
    pub store: StoreUsage,
    pub hot_packages: Vec<HotPackage>,
    pub recent_misses: Vec<Event>,
    pub recent_failures: Vec<Event>,
    pub pins: Listed<Pin>,
    pub blocked: Listed<Blocked>,
    pub dependency_confusion_blocked: u64,
    pub runs: Runs,
    pub mirror: Mirror,
}

#[derive(Clone, Debug, Serialize)]
pub struct Build {
    pub profile: &'static str,
    pub target: String,
    /// `PACKRAT_BUILD_COMMIT` at build time, when the build set it.
    pub commit: Option<&'static str>,
    pub rust_version: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Upstream {
    pub url: String,
    /// `None` before the first request to it (and always offline).
    pub reachable: Option<bool>,
    pub last_success_at: Option<u64>,
    pub last_error: Option<UpstreamFailure>,
    pub latency_ms: Latency,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub window_minutes: u64,
    pub samples: usize,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Counted {
    #[serde(flatten)]
    pub tally: Tally,
    pub hit_ratio: Option<f64>,
}

impl From<Tally> for Counted {
    fn from(tally: Tally) -> Self {
        Counted {
            tally,
            hit_ratio: tally.hit_ratio(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EcosystemRequests {
    pub ecosystem: Ecosystem,
    pub since_start: Counted,
    pub last_hour: Counted,
    /// One entry a minute, oldest first, ending with the current minute.
    pub per_minute: Vec<Tally>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Bytes {
    pub served_from_cache: u64,
    pub served_from_upstream: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoreUsage {
    pub blob_bytes: u64,
    pub max_size: u64,
    pub used_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct HotPackage {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub requests: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Listed<T> {
    pub count: usize,
    pub items: Vec<T>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Runs {
    pub sync: Option<Run>,
    pub import: Option<Run>,
    pub gc: Option<Run>,
    pub verify: Option<Run>,
}

impl Runs {
    pub fn all(&self) -> [(RunKind, Option<&Run>); 4] {
        [
            (RunKind::Sync, self.sync.as_ref()),
            (RunKind::Import, self.import.as_ref()),
            (RunKind::Gc, self.gc.as_ref()),
            (RunKind::Verify, self.verify.as_ref()),
        ]
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Mirror {
    pub holdings: Vec<Holding>,
    /// The bundle imported last: its manifest summary (from the import run).
    pub last_bundle: Option<serde_json::Value>,
}

/// Index key prefixes per ecosystem: metadata documents (the `meta` tree), then files (the
/// `blobs` tree), as the adapters write them.
pub const PREFIXES: [(Ecosystem, &[&str], &[&str]); 3] = [
    (
        Ecosystem::Npm,
        &["npm/", "npmpub/"],
        &["npm-tgz:", "npmpub-tgz:"],
    ),
    (
        Ecosystem::Go,
        &["go/", "gopub/", "sumdb/"],
        &["go/", "gopub/", "sumdb:"],
    ),
    (Ecosystem::PackagesApi, &["pkgapi/"], &["pkgfile:"]),
];

/// Assemble the report. Reads the index: call it off the async threads.
/// [`build`] on the blocking pool (it reads the index).
pub async fn build_off_runtime(core: &Arc<Core>) -> Result<Report, Error> {
    let c = core.clone();
    tokio::task::spawn_blocking(move || build(&c))
        .await
        .map_err(|source| Error::Task {
            what: "the status report",
            source,
        })?
}

pub fn build(core: &Core) -> Result<Report, Error> {
    let now = now_ms();
    let live = core.metrics().live();
    let started = live.started_ms();
    let lat = live.latencies(now);
    let failure = live.last_failure();
    let ok = live.last_ok();
    let reachable = match (ok, &failure) {
        _ if core.is_offline() => None,
        (None, None) => None,
        (Some(_), None) => Some(true),
        (None, Some(_)) => Some(false),
        (Some(ok), Some(f)) => Some(ok > f.at),
    };
    let requests = Ecosystem::ALL
        .iter()
        .map(|&e| EcosystemRequests {
            ecosystem: e,
            since_start: live.total(e).into(),
            last_hour: live.last_hour(now, e).into(),
            per_minute: live.series(now, e),
        })
        .collect();
    let (from_cache, from_upstream) = live.bytes();
    let blob_bytes = core.blob_bytes();
    let max_size = core.config().storage.max_size;
    let (recent_misses, recent_failures) = live.recent();
    let mut recent_misses = recent_misses;
    let mut recent_failures = recent_failures;
    recent_misses.truncate(TABLE_ROWS);
    recent_failures.truncate(TABLE_ROWS);
    let pins = crate::forwarding::report(core)?;
    let runs = Runs {
        sync: core.last_run(RunKind::Sync)?,
        import: core.last_run(RunKind::Import)?,
        gc: core.last_run(RunKind::Gc)?,
        verify: core.last_run(RunKind::Verify)?,
    };
    let last_bundle = runs
        .import
        .as_ref()
        .filter(|r| r.ok)
        .map(|r| r.details.clone())
        .filter(|d| !d.is_null());
    Ok(Report {
        version: env!("CARGO_PKG_VERSION"),
        build: Build {
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            commit: option_env!("PACKRAT_BUILD_COMMIT"),
            rust_version: env!("CARGO_PKG_RUST_VERSION"),
        },
        now,
        started_at: started,
        uptime_seconds: now.saturating_sub(started) / 1000,
        offline: core.is_offline(),
        upstream: Upstream {
            url: core.upstream_base().to_string(),
            reachable,
            last_success_at: ok,
            last_error: failure,
            latency_ms: Latency {
                window_minutes: LATENCY_WINDOW_MS / 60_000,
                samples: lat.len(),
                p50: percentile(&lat, 50),
                p99: percentile(&lat, 99),
            },
        },
        requests,
        bytes: Bytes {
            served_from_cache: from_cache,
            served_from_upstream: from_upstream,
        },
        store: StoreUsage {
            blob_bytes,
            max_size,
            used_ratio: if max_size == 0 {
                0.0
            } else {
                blob_bytes as f64 / max_size as f64
            },
        },
        hot_packages: live
            .hottest(TABLE_ROWS)
            .into_iter()
            .map(|(ecosystem, name, requests)| HotPackage {
                ecosystem,
                name,
                requests,
            })
            .collect(),
        recent_misses,
        recent_failures,
        pins: listed(pins.pins),
        blocked: listed(pins.blocked),
        dependency_confusion_blocked: core.metrics().confusion_blocked.get(),
        runs,
        mirror: Mirror {
            holdings: holdings(core)?,
            last_bundle,
        },
    })
}

fn listed<T>(mut all: Vec<T>) -> Listed<T> {
    let count = all.len();
    all.truncate(LISTED);
    Listed { count, items: all }
}

/// Documents and files per ecosystem, counted at most every 30 s (a key scan of two trees).
fn holdings(core: &Core) -> Result<Vec<Holding>, Error> {
    let live = core.metrics().live();
    let now = now_ms();
    if let Some(h) = live.memo(now, 30_000) {
        return Ok(h);
    }
    let mut out = Vec::new();
    for (eco, docs, files) in PREFIXES {
        let mut h = Holding {
            ecosystem: Some(eco),
            ..Holding::default()
        };
        for p in docs {
            h.documents += core.count_documents(p)?;
        }
        for p in files {
            h.files += core.count_files(p)?;
        }
        out.push(h);
    }
    live.set_memo(now, out.clone());
    Ok(out)
}
