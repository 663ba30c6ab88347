//! Prometheus metrics: requests by route/status/outcome, cache hits and misses, single-flight
//! joins, upstream latency, bytes served, blob bytes on disk, dependency-confusion blocks.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub kind: &'static str,
    pub outcome: String,
}

type HistogramFamily = Family<UpstreamLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    hits: Family<CacheLabels, Counter>,
    misses: Family<CacheLabels, Counter>,
    joins: Counter,
    upstream: HistogramFamily,
    bytes_served: Counter,
    blob_bytes: Gauge,
    index_corrupt: Gauge,
    pub confusion_blocked: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("packrat");
        let requests = Family::<RequestLabels, Counter>::default();
        let hits = Family::<CacheLabels, Counter>::default();
        let misses = Family::<CacheLabels, Counter>::default();
        let joins = Counter::default();
        let upstream: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let bytes_served = Counter::default();
        let blob_bytes = Gauge::default();
        let index_corrupt = Gauge::default();
        let confusion_blocked = Counter::default();
        registry.register(
            "requests",
            "HTTP requests by route family, status and cache outcome",
            requests.clone(),
        );
        registry.register("cache_hits", "Reads answered from the cache", hits.clone());
        registry.register(
            "cache_misses",
            "Reads that needed the upstream",
            misses.clone(),
        );
        registry.register(
            "singleflight_joins",
            "Requests that joined a download already in flight",
            joins.clone(),
        );
        registry.register(
            "upstream_request_duration_seconds",
            "Time to upstream response headers, by kind and outcome",
            upstream.clone(),
        );
        registry.register(
            "bytes_served",
            "Response body bytes sent",
            bytes_served.clone(),
        );
        registry.register(
            "blob_bytes_on_disk",
            "Bytes of committed blobs in the store",
            blob_bytes.clone(),
        );
        registry.register(
            "index_corrupt_records",
            "Index records that failed to decode since start",
            index_corrupt.clone(),
        );
        registry.register(
            "dependency_confusion_blocked",
            "Requests for a pinned private name that were refused a public fallback",
            confusion_blocked.clone(),
        );
        Metrics {
            registry,
            requests,
            hits,
            misses,
            joins,
            upstream,
            bytes_served,
            blob_bytes,
            index_corrupt,
            confusion_blocked,
        }
    }

    pub fn request(&self, route: &'static str, status: u16, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status,
                outcome,
            })
            .inc();
    }

    pub fn hit(&self, kind: &'static str) {
        self.hits.get_or_create(&CacheLabels { kind }).inc();
    }

    pub fn miss(&self, kind: &'static str) {
        self.misses.get_or_create(&CacheLabels { kind }).inc();
    }

    pub fn join(&self) {
        self.joins.inc();
    }

    pub fn upstream_latency(&self, kind: &'static str, outcome: &str, secs: f64) {
        self.upstream
            .get_or_create(&UpstreamLabels {
                kind,
                outcome: outcome.to_string(),
            })
            .observe(secs);
    }

    pub fn served(&self, bytes: u64) {
        self.bytes_served.inc_by(bytes);
    }

    /// Prometheus text exposition.
    pub fn render(&self, blob_bytes: u64) -> String {
        self.blob_bytes
            .set(i64::try_from(blob_bytes).unwrap_or(i64::MAX));
        self.index_corrupt.set(
            i64::try_from(crate::store::index::CORRUPT_RECORDS.load(Ordering::Relaxed))
                .unwrap_or(i64::MAX),
        );
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# metrics encoding failed\n");
        }
        out
    }
}
