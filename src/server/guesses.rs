//! Wrong operator tokens, counted across every endpoint that takes one (`/-/pins`,
//! `/-/status`, `/-/ui` with a token header, the `/-/ui/login` form): at most
//! [`PER_WINDOW`] wrong tokens per [`WINDOW_SECS`] for the whole process. A token is
//! counted before it is compared, and uncounted only when it was right, so cancelling a
//! slow wrong answer does not buy another guess; past the budget every token is refused with
//! a 429 before any comparison, until the window turns.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use http::StatusCode;

use crate::error::Error;

/// Wrong tokens allowed per window, across all operator endpoints.
pub const PER_WINDOW: u32 = 20;
/// The window's length, in seconds.
pub const WINDOW_SECS: u64 = 10;

struct Guesses {
    window: AtomicU64,
    wrong: AtomicU32,
}

/// One budget for the process: every listener and endpoint shares it.
static GUESSES: Guesses = Guesses {
    window: AtomicU64::new(0),
    wrong: AtomicU32::new(0),
};

/// Compare a presented token with `is_right` within the budget: `Ok(true)` for a right one,
/// `Ok(false)` for a wrong one, a 429 when too many were wrong lately.
pub fn check(is_right: impl FnOnce() -> bool) -> Result<bool, Error> {
    let window = crate::store::now_ms() / 1000 / WINDOW_SECS;
    let seen = GUESSES.window.load(Ordering::Acquire);
    if seen != window
        && GUESSES
            .window
            .compare_exchange(seen, window, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        GUESSES.wrong.store(0, Ordering::Release);
    }
    if GUESSES.wrong.fetch_add(1, Ordering::AcqRel) >= PER_WINDOW {
        GUESSES.wrong.fetch_sub(1, Ordering::AcqRel);
        return Err(Error::gitlab(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "429 Too Many Requests: too many wrong operator tokens; retry within {WINDOW_SECS} s"
            ),
        ));
    }
    let right = is_right();
    if right {
        GUESSES.wrong.fetch_sub(1, Ordering::AcqRel);
    }
    Ok(right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_tokens_past_the_budget_are_refused_before_comparing_and_right_ones_cost_nothing() {
        for _ in 0..100 {
            assert!(check(|| true).unwrap_or(false));
        }
        let mut refused = 0;
        let mut compared = 0;
        for _ in 0..PER_WINDOW * 2 {
            match check(|| {
                compared += 1;
                false
            }) {
                Ok(right) => assert!(!right),
                Err(e) => {
                    assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
                    refused += 1;
                }
            }
        }
        // A window may turn during the loop: then more are compared, never fewer refused
        // than the budget allows.
        assert!(compared >= PER_WINDOW);
        assert!(refused > 0 || compared > PER_WINDOW);
    }
}
