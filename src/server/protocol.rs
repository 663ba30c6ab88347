//! One accepted connection, served: plain sockets are HTTP/1.1 in parked rounds
//! ([`super::park`]) or, when they open with the h2 preface, h2c; TLS sockets are h2 or
//! HTTP/1.1 by ALPN. Every connection ends when it expires or is evicted ([`super::conn`]),
//! and finishes its requests when the server shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::ConnState;
use super::park::{self, RoundIo, Timeouts};
use super::service::Handler;

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's settings for each protocol, shared by every connection.
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// TLS connections: h2 or HTTP/1.1, as ALPN (or the preface) says.
    tls: auto::Builder<TokioExecutor>,
    pub timeouts: Timeouts,
}

impl Protocols {
    pub fn new(timeouts: Timeouts) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(timeouts.header_read)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        // Pings find peers that went away without a word (half-open h2).
        h2.keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        let mut tls = auto::Builder::new(TokioExecutor::new());
        tls.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.header_read)
            .keep_alive(true);
        tls.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        Protocols {
            http1: h1,
            http2: h2,
            tls,
            timeouts,
        }
    }

    /// A plain socket: h2c if it opens with the preface, else HTTP/1.1.
    pub async fn serve_plain(
        &self,
        mut stream: TcpStream,
        state: Arc<ConnState>,
        service: Handler,
        shutdown: &CancellationToken,
    ) {
        let t = self.timeouts;
        let opening = tokio::select! {
            r = read_opening(&mut stream) => r,
            () = state.expired(t.header_read, t.idle) => return,
            () = shutdown.cancelled() => return,
        };
        let Ok(opening) = opening else { return };
        if opening.is_empty() {
            return;
        }
        if opening.as_ref() != H2_PREFACE {
            return park::serve(stream, opening, state, service, &self.http1, shutdown, t).await;
        }
        let io = TokioIo::new(RoundIo::new(stream, opening, state.clone(), false));
        let conn = Box::pin(self.http2.serve_connection(io, service));
        run_to_end(conn, |c| c.graceful_shutdown(), &state, t, shutdown).await;
    }

    /// A TLS socket: handshake (bounded by the header-read timeout, at most 10 s), then h2 or
    /// HTTP/1.1.
    pub async fn serve_tls(
        &self,
        stream: TcpStream,
        acceptor: &tokio_rustls::TlsAcceptor,
        state: Arc<ConnState>,
        service: Handler,
        shutdown: &CancellationToken,
    ) {
        let t = self.timeouts;
        let handshake = tokio::time::timeout(
            t.header_read.min(Duration::from_secs(10)),
            acceptor.accept(stream),
        );
        let stream = tokio::select! {
            r = handshake => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            },
            () = state.expired(t.header_read, t.idle) => return,
            () = shutdown.cancelled() => return,
        };
        let conn = Box::pin(self.tls.serve_connection(TokioIo::new(stream), service));
        run_to_end(conn, |c| c.graceful_shutdown(), &state, t, shutdown).await;
    }
}

/// Drive a connection to its end, or until it expires or is evicted; on shutdown, ask it to
/// stop (`graceful`) and let its requests finish.
async fn run_to_end<C, E>(
    mut conn: Pin<Box<C>>,
    graceful: impl FnOnce(Pin<&mut C>),
    state: &ConnState,
    t: Timeouts,
    shutdown: &CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            tracing::debug!(error = %e, "connection ended with an error");
        },
        () = state.expired(t.header_read, t.idle) => {
            tracing::debug!("closed an idle connection");
        }
        () = shutdown.cancelled() => {
            graceful(conn.as_mut());
            let _ = conn.await;
        }
    }
}

/// The first bytes of a plain connection: the whole h2 preface, or as much of it as matched
/// before the first byte that did not (empty when the client closed at once).
async fn read_opening(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    while n < buf.len() {
        let m = stream.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
        if buf[..n] != H2_PREFACE[..n] {
            break;
        }
    }
    Ok(Bytes::copy_from_slice(&buf[..n]))
}
