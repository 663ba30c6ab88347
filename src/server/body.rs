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

/// Serve a large file: one blocking task reads it in 256 KiB chunks and hands them over a
/// small channel, instead of one blocking-pool hand-off per read (never blocking reads inside
/// `poll_next`). Smaller files come from the hot tier as bytes.
pub fn file(f: tokio::fs::File, len: u64) -> Body {
    let cap = usize::try_from(len.clamp(4096, 256 * 1024)).unwrap_or(256 * 1024);
    let std_file = match f.try_into_std() {
        Ok(f) => f,
        // An operation still in flight on the handle (never for a fresh open): async reads.
        Err(f) => return stream(tokio_util::io::ReaderStream::with_capacity(f, cap)),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std_file;
        loop {
            let mut buf = vec![0u8; cap];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut rx = rx;
    stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
