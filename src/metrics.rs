//! Prometheus metrics: requests by route/status/outcome, cache hits and misses, single-flight
//! joins, upstream latency, bytes served, blob bytes on disk, index records that failed to
//! decode, dependency-confusion blocks. It also feeds the status page's in-memory view
//! ([`crate::status::Live`]) from the same call sites.

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
    live: crate::status::Live,
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
            live: crate::status::Live::default(),
        }
    }

    /// The in-memory view the status page reads.
    pub fn live(&self) -> &crate::status::Live {
        &self.live
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

    /// Response body bytes sent, from the cache or (on a miss) from the upstream.
    pub fn served(&self, bytes: u64, from_cache: bool) {
        self.bytes_served.inc_by(bytes);
        self.live.served_bytes(bytes, from_cache);
    }

    /// The exposition in `format`.
    pub fn render(&self, blob_bytes: u64, format: Exposition) -> String {
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
        match format {
            Exposition::OpenMetrics => out,
            Exposition::Prometheus => openmetrics_to_prometheus(&out),
        }
    }
}

/// The two text formats a scraper may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`): what every scraper reads.
    Prometheus,
    /// OpenMetrics 1.0, for a scraper whose `Accept` names `application/openmetrics-text`.
    OpenMetrics,
}

impl Exposition {
    /// Negotiated from the scraper's `Accept` header.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Exposition::OpenMetrics,
            _ => Exposition::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// OpenMetrics text (what prometheus-client writes) as Prometheus text 0.0.4: a counter's
/// family is named by its `_total` samples, and `# UNIT` and `# EOF` do not exist there.
fn openmetrics_to_prometheus(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_by_their_samples() {
        let m = Metrics::new();
        m.request("npm_tarball", 200, "hit");
        let text = m.render(0, Exposition::Prometheus);
        assert!(
            text.contains("# TYPE packrat_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "packrat_requests_total{route=\"npm_tarball\",status=\"200\",outcome=\"hit\"} 1"
        ));
        assert!(!text.contains("# EOF"));
        let om = m.render(0, Exposition::OpenMetrics);
        assert!(om.contains("# TYPE packrat_requests counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn the_accept_header_picks_the_format() {
        assert_eq!(Exposition::from_accept(None), Exposition::Prometheus);
        assert_eq!(
            Exposition::from_accept(Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.1")),
            Exposition::Prometheus
        );
        assert_eq!(
            Exposition::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Exposition::OpenMetrics
        );
    }
}
