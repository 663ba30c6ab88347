//! Connection lifetimes: what keeps a connection, and its permit, alive.
//!
//! A connection is closed when it has no request in flight and has been quiet for too long:
//! `server.header_read_timeout` before its first request (a silent socket, a half-sent head,
//! an h2 preface and nothing after it), `server.idle_timeout` after one (HTTP/1.1 keep-alive,
//! an idle h2 or h2c connection; h2 keep-alive pings do not count as use). Time spent inside a
//! request, however slow its upstream, never counts.
//!
//! At `server.max_connections` (see [`connection_limit`]) a new one evicts the longest-idle connection that has
//! nothing in flight, so a flood of silent sockets cannot stop packrat from accepting (and
//! `/-/health` from answering); only when every connection is busy is the new one refused.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;

use super::body::Body;

/// One connection's use, shared by its requests, its watchdog and the table.
pub struct ConnState {
    /// Requests whose response body is not finished.
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// When a request last started or ended (ms since `epoch`).
    last_change: AtomicU64,
    epoch: Instant,
    kill: Notify,
    done: AtomicBool,
    /// A request on this connection had a body (so it is never parked: see [`super::park`]).
    had_body: AtomicBool,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_change: AtomicU64::new(0),
            epoch: Instant::now(),
            kill: Notify::new(),
            done: AtomicBool::new(false),
            had_body: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// A request started: the connection is in use until the guard (held by the response
    /// body) drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_change.store(self.now(), Ordering::Release);
        InFlight(self.clone())
    }

    /// Requests started on this connection so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// A request with a body arrived.
    pub fn saw_body(&self) {
        self.had_body.store(true, Ordering::Release);
    }

    /// No request is in flight, none has had a body, and one started after `round_start`.
    pub fn bodiless_and_idle_since(&self, round_start: u64) -> bool {
        self.idle() && !self.had_body.load(Ordering::Acquire) && self.requests() > round_start
    }

    /// Resolves once the connection should be closed: idle for too long, or evicted.
    pub async fn expired(&self, header_read_timeout: Duration, idle_timeout: Duration) {
        loop {
            let limit = if self.requests.load(Ordering::Relaxed) == 0 {
                header_read_timeout
            } else {
                idle_timeout
            };
            let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
            let quiet = self
                .now()
                .saturating_sub(self.last_change.load(Ordering::Acquire));
            let wait = if !self.idle() {
                limit_ms
            } else if quiet >= limit_ms {
                return;
            } else {
                limit_ms - quiet
            };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait.max(10))) => {}
                () = self.kill.notified() => return,
            }
        }
    }

    /// The connection task ended.
    pub fn finish(&self) {
        self.done.store(true, Ordering::Release);
    }
}

/// Held while a request is in flight.
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_change.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
pub struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl Guarded {
    pub fn wrap(inner: Body, guard: InFlight) -> Body {
        http_body_util::BodyExt::boxed(Guarded {
            inner,
            _guard: guard,
        })
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, oldest first.
pub struct Connections {
    list: Mutex<VecDeque<Arc<ConnState>>>,
    max: usize,
}

/// File descriptors kept for everything but client connections: blob files being read and
/// written, the index, upstream connections, the listener.
const RESERVED_FDS: u64 = 512;

/// How many connections may be open at once: `configured`, or fewer when the open-file
/// limit (raised first to its hard maximum) leaves less room. Without the cap a flood of
/// sockets would make `accept` fail with EMFILE before the idle ones are evicted.
pub fn connection_limit(configured: usize) -> usize {
    let want = u64::try_from(configured)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_FDS);
    let files = match rlimit::increase_nofile_limit(want) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            return configured;
        }
    };
    let room = usize::try_from(files.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            max_connections = configured,
            open_file_limit = files,
            "the open-file limit allows only {room} connections; raise it (ulimit -n) for more"
        );
    }
    configured.min(room).max(1)
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Connections {
            list: Mutex::new(VecDeque::new()),
            max,
        }
    }

    /// Admit a new connection: its state, or `None` when every open connection is busy. At
    /// the limit, the longest-idle connection with nothing in flight is evicted.
    pub fn admit(&self) -> Option<Arc<ConnState>> {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|c| !c.done.load(Ordering::Acquire));
        if list.len() >= self.max {
            let victim = list.iter().position(|c| c.idle())?;
            if let Some(v) = list.remove(victim) {
                v.kill.notify_one();
            }
        }
        let state = Arc::new(ConnState::new());
        list.push_back(state.clone());
        Some(state)
    }

    pub fn open(&self) -> usize {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|c| !c.done.load(Ordering::Acquire))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn quiet_connections_expire_and_busy_ones_do_not() {
        let state = Arc::new(ConnState::new());
        let t = Instant::now();
        state
            .expired(Duration::from_secs(30), Duration::from_secs(60))
            .await;
        assert!(
            t.elapsed() >= Duration::from_secs(30),
            "before the first request"
        );
        let guard = state.begin();
        let watchdog = state.expired(Duration::from_secs(30), Duration::from_secs(60));
        tokio::pin!(watchdog);
        assert!(
            tokio::time::timeout(Duration::from_secs(600), &mut watchdog)
                .await
                .is_err(),
            "a request in flight keeps it open"
        );
        drop(guard);
        let t = Instant::now();
        watchdog.await;
        assert!(
            t.elapsed() >= Duration::from_secs(59),
            "idle after a request"
        );
    }

    #[test]
    fn at_the_limit_the_longest_idle_connection_is_evicted() {
        let conns = Connections::new(2);
        let a = conns.admit().unwrap();
        let b = conns.admit().unwrap();
        let _busy = a.begin();
        let c = conns.admit().expect("b is idle: evicted");
        assert_eq!(conns.open(), 2);
        let _busy_c = c.begin();
        // a and c are busy: nothing to evict.
        assert!(conns.admit().is_none());
        drop(b);
    }
}
