//! One response body type for every route.

use std::io;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;

pub type Body = BoxBody<Bytes, io::Error>;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn stream<S>(s: S) -> Body
where
    S: Stream<Item = io::Result<Bytes>> + Send + Sync + 'static,
{
    StreamBody::new(s.map_ok(Frame::data)).boxed()
}

/// Serve a file too big for the hot tier: async reads of up to 64 KiB, each a short hop to
/// the blocking pool. No thread is held while a slow client drains the body, and a stream
/// holds at most two 64 KiB buffers, so ten thousand concurrent downloads stay bounded in
/// threads and memory. Smaller files come from the hot tier as bytes.
pub fn file(f: tokio::fs::File, len: u64) -> Body {
    const CHUNK: u64 = 64 << 10;
    let cap = usize::try_from(len.clamp(4096, CHUNK)).unwrap_or(64 << 10);
    let mut f = f;
    f.set_max_buf_size(cap);
    stream(tokio_util::io::ReaderStream::with_capacity(f, cap))
}
