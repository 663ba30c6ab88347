//! What an adapter answers: status, headers, a body source, and the cache outcome. The router
//! turns it into a hyper response (HEAD, `If-None-Match`, metrics) in one place; the
//! adapters' sync entry points read its body to the end instead
//! ([`ReplyBody::for_each_chunk`]).

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

impl ReplyBody {
    /// Read the body to its end, handing each chunk to `each`; returns its length. A download
    /// in flight completes into the store meanwhile (what `sync` relies on).
    pub async fn for_each_chunk(self, mut each: impl FnMut(&[u8])) -> std::io::Result<u64> {
        use futures_util::StreamExt as _;
        use tokio::io::AsyncReadExt as _;
        let mut n = 0u64;
        match self {
            ReplyBody::Empty => {}
            ReplyBody::Bytes(b) => {
                each(&b);
                n = b.len() as u64;
            }
            ReplyBody::File(mut f, _) => {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let k = f.read(&mut buf).await?;
                    if k == 0 {
                        break;
                    }
                    each(&buf[..k]);
                    n += k as u64;
                }
            }
            ReplyBody::Stream(mut s, _) => {
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    each(&chunk);
                    n += chunk.len() as u64;
                }
            }
        }
        Ok(n)
    }

    /// Read the body to its end, discarding it; returns its length.
    pub async fn drain(self) -> std::io::Result<u64> {
        self.for_each_chunk(|_| {}).await
    }

    /// The whole body in memory (small bodies only: checksum database answers, lists).
    pub async fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.for_each_chunk(|c| out.extend_from_slice(c)).await?;
        Ok(out)
    }
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
