//! Test support shared by every integration test module.
//!
//! - [`fake_gitlab`]: a fake GitLab upstream (npm routes, auth, faults, counters).
//! - [`packrat`]: runs the real packrat binary on a temp data dir.
//! - [`clients`]: real package-manager clients (npm) in isolated environments.

// Each test module uses a different part of the support code.
#![allow(dead_code)]

pub mod clients;
pub mod fake_gitlab;
pub mod packrat;
