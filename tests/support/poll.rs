//! Waiting for something to become true, instead of sleeping and hoping it has.
//!
//! A test that must wait for packrat (a log line, a counter, a response that changes once a
//! TTL has passed, a process that exited) polls the condition with a deadline; the deadline
//! only bounds a failure, so it can be generous without slowing a passing run.
//!
//! ```ignore
//! poll::until("GitLab was asked for every tarball", poll::DEADLINE, || {
//!     fake.requests(".tgz") >= N
//! })
//! .await;
//! let r = poll::eventually("the list shows the new release", poll::DEADLINE,
//!     || go_get(&packrat, &list),
//!     |r| r.contains("v1.12.0"),
//! )
//! .await;
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long a test waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often a condition is looked at.
const INTERVAL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds; panics naming `what` if it still does not after
/// `timeout`.
pub async fn until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Like [`until`] without the panic: whether `condition` held within `timeout`.
pub async fn within(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Runs `probe` until `done` holds for what it returns, and returns that; panics naming
/// `what` if it does not within `timeout`. For conditions that take a request to see (a
/// response that changes once a TTL has passed): every probe but the last must be one that
/// changes nothing the test asserts afterwards.
pub async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut probe: F,
    mut done: impl FnMut(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Waits until the wall clock has moved past the millisecond it reads now, so that the next
/// thing packrat timestamps (in unix milliseconds, as blob access times are) is strictly
/// later than anything it stamped before this call.
pub async fn next_millisecond() {
    let now = unix_ms();
    until("the clock moved on", DEADLINE, || unix_ms() > now).await;
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}
