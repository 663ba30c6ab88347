//! The plumbing every fake server shares: binding a loopback listener, the accept/serve
//! loop (with a clean shutdown that refuses connects from then on), one reply type, one body
//! type, and a request log.
//!
//! A fake writes a handler `Fn(Request<Incoming>) -> impl Future<Output = Response<Body>>`
//! (usually: build a [`Reply`], then [`Reply::into_response`]) and starts it with [`serve`]:
//!
//! ```ignore
//! let (listener, addr) = serve::bind_any("fake public npm");
//! let server = serve::serve(listener, move |req| {
//!     let state = state.clone();
//!     async move { handle(&state, &req).into_response() }
//! });
//! // or, for a handler `fn(&State, &Request<Incoming>) -> Reply`:
//! let server = serve::serve_replies(listener, state.clone(), handle);
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// `127.0.0.1:0`: any free loopback port.
pub fn any_loopback_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The response body every fake sends: whole (`Full`) or streamed (faults).
pub type Body = BoxBody<Bytes, io::Error>;

/// A whole body.
pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Locks a mutex even if a panicking test poisoned it: a test that panicked while holding a
/// lock must not hide the real failure elsewhere.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds `addr` (loopback only) with `SO_REUSEADDR`, so a fake that went down can bind the
/// same port again at once.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    assert!(addr.ip().is_loopback(), "fakes bind loopback only: {addr}");
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Binds any free loopback port for `what` (named in the panic if that fails); returns the
/// listener and the address it got.
pub fn bind_any(what: &str) -> (TcpListener, SocketAddr) {
    let listener = bind(any_loopback_port()).unwrap_or_else(|e| panic!("{what}: bind: {e}"));
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

// ---- the accept loop ------------------------------------------------------------------------

/// A running accept loop. Dropping it aborts the loop and every connection;
/// [`Server::shutdown`] does the same in order and waits for it.
pub struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Serves HTTP/1 connections from `listener` with `handler`, one task per connection.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> Server
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    serve_counting(listener, None, handler)
}

/// [`serve`], adding one to `connections` for every TCP connection accepted.
pub fn serve_counting<H, F>(
    listener: TcpListener,
    connections: Option<Arc<AtomicUsize>>,
    handler: H,
) -> Server
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (shutdown, mut shutdown_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown_rx => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Back off from a failing accept (e.g. out of file descriptors)
                        // instead of spinning; this is not synchronisation.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    if let Some(counter) = &connections {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let handler = handler.clone();
                    conns.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let answer = handler(req);
                            async move { Ok::<_, Infallible>(answer.await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
        // Drop the listener first (connects are refused from then on), then every connection.
        drop(listener);
        conns.shutdown().await;
    });
    Server {
        shutdown: Some(shutdown),
        task,
    }
}

/// [`serve`] for a fake whose every answer is a [`Reply`] computed from its shared state
/// and the request.
pub fn serve_replies<S: Send + Sync + 'static>(
    listener: TcpListener,
    state: Arc<S>,
    handle: fn(&S, &Request<Incoming>) -> Reply,
) -> Server {
    serve(listener, move |req| {
        let state = state.clone();
        async move { handle(&state, &req).into_response() }
    })
}

impl Server {
    /// Closes the listener and drops every open connection; returns once both are true.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- replies --------------------------------------------------------------------------------

/// A complete response as a fake builds it: status, headers, whole body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// Boxed to keep `Result<_, Reply>` small.
    pub headers: Box<HeaderMap>,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, header_value(content_type));
        Reply {
            status: StatusCode::from_u16(status).expect("valid status"),
            headers: Box::new(headers),
            body: body.into(),
        }
    }

    /// `application/json` of `value`.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(
            status,
            "application/json",
            serde_json::to_vec(value).expect("json"),
        )
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            header_value(value),
        );
        self
    }

    /// A redirect: `Location` plus a short text/plain body (what Grape sends).
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::new(
            status,
            "text/plain",
            format!("This resource has been moved temporarily to {location}."),
        )
        .header(LOCATION.as_str(), location)
    }

    /// The response with the whole body and its `Content-Length`.
    pub fn into_response(self) -> Response<Body> {
        self.into_response_with(full)
    }

    /// The response with the body `make_body` makes of the reply's bytes (a fault may cut or
    /// hold it); `Content-Length` still says the whole length (none on a 304).
    pub fn into_response_with(self, make_body: impl FnOnce(Bytes) -> Body) -> Response<Body> {
        let len = self.body.len();
        let mut response = Response::new(make_body(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = *self.headers;
        if self.status != StatusCode::NOT_MODIFIED {
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header value")
}

/// Headers that carry a credential (lowercase).
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "private-token",
    "job-token",
    "deploy-token",
    "cookie",
    "proxy-authorization",
];

/// Whether any GitLab credential header (`Authorization`, `PRIVATE-TOKEN`, `JOB-TOKEN`,
/// `Deploy-Token`) is present: a public server should never see one.
pub fn has_credentials(headers: &HeaderMap) -> bool {
    CREDENTIAL_HEADERS[..4]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// The request path, percent-decoded.
pub fn decoded_path(req: &Request<Incoming>) -> String {
    percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8_lossy()
        .into_owned()
}

// ---- request logs ---------------------------------------------------------------------------

/// A fake's `requests(path_contains)`, `requests_total()` and `request_log()`, read from
/// the [`RequestLog`] at `self.<path>`:
///
/// ```ignore
/// impl FakePublicNpm {
///     serve::request_counters!(state.log => PublicRequest);
/// }
/// ```
#[allow(unused_macros)] // unused where only the fake GitLab is built (the example)
macro_rules! request_counters {
    ($($log:ident).+ => $record:ty) => {
        /// Requests whose raw path contains `path_contains`.
        pub fn requests(&self, path_contains: &str) -> usize {
            self.$($log).+.matching(path_contains)
        }

        pub fn requests_total(&self) -> usize {
            self.$($log).+.len()
        }

        /// Every request, oldest first.
        pub fn request_log(&self) -> Vec<$record> {
            self.$($log).+.all()
        }
    };
}
#[allow(unused_imports)] // likewise
pub(crate) use request_counters;

/// What a request log records: anything with a raw path.
pub trait Logged: Clone {
    /// Raw (still percent-encoded) path, without the query.
    fn path(&self) -> &str;
}

impl Logged for String {
    fn path(&self) -> &str {
        self
    }
}

/// The requests a fake saw, oldest first.
pub struct RequestLog<R> {
    entries: Mutex<Vec<R>>,
}

impl<R> Default for RequestLog<R> {
    fn default() -> Self {
        RequestLog {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<R: Logged> RequestLog<R> {
    pub fn push(&self, record: R) {
        lock(&self.entries).push(record);
    }

    /// Requests whose raw path contains `path_contains`.
    pub fn matching(&self, path_contains: &str) -> usize {
        lock(&self.entries)
            .iter()
            .filter(|r| r.path().contains(path_contains))
            .count()
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<R> {
        lock(&self.entries).clone()
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
    }
}
