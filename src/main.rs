//! The `packrat` binary: parse the command line, load the config (exit 2 on errors, before
//! binding or opening anything), run the command. Exit 1 when a command finds faults.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use packrat::cli::{Cli, Command};
use packrat::config::{parse_size, Config};
use packrat::store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("packrat=info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("packrat: config error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("packrat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve => runtime
            .block_on(packrat::server::serve(config))
            .map(|()| true)
            .map_err(anyhow::Error::from),
        other => runtime.block_on(offline_command(other, config)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("packrat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The commands that own the data directory for their run. Ok(false) = ran, found faults.
async fn offline_command(command: Command, config: Config) -> anyhow::Result<bool> {
    let store = Store::open(&config.storage.dir).with_context(|| {
        format!(
            "cannot open the data directory {}",
            config.storage.dir.display()
        )
    })?;
    match command {
        Command::Serve => unreachable_serve(),
        Command::Export { out, since } => {
            let r = tokio::task::spawn_blocking(move || {
                packrat::bundle::export(&store, &out, since.as_deref()).map(|r| (r, out))
            })
            .await??;
            let (r, out) = r;
            println_stdout(&format!(
                "exported {} index records and {} blobs ({} bytes) to {}{}",
                r.entries,
                r.blobs,
                r.bytes,
                out.display(),
                if r.skipped_since > 0 {
                    format!(
                        "; {} blobs left out (already in the --since bundle)",
                        r.skipped_since
                    )
                } else {
                    String::new()
                }
            ));
            Ok(true)
        }
        Command::Import { file } => {
            let r = packrat::bundle::import(&store, &file).await?;
            println_stdout(&format!(
                "imported {} index records and {} blobs ({} new, {} already present, {} bytes) from {}",
                r.entries,
                r.blobs_new + r.blobs_present,
                r.blobs_new,
                r.blobs_present,
                r.bytes,
                file.display()
            ));
            Ok(true)
        }
        Command::Gc {
            max_size,
            include_pinned,
        } => {
            let max = match max_size {
                Some(s) => parse_size(&s).map_err(|e| anyhow::anyhow!("--max-size {s:?}: {e}"))?,
                None => config.storage.max_size,
            };
            let r =
                tokio::task::spawn_blocking(move || packrat::gc::run(&store, max, include_pinned))
                    .await??;
            println_stdout(&format!(
                "gc: {} bytes before, {} after (target {max}); evicted {} blobs; kept {} pinned",
                r.before,
                r.after,
                r.evicted.len(),
                r.kept_pinned
            ));
            Ok(true)
        }
        Command::Verify => {
            let r = tokio::task::spawn_blocking(move || packrat::verify::run(&store)).await??;
            for f in &r.faults {
                println_stdout(&format!("fault: {f}"));
            }
            println_stdout(&format!(
                "verify: {} blobs ({} bytes) and {} index entries checked; {} faults",
                r.blobs_checked,
                r.bytes_checked,
                r.entries_checked,
                r.faults.len()
            ));
            Ok(r.is_clean())
        }
    }
}

fn unreachable_serve() -> anyhow::Result<bool> {
    anyhow::bail!("serve is not an offline command")
}

#[allow(clippy::print_stdout)] // command results go to stdout; logs go to stderr
fn println_stdout(line: &str) {
    println!("{line}");
}
