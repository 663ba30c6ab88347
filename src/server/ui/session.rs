//! Operator page sessions: a random id (256 bits from the OS's CSPRNG) in a cookie, kept
//! server-side in memory with a fixed lifetime (`server.ui_session_ttl`) and bounded in
//! number (1024). Only the id's sha256 is kept; a restart ends every session.

use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE: &str = "packrat_ui";
/// Sessions held at most (past this the cache evicts some, which then log in again).
const MAX_SESSIONS: u64 = 1024;

pub struct Sessions {
    live: moka::sync::Cache<[u8; 32], ()>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            live: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(ttl)
                .build(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session; its id, for the cookie.
    pub fn create(&self) -> String {
        let mut id = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let id = hex::encode(id);
        self.live.insert(key(&id), ());
        id
    }

    /// Is `id` a session that has not expired or ended?
    pub fn valid(&self, id: &str) -> bool {
        self.live.contains_key(&key(id))
    }

    pub fn end(&self, id: &str) {
        self.live.invalidate(&key(id));
    }
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The session id a request's `Cookie` headers carry, if any.
pub fn from_headers(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_end_and_expire() {
        let s = Sessions::new(Duration::from_millis(200));
        let id = s.create();
        assert_eq!(id.len(), 64);
        assert!(s.valid(&id));
        assert!(!s.valid("nope"));
        let other = s.create();
        assert_ne!(id, other);
        s.end(&id);
        assert!(!s.valid(&id));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!s.valid(&other));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; packrat_ui=abc".parse().unwrap());
        assert_eq!(from_headers(&h), Some("abc"));
        assert_eq!(from_headers(&http::HeaderMap::new()), None);
    }
}
