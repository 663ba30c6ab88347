//! The `packrat` binary: parse the command line, load the config (exit 2 on errors, before
//! binding or opening anything), run the command. Exit 1 when a command finds faults.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        // Colour only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    if let Command::Sync { inputs, via } = command {
        return sync(config, inputs, via).await;
    }
    if let Command::Keygen { out } = command {
        let public = packrat::signing::keygen(&out)?;
        println_stdout(&format!(
            "wrote the private key to {} and the public key to {}.pub:\n{public}\nlist it in [offline] trusted_keys on the mirrors that import bundles signed with it",
            out.display(),
            out.display()
        ));
        return Ok(true);
    }
    // Read the signing key before anything else: a bad key fails fast, with nothing written.
    let signer = match &command {
        Command::Export {
            sign: Some(key), ..
        } => Some(packrat::signing::SigningKey::load(key)?),
        _ => None,
    };
    let store = Store::open_config(&config.storage).with_context(|| {
        format!(
            "cannot open the data directory {}",
            config.storage.dir.display()
        )
    })?;
    match command {
        Command::Serve | Command::Sync { .. } | Command::Keygen { .. } => unreachable_serve(),
        Command::Export { out, since, .. } => {
            let r = tokio::task::spawn_blocking(move || {
                packrat::bundle::export(&store, &out, since.as_deref(), signer.as_ref())
                    .map(|r| (r, out))
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
            let r = packrat::bundle::import(&store, &file, &config.offline.trusted_keys).await?;
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
        Command::Pins => {
            let config = std::sync::Arc::new(config);
            let metrics = std::sync::Arc::new(packrat::metrics::Metrics::new());
            let core = packrat::cache::Core::new(config, store, metrics)?;
            println_stdout(&packrat::server::ops::pins_json(&core)?);
            Ok(true)
        }
    }
}

async fn sync(
    config: Config,
    inputs: Vec<std::path::PathBuf>,
    via: Option<String>,
) -> anyhow::Result<bool> {
    let summary = match via {
        Some(url) => packrat::sync::via::run(&config, &url, &inputs).await?,
        None => {
            let store = Store::open_config(&config.storage).with_context(|| {
                format!(
                    "cannot open the data directory {}",
                    config.storage.dir.display()
                )
            })?;
            let config = std::sync::Arc::new(config);
            let metrics = std::sync::Arc::new(packrat::metrics::Metrics::new());
            let core =
                std::sync::Arc::new(packrat::cache::Core::new(config.clone(), store, metrics)?);
            packrat::forwarding::fold_pin_keys(&core)?;
            core.set_public_url(config.public_url_for(config.server.listen));
            let s = packrat::sync::run::run(core.clone(), &inputs).await;
            core.flush().await?;
            s
        }
    };
    for s in &summary.skipped {
        println_stdout(&format!("skipped: {}: {}", s.entry, s.reason));
    }
    for f in summary.failed.iter().chain(&summary.errors) {
        println_stdout(&format!("failed: {f}"));
    }
    println_stdout(&format!(
        "sync: {} items: {} fetched, {} already present, {} failed, {} bytes fetched; {} entries skipped{}",
        summary.items,
        summary.fetched,
        summary.present,
        summary.failed.len(),
        summary.bytes,
        summary.skipped.len(),
        if summary.errors.is_empty() {
            String::new()
        } else {
            format!("; {} other failures", summary.errors.len())
        }
    ));
    Ok(summary.ok())
}

fn unreachable_serve() -> anyhow::Result<bool> {
    anyhow::bail!("serve, sync and keygen are not data-directory commands")
}

#[allow(clippy::print_stdout)] // command results go to stdout; logs go to stderr
fn println_stdout(line: &str) {
    println!("{line}");
}
