//! HTTP/1.1 keep-alive that holds no buffers while a connection is idle.
//!
//! hyper keeps a connection's read and write buffers (8 KiB or more each) for as long as it
//! is open, so ten thousand idle keep-alive sockets would hold hundreds of MiB. Here a
//! connection is served in rounds: hyper serves requests until the connection goes quiet,
//! [`RoundIo`] then ends the round with a pretend end-of-stream, hyper hands the socket back,
//! and the socket waits for its next request holding nothing but its registration with the
//! reactor. The pretend end is given only when hyper can hold no part of a request: the last
//! response is flushed, no request is in flight, none on this connection had a body, and the
//! bytes received so far end with a head's closing blank line.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::ConnState;
use super::service::Handler;

/// How long a connection may stay quiet: before its first request, and between requests.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// The socket as hyper sees it during one round: `prefix` (bytes read before the round)
/// first, then the socket, with a pretend end-of-stream once the connection is quiet.
pub struct RoundIo {
    stream: TcpStream,
    prefix: Bytes,
    state: Arc<ConnState>,
    /// Requests started on the connection before this round.
    round_start: u64,
    /// Whether this round may end by parking (never for h2, whose frames are not heads).
    parkable: bool,
    /// The last four bytes handed to hyper.
    tail: [u8; 4],
    /// Nothing written since hyper last flushed.
    flushed: bool,
    /// The pretend end-of-stream was given.
    parked: bool,
}

impl RoundIo {
    pub fn new(stream: TcpStream, prefix: Bytes, state: Arc<ConnState>, parkable: bool) -> Self {
        let round_start = state.requests();
        RoundIo {
            stream,
            prefix,
            state,
            round_start,
            parkable,
            tail: [0; 4],
            flushed: true,
            parked: false,
        }
    }

    fn note_read(&mut self, bytes: &[u8]) {
        if bytes.len() >= 4 {
            self.tail.copy_from_slice(&bytes[bytes.len() - 4..]);
        } else {
            self.tail.rotate_left(bytes.len());
            self.tail[4 - bytes.len()..].copy_from_slice(bytes);
        }
    }

    /// hyper is waiting for a next request and holds none of it.
    fn quiet(&self) -> bool {
        self.parkable
            && self.flushed
            && &self.tail == b"\r\n\r\n"
            && self.state.bodiless_and_idle_since(self.round_start)
    }
}

impl AsyncRead for RoundIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let chunk = this.prefix.split_to(this.prefix.len().min(buf.remaining()));
            buf.put_slice(&chunk);
            this.note_read(&chunk);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.note_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.quiet() => {
                this.parked = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for RoundIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.flushed = false;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.flushed = false;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.flushed = true;
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serve HTTP/1.1 on `stream` (whose first bytes, already read, are `prefix`) until the
/// client closes, the connection expires or is evicted, or the server shuts down.
pub async fn serve(
    mut stream: TcpStream,
    mut prefix: Bytes,
    state: Arc<ConnState>,
    mut service: Handler,
    builder: &http1::Builder,
    shutdown: &CancellationToken,
    timeouts: Timeouts,
) {
    loop {
        let io = TokioIo::new(RoundIo::new(stream, prefix, state.clone(), true));
        // Boxed: the connection's task holds only a pointer while it is parked.
        let mut conn = Box::new(builder.serve_connection(io, service));
        let ended = tokio::select! {
            r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
            () = state.expired(timeouts.header_read, timeouts.idle) => {
                tracing::debug!("closed an idle connection");
                return;
            }
            () = shutdown.cancelled() => {
                Pin::new(&mut *conn).graceful_shutdown();
                let _ = poll_fn(|cx| conn.poll_without_shutdown(cx)).await;
                return;
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
            return;
        }
        let http1::Parts {
            io,
            read_buf,
            service: handler,
            ..
        } = conn.into_parts();
        let io = io.into_inner();
        if !io.parked {
            // The client closed, or hyper chose to (`Connection: close`, HTTP/1.0).
            return;
        }
        // Unread bytes (none, by `quiet`) are copied out: hyper's buffer, even empty, keeps
        // its whole allocation alive.
        prefix = Bytes::copy_from_slice(&read_buf);
        drop(read_buf);
        (stream, service) = (io.stream, handler);
        tokio::select! {
            r = stream.readable() => if r.is_err() { return },
            () = state.expired(timeouts.header_read, timeouts.idle) => {
                tracing::debug!("closed an idle connection");
                return;
            }
            () = shutdown.cancelled() => return,
        }
    }
}
