//! THE mapping from errors to responses. Every error a request meets is turned into a
//! GitLab-shaped body here and nowhere else: `{"message": …}`, npm's
//! `{"message": …, "error": …}`, Grape's `{"error": …}`, or GitLab's own answer passed on
//! unchanged. The log level follows the status.

use http::{Response, StatusCode};
use serde_json::json;

use super::body::{self, Body};
use crate::error::{Error, RequestError, StoreError};

pub fn error_response(err: &Error) -> Response<Body> {
    // The wrappers only say how the error was reached: answer (and log) the error itself, once.
    if let Error::Shared(_) | Error::Remembered(_) = err {
        return error_response(err.inner());
    }
    let status = err.status();
    if status.is_server_error() {
        tracing::warn!(%status, error = %err, "request failed");
    } else {
        tracing::debug!(%status, error = %err, "request refused");
    }
    let mut www = None;
    let retry_after = match err.inner() {
        Error::Upstream(crate::error::UpstreamError::RateLimited { retry_after, .. }) => {
            retry_after.clone()
        }
        _ => None,
    };
    let body = match err {
        Error::Shared(_) | Error::Remembered(_) => unreachable_wrapper(),
        Error::Passthrough {
            body,
            www_authenticate,
            ..
        } => {
            www = www_authenticate.clone();
            if body.is_empty() {
                json!({ "message": status_line(status) }).to_string().into()
            } else {
                body.clone()
            }
        }
        Error::Gitlab { message, error, .. } => match error {
            Some(e) => json!({ "message": message, "error": e }),
            None => json!({ "message": message }),
        }
        .to_string()
        .into(),
        Error::Request(RequestError::BadPackageName) => {
            json!({ "error": "package_name should be a valid file path" })
                .to_string()
                .into()
        }
        Error::Request(RequestError::Grape(text)) => json!({ "error": text }).to_string().into(),
        Error::Request(RequestError::NoRoute) => json!({ "error": "404 Not Found" }).to_string().into(),
        Error::Request(RequestError::MethodNotAllowed) => {
            json!({ "error": "405 Not Allowed" }).to_string().into()
        }
        Error::Request(r) => json!({ "message": r.to_string() }).to_string().into(),
        Error::Upstream(u) => json!({ "message": u.to_string() }).to_string().into(),
        Error::Store(
            s @ (StoreError::Verify(_) | StoreError::Rejected { .. } | StoreError::TooLarge { .. }),
        ) => {
            json!({ "message": format!("the upstream sent content that packrat refused: {s}; nothing was cached") })
                .to_string()
                .into()
        }
        Error::Store(s @ StoreError::ObjectStore { .. }) => {
            json!({ "message": format!("503 Service Unavailable: {s}; blobs on this node's disk tier are still served, retry when the object store is reachable") })
                .to_string()
                .into()
        }
        Error::Store(s @ StoreError::Unconfirmed) => {
            json!({ "message": format!("502 Bad Gateway: {s}") }).to_string().into()
        }
        Error::Store(_)
        | Error::Task { .. }
        | Error::Abandoned
        | Error::Sync { .. }
        | Error::Encode(_) => {
            json!({ "message": "500 Internal Server Error" }).to_string().into()
        }
    };
    let mut resp = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(w) = www {
        resp = resp.header(http::header::WWW_AUTHENTICATE, w);
    }
    if let Some(r) = retry_after {
        resp = resp.header(http::header::RETRY_AFTER, r);
    }
    let bytes: bytes::Bytes = body;
    let len = bytes.len();
    resp.header(http::header::CONTENT_LENGTH, len)
        .body(body::full(bytes))
        .unwrap_or_else(|_| fallback())
}

/// Never reached: [`error_response`] unwraps [`Error::Shared`] and [`Error::Remembered`] first.
fn unreachable_wrapper() -> bytes::Bytes {
    bytes::Bytes::from_static(br#"{"message":"500 Internal Server Error"}"#)
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )
}

/// A response that cannot fail to build.
pub fn fallback() -> Response<Body> {
    let mut r = Response::new(body::full(r#"{"message":"500 Internal Server Error"}"#));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}
