//! Test support shared by every integration test module.
//!
//! - [`fake_gitlab`]: a fake GitLab upstream (npm and Go routes, auth, faults, counters).
//! - [`fake_public_npm`]: a fake public npm registry (full + abbreviated packuments).
//! - [`fake_public_go`]: a fake public Go module proxy (GOPROXY protocol, counters).
//! - [`fake_sumdb`]: a real, signed Go checksum database with request counters.
//! - [`packrat`]: runs the real packrat binary on a temp data dir.
//! - [`serve`]: what every fake server shares: the accept loop, [`serve::Reply`], the body
//!   type, request logs.
//! - [`poll`]: waiting for a condition with a deadline (never a sleep that hopes).
//! - [`files`]: the files below a directory (what packrat left in its data dir).
//! - [`http`]: small reqwest helpers (status + body, cache outcome, metrics).
//! - [`clients`]: real package-manager clients (npm, go) in isolated environments.

// Each test module uses a different part of the support code.
#![allow(dead_code)]

/// The one policy for a test that needs an external tool (`npm`, `go`, ...): when the tool is
/// missing and `CI` is set the test fails, naming the tool and how scripts/test installs it;
/// otherwise it prints `skipping <test>: <tool> not found` and returns. Put it first in the
/// test (or in a closure, as the self-test does).
///
/// ```ignore
/// require_tool!("npm");
/// require_tool!("npm", "go");
/// ```
macro_rules! require_tool {
    ($($tool:literal),+ $(,)?) => {
        $(
            if !$crate::support::clients::tool_or_skip($tool, ::std::env::var_os("CI").is_some()) {
                return;
            }
        )+
    };
}
pub(crate) use require_tool;

pub mod clients;
pub mod fake_gitlab;
pub mod fake_public_go;
pub mod fake_public_npm;
pub mod fake_sumdb;
pub mod files;
pub mod http;
pub mod packrat;
pub mod poll;
pub mod serve;
