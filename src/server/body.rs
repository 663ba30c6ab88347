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

/// Serve a file with async reads (never blocking reads inside `poll_next`); the read
/// buffer is sized to the file, up to 256 KiB.
pub fn file(f: tokio::fs::File, len: u64) -> Body {
    let cap = usize::try_from(len.clamp(4096, 256 * 1024)).unwrap_or(256 * 1024);
    stream(tokio_util::io::ReaderStream::with_capacity(f, cap))
}
