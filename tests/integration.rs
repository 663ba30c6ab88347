//! The one integration-test binary (`autotests = false`; see Cargo.toml).

mod support;

// The fake GitLab itself, checked with reqwest and the real npm client (no packrat).
mod fake_gitlab_selftest;
