//! What `serve` learns as it runs, kept in memory and bounded: requests per ecosystem in
//! minute buckets (the last hour) and since start, bytes served from the cache and from the
//! upstream, upstream health and latency, the hottest names and the recent misses and
//! failures. Fed by the router and the upstream client through [`crate::metrics::Metrics`];
//! read by the server's status report. Counting a request is a few relaxed atomic adds and one short
//! uncontended lock for the name tables.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::store::now_ms;

/// The three GitLab API families packrat serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ecosystem {
    Npm,
    Go,
    PackagesApi,
}

impl Ecosystem {
    pub const ALL: [Ecosystem; 3] = [Ecosystem::Npm, Ecosystem::Go, Ecosystem::PackagesApi];

    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go",
            Ecosystem::PackagesApi => "packages_api",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a request was answered, as the status page counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// From the cache (a hit, a revalidated or a stale copy).
    Cache,
    /// From the upstream (a miss, or joined to a download in flight).
    Upstream,
    /// Neither: refusals, not-found answers, pass-through writes.
    Other,
}

/// Minutes kept in the time series.
pub const MINUTES: usize = 60;
/// Latency samples kept (the most recent ones).
const LATENCY_SAMPLES: usize = 1024;
/// Latency percentiles are computed over samples younger than this.
pub const LATENCY_WINDOW_MS: u64 = 5 * 60_000;
/// Distinct names counted for the hottest-packages table.
const HOT_NAMES: usize = 2048;
/// Recent misses and failures kept, each.
const RECENT: usize = 50;

const REQUESTS: usize = 0;
const HITS: usize = 1;
const MISSES: usize = 2;
const ERRORS: usize = 3;
const COUNTERS: usize = 4;

/// Counters of one ecosystem.
type Counts = [AtomicU64; COUNTERS];

/// One minute of counters, stamped with the minute (unix minutes) it counts.
struct Bucket {
    minute: AtomicU64,
    counts: [Counts; 3],
}

/// A request's counters as read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

impl Tally {
    /// Hits over hits and misses (what the cache could have answered); `None` before any.
    pub fn hit_ratio(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }

    fn add(&mut self, o: Tally) {
        self.requests += o.requests;
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
    }
}

/// A miss (fetched from the upstream) or a failure (a 5xx, or a 401, 403 or 429), for the
/// recent tables.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Unix milliseconds.
    pub at: u64,
    pub ecosystem: Ecosystem,
    pub name: String,
    pub status: u16,
    pub outcome: &'static str,
}

/// The upstream's last failure.
#[derive(Clone, Debug, Serialize)]
pub struct UpstreamFailure {
    /// Unix milliseconds.
    pub at: u64,
    pub message: String,
}

#[derive(Default)]
struct Names {
    hot: [HashMap<Box<str>, u64>; 3],
    misses: VecDeque<Event>,
    failures: VecDeque<Event>,
}

/// The in-memory status (see the module docs).
pub struct Live {
    started_ms: u64,
    buckets: [Bucket; MINUTES],
    totals: [Counts; 3],
    bytes_from_cache: AtomicU64,
    bytes_from_upstream: AtomicU64,
    /// Each sample: unix seconds << 32 | milliseconds (saturated).
    latency: [AtomicU64; LATENCY_SAMPLES],
    latency_next: AtomicUsize,
    last_ok_ms: AtomicU64,
    last_failure: Mutex<Option<UpstreamFailure>>,
    names: Mutex<Names>,
    /// The index counts of the last report and when they were taken (they change slowly).
    memo: Mutex<Option<(u64, Vec<super::Holding>)>>,
}

