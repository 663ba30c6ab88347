//! The fake GitLab from the integration tests, as a standalone process for benchmark
//! scripts.
//!
//! ```text
//! cargo run --example fake_gitlab -- [--listen 127.0.0.1:PORT] [--bench]
//! ```
//!
//! Prints `fake-gitlab listening on http://127.0.0.1:PORT` once bound and runs until killed.
//! `--bench` adds `@pub/bench-5k`, `-50k`, `-500k`, `-2m` and `@pub/huge` (a packument over
//! 20 MB) to the public project 7 (`pub/lib`); `@priv/bench-5k` … `-2m` (the same sizes) to the
//! private project 9 (`priv/lib`), readable with the token `bench-pat` (a Reporter there:
//! `World::add_bench_private_packages`); and the Go benchmark modules to the public project
//! 8 (`bench/go`): `gitlab.example.com/bench/go/zip10k`, `zip100k`, `zip1m`, `zip5m` (zips of
//! about that size) and the 100-module graph `gitlab.example.com/bench/go/m000` … `m099`, all
//! at v1.0.0 (see `World::add_bench_go_modules` in `tests/support/fake_gitlab/go.rs`). Tokens
//! and the rest of the world are those of `World::standard()` (see
//! `tests/support/fake_gitlab/world.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    clippy::print_stdout
)]

#[allow(dead_code)]
#[path = "../tests/support/fake_gitlab/mod.rs"]
mod fake_gitlab;
// What the fake's accept loop and replies are built on (`super::serve` to it).
#[allow(dead_code)]
#[path = "../tests/support/serve.rs"]
mod serve;

use std::io::Write as _;
use std::net::SocketAddr;

use fake_gitlab::{FakeGitlab, World};

fn usage() -> ! {
    eprintln!("usage: fake_gitlab [--listen 127.0.0.1:PORT] [--bench]");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("default address");
    let mut bench = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().unwrap_or_else(|| usage());
                listen = value.parse().unwrap_or_else(|_| usage());
                if !listen.ip().is_loopback() {
                    eprintln!("fake_gitlab: --listen must be a 127.0.0.1 address");
                    std::process::exit(2);
                }
            }
            "--bench" => bench = true,
            _ => usage(),
        }
    }
    let mut world = World::standard();
    if bench {
        world.add_bench_packages();
        world.add_bench_private_packages();
        world.add_bench_go_modules();
    }
    let fake = FakeGitlab::start_on(world, listen).await;
    // Long-running: keep totals but not an ever-growing request log.
    fake.set_request_log(false);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "fake-gitlab listening on {}", fake.url()).expect("stdout");
    stdout.flush().expect("stdout");
    let _ = tokio::signal::ctrl_c().await;
}
