//! What an adapter answers: status, headers, a body source, and the cache outcome. The router
//! turns it into a hyper response (HEAD, `If-None-Match`, metrics) in one place.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::cache::{BlobBody, BlobHit, CacheOutcome, Payload};

pub enum ReplyBody {
    Empty,
    Bytes(Bytes),
    File(tokio::fs::File, u64),
    Stream(
        Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
        Option<u64>,
    ),
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ReplyBody,
    pub outcome: CacheOutcome,
    /// The strong validator of the body, compared with `If-None-Match`.
    pub etag: Option<String>,
}

impl Reply {
    pub fn new(status: StatusCode, body: ReplyBody, outcome: CacheOutcome) -> Self {
        Reply {
            status,
            headers: HeaderMap::new(),
            body,
            outcome,
            etag: None,
        }
    }

    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Reply::new(status, ReplyBody::Bytes(body.into()), CacheOutcome::Bypass)
            .header(http::header::CONTENT_TYPE, "application/json")
    }

    pub fn payload(p: Payload, outcome: CacheOutcome) -> Self {
        let body = match p {
            Payload::Bytes(b) => ReplyBody::Bytes(b),
            Payload::File(f, len) => ReplyBody::File(f, len),
        };
        Reply::new(StatusCode::OK, body, outcome)
    }

    pub fn blob(hit: BlobHit) -> Self {
        let body = match (hit.body, hit.len) {
            (BlobBody::Bytes(b), _) => ReplyBody::Bytes(b),
            (BlobBody::File(f), Some(len)) => ReplyBody::File(f, len),
            (BlobBody::File(f), None) => ReplyBody::Stream(
                Box::pin(tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024)),
                None,
            ),
            (BlobBody::Stream(s), len) => ReplyBody::Stream(s, len),
        };
        let mut r = Reply::new(StatusCode::OK, body, hit.outcome);
        if let Some(d) = hit.digest {
            r.etag = Some(format!("\"{}\"", d.hex()));
        }
        r
    }

    /// An answer produced elsewhere (GitLab's answer to a forwarded write), as it was.
    pub fn passthrough(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        let body = if body.is_empty() {
            ReplyBody::Empty
        } else {
            ReplyBody::Bytes(body)
        };
        let mut r = Reply::new(status, body, CacheOutcome::Bypass);
        r.headers = headers;
        r
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// Metadata may change: clients revalidate every time (a 304 is cheap). Content only
    /// an authenticated caller may read is `private`.
    pub fn revalidate(self, public: bool) -> Self {
        let v = if public { "public" } else { "private" };
        self.header(
            http::header::CACHE_CONTROL,
            &format!("{v}, max-age=0, must-revalidate"),
        )
    }

    /// Content-addressed files never change.
    pub fn immutable(self, public: bool) -> Self {
        let v = if public { "public" } else { "private" };
        self.header(
            http::header::CACHE_CONTROL,
            &format!("{v}, max-age=31536000, immutable"),
        )
    }

    /// `Warning: 110` when the answer is stale because the upstream failed.
    pub fn warn_if_stale(self) -> Self {
        if self.outcome == CacheOutcome::StaleIfError {
            self.header(http::header::WARNING, "110 - \"Response is Stale\"")
        } else {
            self
        }
    }

    pub fn etag(mut self, etag: &str) -> Self {
        self.etag = Some(etag.to_string());
        self
    }
}
