//! Operations endpoints: liveness, readiness, Prometheus metrics, and for `server.ops_tokens`
//! only the pins report (`/-/pins`) and the status report (`/-/status`).

use std::sync::Arc;

use http::{Response, StatusCode};

use super::body::{self, Body};
use crate::auth::{offline, Credential};
use crate::cache::Core;
use crate::error::Error;
use crate::metrics::Exposition;

pub fn health() -> Response<Body> {
    text(StatusCode::OK, "ok\n".into(), "text/plain")
}

pub fn ready(core: &Core) -> Response<Body> {
    // The index is open once a Core exists; report it with the in-flight downloads.
    let body = format!(
        "ready\nin_flight_downloads {}\n",
        core.downloads_in_flight()
    );
    text(StatusCode::OK, body, "text/plain")
}

/// Prometheus text 0.0.4, or OpenMetrics when the scraper's `Accept` asks for it.
pub fn metrics(core: &Core, accept: Option<&str>) -> Response<Body> {
    let format = Exposition::from_accept(accept);
    let body = core.metrics().render(core.blob_bytes(), format);
    text(StatusCode::OK, body, format.content_type())
}

/// Pinned private names and blocked public-fallback attempts, as JSON: what an operator
/// looks at to see whether a dependency-confusion attempt happened. The names themselves
/// are private, so only a `server.ops_tokens` token may read them.
pub fn pins(core: &Core, credential: &Credential) -> Result<Response<Body>, Error> {
    operator(core, credential, "/-/pins")?;
    let body = pins_json(core)?;
    Ok(text(StatusCode::OK, body, "application/json"))
}

/// The status report as JSON (see [`super::report`]), for an operator token.
pub async fn status(core: &Arc<Core>, credential: &Credential) -> Result<Response<Body>, Error> {
    operator(core, credential, "/-/status")?;
    let report = super::report::build_off_runtime(core).await?;
    let body = serde_json::to_string_pretty(&report)?;
    let mut resp = text(StatusCode::OK, body, "application/json");
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// The operator endpoints answer only a `server.ops_tokens` token: 404 while none is
/// configured, 401 for anyone else.
fn operator(core: &Core, credential: &Credential, what: &str) -> Result<(), Error> {
    let tokens = &core.config().server.ops_tokens;
    if tokens.is_empty() {
        let on_the_host = if what == "/-/pins" {
            ", or run `packrat pins` on the host"
        } else {
            ""
        };
        return Err(Error::gitlab(
            StatusCode::NOT_FOUND,
            format!(
                "404 Not Found: {what} is off; set server.ops_tokens to the sha256 of an \
                 operator token to enable it{on_the_host}"
            ),
        ));
    }
    let right = !credential.is_anonymous()
        && super::guesses::check(|| offline::ops_allows(tokens, credential))?;
    if !right {
        return Err(Error::gitlab(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
    }
    Ok(())
}

/// The `/-/pins` report (also printed by `packrat pins`).
pub fn pins_json(core: &Core) -> Result<String, Error> {
    let report = crate::forwarding::report(core)?;
    Ok(serde_json::to_string_pretty(&report)?)
}

fn text(status: StatusCode, s: String, ct: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .header(http::header::CONTENT_LENGTH, s.len())
        .body(body::full(s))
        .unwrap_or_else(|_| super::respond::fallback())
}
