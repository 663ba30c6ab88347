//! Operations endpoints: liveness, readiness, Prometheus metrics.

use http::{Response, StatusCode};

use super::body::{self, Body};
use crate::cache::Core;

pub fn health() -> Response<Body> {
    text(StatusCode::OK, "ok\n".into(), "text/plain")
}

pub fn ready(core: &Core) -> Response<Body> {
    // The index is open once a Core exists; report it with the in-flight downloads.
    let body = format!("ready\nin_flight_downloads {}\n", core.flights.in_flight());
    text(StatusCode::OK, body, "text/plain")
}

pub fn metrics(core: &Core) -> Response<Body> {
    let body = core.metrics.render(core.store.blobs.bytes_on_disk());
    text(
        StatusCode::OK,
        body,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}

/// Pinned private names and blocked public-fallback attempts, as JSON: what an operator
/// looks at to see whether a dependency-confusion attempt happened.
pub fn pins(core: &Core) -> Result<Response<Body>, crate::error::Error> {
    let report = crate::forwarding::report(core)?;
    let body = serde_json::to_string_pretty(&report)
        .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    Ok(text(StatusCode::OK, body, "application/json"))
}

fn text(status: StatusCode, s: String, ct: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .header(http::header::CONTENT_LENGTH, s.len())
        .body(body::full(s))
        .unwrap_or_else(|_| super::respond::fallback())
}
