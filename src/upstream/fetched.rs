//! What an upstream answer is: a body to stream ([`Body`]), or GitLab's not-found, refusal,
//! 304 or forwarding to a public registry ([`Fetched`]); and how a failed exchange is named
//! ([`classify`]).

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, StatusCode};

use crate::error::{NotFound, UpstreamError};
use crate::urls::redact;

/// An upstream body as it arrives.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// A successful upstream body.
pub struct Body {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub len: Option<u64>,
    pub content_type: Option<String>,
    pub headers: HeaderMap,
    pub stream: ByteStream,
    /// Where it came from (redacted), for messages.
    pub url: String,
}

impl Body {
    /// The whole body in memory, refusing more than `limit` bytes.
    pub async fn read_all(self, limit: u64) -> Result<Bytes, UpstreamError> {
        read_all(self.stream, limit, &self.url).await
    }
}

/// The upstream's answer, classified.
pub enum Fetched {
    Body(Body),
    NotModified {
        etag: Option<String>,
    },
    NotFound {
        body: Bytes,
        /// What GitLab says is missing (classified here, once).
        what: NotFound,
    },
    /// Any other 4xx: a refusal to pass on unchanged (401, 403, 400, …).
    Denied {
        status: StatusCode,
        body: Bytes,
        www_authenticate: Option<String>,
    },
    ForwardedToPublic {
        location: String,
    },
}

impl Fetched {
    /// A successful body, or what a client gets instead: GitLab's refusal or not-found as it
    /// sent it, a 404 for GitLab's forwarding to a public registry, an error for a 304 to a
    /// request that was not conditional.
    pub fn into_body(self, url: &str) -> Result<Body, crate::error::Error> {
        use crate::error::Error;
        match self {
            Fetched::Body(b) => Ok(b),
            Fetched::NotFound { body, .. } => {
                Err(Error::passthrough(StatusCode::NOT_FOUND, body, None))
            }
            Fetched::Denied {
                status,
                body,
                www_authenticate,
            } => Err(Error::passthrough(status, body, www_authenticate)),
            Fetched::ForwardedToPublic { .. } => {
                Err(Error::gitlab(StatusCode::NOT_FOUND, "404 Not Found"))
            }
            Fetched::NotModified { .. } => Err(Error::Upstream(UpstreamError::Status {
                url: redact(url),
                status: 304,
                setting: "upstream.url",
            })),
        }
    }
}

/// Read a whole upstream body into memory, refusing more than `limit` bytes.
pub async fn read_all(
    mut stream: ByteStream,
    limit: u64,
    url: &str,
) -> Result<Bytes, UpstreamError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(UpstreamError::Body {
                url: redact(url),
                reason: format!("document larger than {limit} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub(super) fn classify(
    url: &str,
    e: &reqwest::Error,
    timeout: Duration,
    setting: &'static str,
) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout {
            url: redact(url),
            secs: timeout.as_secs(),
        }
    } else {
        // reqwest's own message repeats the URL; the causes say what happened.
        let mut causes = Vec::new();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            causes.push(s.to_string());
            src = s.source();
        }
        let reason = if causes.is_empty() {
            e.to_string()
        } else {
            causes.join(": ")
        };
        UpstreamError::Unreachable {
            url: redact(url),
            reason,
            setting,
        }
    }
}