fn counts() -> Counts {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Default for Live {
    fn default() -> Self {
        Self::new(now_ms())
    }
}

impl Live {
    pub fn new(started_ms: u64) -> Self {
        Live {
            started_ms,
            buckets: std::array::from_fn(|_| Bucket {
                minute: AtomicU64::new(u64::MAX),
                counts: std::array::from_fn(|_| counts()),
            }),
            totals: std::array::from_fn(|_| counts()),
            bytes_from_cache: AtomicU64::new(0),
            bytes_from_upstream: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_next: AtomicUsize::new(0),
            last_ok_ms: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            names: Mutex::new(Names::default()),
            memo: Mutex::new(None),
        }
    }

    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Count one request answered now. `name` is the package or module it was about.
    pub fn request(
        &self,
        eco: Ecosystem,
        name: Option<&str>,
        served: Served,
        status: u16,
        outcome: &'static str,
    ) {
        self.request_at(now_ms(), eco, name, served, status, outcome);
    }

    fn request_at(
        &self,
        now_ms: u64,
        eco: Ecosystem,
        name: Option<&str>,
        served: Served,
        status: u16,
        outcome: &'static str,
    ) {
        let mut which = [true, false, false, false];
        which[HITS] = served == Served::Cache;
        which[MISSES] = served == Served::Upstream;
        which[ERRORS] = status >= 500;
        let bucket = self.bucket(now_ms / 60_000);
        for (i, on) in which.into_iter().enumerate() {
            if on {
                self.totals[eco.index()][i].fetch_add(1, Ordering::Relaxed);
                bucket[eco.index()][i].fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some(name) = name else { return };
        // A 404 is an answer (the go command probes module path prefixes, npm asks for
        // names that may not exist); failures are what an operator acts on.
        let failed = status >= 500 || matches!(status, 401 | 403 | 429);
        let missed = served == Served::Upstream;
        let mut names = match self.names.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        let hot = &mut names.hot[eco.index()];
        if let Some(n) = hot.get_mut(name) {
            *n += 1;
        } else {
            if hot.len() >= HOT_NAMES {
                // Full: age every count and forget the names seen once since the last time.
                hot.retain(|_, n| {
                    *n /= 2;
                    *n > 0
                });
            }
            if hot.len() < HOT_NAMES {
                hot.insert(name.into(), 1);
            }
        }
        if missed || failed {
            let event = Event {
                at: now_ms,
                ecosystem: eco,
                name: name.to_string(),
                status,
                outcome,
            };
            let list = if failed {
                &mut names.failures
            } else {
                &mut names.misses
            };
            if list.len() >= RECENT {
                list.pop_front();
            }
            list.push_back(event);
        }
    }

    /// The bucket for `minute`, emptied first if it still holds an older minute. (Two
    /// requests racing at a minute boundary may lose a count: the series is a view, the
    /// Prometheus counters are the exact record.)
    fn bucket(&self, minute: u64) -> &[Counts; 3] {
        let b = &self.buckets[(minute % MINUTES as u64) as usize];
        let seen = b.minute.load(Ordering::Acquire);
        if seen != minute
            && b.minute
                .compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for c in b.counts.iter().flatten() {
                c.store(0, Ordering::Relaxed);
            }
        }
        &b.counts
    }

    /// Response body bytes sent, by where they came from.
    pub fn served_bytes(&self, n: u64, from_cache: bool) {
        let c = if from_cache {
            &self.bytes_from_cache
        } else {
            &self.bytes_from_upstream
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// One round trip to the GitLab upstream (time to response headers), now.
    pub fn upstream_latency(&self, millis: u64) {
        self.upstream_latency_at(now_ms(), millis);
    }

    fn upstream_latency_at(&self, now_ms: u64, millis: u64) {
        let i = self.latency_next.fetch_add(1, Ordering::Relaxed) % LATENCY_SAMPLES;
        let secs = (now_ms / 1000).min(u64::from(u32::MAX));
        self.latency[i].store(
            secs << 32 | millis.min(u64::from(u32::MAX)),
            Ordering::Relaxed,
        );
    }

    /// The GitLab upstream answered, after `millis`.
    pub fn upstream_ok(&self, millis: u64) {
        let now = now_ms();
        self.upstream_latency_at(now, millis);
        self.last_ok_ms.store(now, Ordering::Relaxed);
    }

    /// The GitLab upstream could not be reached, timed out or failed (5xx).
    pub fn upstream_failed(&self, message: String) {
        let now_ms = now_ms();
        let mut f = match self.last_failure.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        *f = Some(UpstreamFailure {
            at: now_ms,
            message,
        });
    }

    /// Counters since start.
    pub fn total(&self, eco: Ecosystem) -> Tally {
        read(&self.totals[eco.index()])
    }

    /// Counters per minute, oldest first, for the `MINUTES` minutes ending with `now_ms`'s.
    pub fn series(&self, now_ms: u64, eco: Ecosystem) -> Vec<Tally> {
        let now = now_ms / 60_000;
        (0..MINUTES as u64)
            .rev()
            .map(|ago| {
                let Some(m) = now.checked_sub(ago) else {
                    return Tally::default();
                };
                let b = &self.buckets[(m % MINUTES as u64) as usize];
                if b.minute.load(Ordering::Acquire) == m {
                    read(&b.counts[eco.index()])
                } else {
                    Tally::default()
                }
            })
            .collect()
    }

    /// The sum of [`Live::series`].
    pub fn last_hour(&self, now_ms: u64, eco: Ecosystem) -> Tally {
        let mut t = Tally::default();
        for m in self.series(now_ms, eco) {
            t.add(m);
        }
        t
    }

    /// (from the cache, from the upstream).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_from_cache.load(Ordering::Relaxed),
            self.bytes_from_upstream.load(Ordering::Relaxed),
        )
    }

    /// Latency samples of the window ending at `now_ms`, in milliseconds, sorted.
    pub fn latencies(&self, now_ms: u64) -> Vec<u64> {
        let since = now_ms.saturating_sub(LATENCY_WINDOW_MS) / 1000;
        let mut v: Vec<u64> = self
            .latency
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&s| s != 0 && (s >> 32) >= since)
            .map(|s| s & u64::from(u32::MAX))
            .collect();
        v.sort_unstable();
        v
    }

    /// When the GitLab upstream last answered (unix ms), if ever.
    pub fn last_ok(&self) -> Option<u64> {
        Some(self.last_ok_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    pub fn last_failure(&self) -> Option<UpstreamFailure> {
        match self.last_failure.lock() {
            Ok(f) => f.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The `n` most requested names, most requested first.
    pub fn hottest(&self, n: usize) -> Vec<(Ecosystem, String, u64)> {
        let names = match self.names.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        let mut all: Vec<(Ecosystem, String, u64)> = Ecosystem::ALL
            .iter()
            .flat_map(|&e| {
                names.hot[e.index()]
                    .iter()
                    .map(move |(k, &c)| (e, k.to_string(), c))
            })
            .collect();
        drop(names);
        all.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
        all.truncate(n);
        all
    }

    /// (recent misses, recent failures), newest first.
    pub fn recent(&self) -> (Vec<Event>, Vec<Event>) {
        let names = match self.names.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        (
            names.misses.iter().rev().cloned().collect(),
            names.failures.iter().rev().cloned().collect(),
        )
    }
}

impl Live {
    /// The index counts taken less than `max_age_ms` before `now_ms`.
    pub fn memo(&self, now_ms: u64, max_age_ms: u64) -> Option<Vec<super::Holding>> {
        let m = match self.memo.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.as_ref()
            .filter(|(at, _)| now_ms.saturating_sub(*at) < max_age_ms)
            .map(|(_, h)| h.clone())
    }

    pub fn set_memo(&self, now_ms: u64, h: Vec<super::Holding>) {
        let mut m = match self.memo.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        *m = Some((now_ms, h));
    }
}

fn read(c: &Counts) -> Tally {
    Tally {
        requests: c[REQUESTS].load(Ordering::Relaxed),
        hits: c[HITS].load(Ordering::Relaxed),
        misses: c[MISSES].load(Ordering::Relaxed),
        errors: c[ERRORS].load(Ordering::Relaxed),
    }
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn minute_buckets_keep_the_last_hour_only() {
        let live = Live::new(T0);
        live.request_at(T0, Ecosystem::Npm, Some("a"), Served::Cache, 200, "hit");
        live.request_at(T0, Ecosystem::Npm, Some("a"), Served::Upstream, 200, "miss");
        live.request_at(
            T0 + 60_000,
            Ecosystem::Go,
            Some("m"),
            Served::Other,
            502,
            "bypass",
        );
        let now = T0 + 60_000;
        assert_eq!(
            live.last_hour(now, Ecosystem::Npm),
            Tally {
                requests: 2,
                hits: 1,
                misses: 1,
                errors: 0
            }
        );
        let s = live.series(now, Ecosystem::Go);
        assert_eq!(s.len(), MINUTES);
        assert_eq!(s[MINUTES - 1].errors, 1);
        assert_eq!(live.total(Ecosystem::Npm).hit_ratio(), Some(0.5));
        // An hour and more later the buckets are old: the hour is empty, the totals stay.
        let later = T0 + 61 * 60_000;
        assert_eq!(live.last_hour(later, Ecosystem::Npm), Tally::default());
        live.request_at(later, Ecosystem::Npm, None, Served::Cache, 200, "hit");
        assert_eq!(live.last_hour(later, Ecosystem::Npm).requests, 1);
        assert_eq!(live.total(Ecosystem::Npm).requests, 3);
    }

    #[test]
    fn names_are_bounded_and_ranked() {
        let live = Live::new(T0);
        for i in 0..(HOT_NAMES + 10) {
            live.request_at(
                T0,
                Ecosystem::Npm,
                Some(&format!("p{i}")),
                Served::Cache,
                200,
                "hit",
            );
        }
        for _ in 0..5 {
            live.request_at(
                T0,
                Ecosystem::Go,
                Some("hot"),
                Served::Upstream,
                200,
                "miss",
            );
        }
        for _ in 0..(RECENT + 5) {
            live.request_at(T0, Ecosystem::Go, Some("bad"), Served::Other, 502, "bypass");
        }
        let top = live.hottest(3);
        assert_eq!(top[0].1, "bad");
        assert_eq!(top[1], (Ecosystem::Go, "hot".to_string(), 5));
        let (misses, failures) = live.recent();
        assert_eq!(misses.len(), 5);
        assert_eq!(failures.len(), RECENT);
        let names = live.names.lock().unwrap();
        assert!(names.hot[Ecosystem::Npm.index()].len() <= HOT_NAMES);
    }

    #[test]
    fn latency_window_and_percentiles() {
        let live = Live::new(T0);
        live.upstream_latency_at(T0 - LATENCY_WINDOW_MS - 2000, 9999);
        for ms in 1..=100 {
            live.upstream_latency_at(T0, ms);
        }
        let v = live.latencies(T0);
        assert_eq!(v.len(), 100);
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[], 50), None);
    }
}
