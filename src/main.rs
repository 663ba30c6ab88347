//! The `packrat` binary: parse the command line, load the config (exit 2 on errors, before
//! binding or opening anything), run the command. Exit 1 when a command finds faults.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use packrat::cli::{Cli, Command};
use packrat::config::{parse_size, Config};
use packrat::status::{runs, Run, RunKind};
use packrat::store::{now_ms, Store};

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
            let started = now_ms();
            let r = match packrat::bundle::import(&store, &file, &config.offline.trusted_keys).await
            {
                Ok(r) => r,
                Err(e) => {
                    record_failed(&store, RunKind::Import, started, &e);
                    return Err(e.into());
                }
            };
            let line = format!(
                "imported {} index records and {} blobs ({} new, {} already present, {} bytes) from {}",
                r.entries,
                r.blobs_new + r.blobs_present,
                r.blobs_new,
                r.blobs_present,
                r.bytes,
                file.display()
            );
            let mut run = Run::finished(RunKind::Import, started, true, line.clone());
            run.details = r.details(&file);
            runs::record(&store, &run)?;
            println_stdout(&line);
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
            let started = now_ms();
            let s = store.clone();
            let r = match tokio::task::spawn_blocking(move || {
                packrat::gc::run(&s, max, include_pinned)
            })
            .await?
            {
                Ok(r) => r,
                Err(e) => {
                    record_failed(&store, RunKind::Gc, started, &e);
                    return Err(e.into());
                }
            };
            let line = runs::gc_summary(&r, max);
            let mut run = Run::finished(RunKind::Gc, started, true, line.clone());
            run.details = runs::gc_details(&r, max);
            runs::record(&store, &run)?;
            println_stdout(&line);
            Ok(true)
        }
        Command::Verify => {
            let started = now_ms();
            let s = store.clone();
            let r = match tokio::task::spawn_blocking(move || packrat::verify::run(&s)).await? {
                Ok(r) => r,
                Err(e) => {
                    record_failed(&store, RunKind::Verify, started, &e);
                    return Err(e.into());
                }
            };
            for f in &r.faults {
                println_stdout(&format!("fault: {f}"));
            }
            let line = format!(
                "verify: {} blobs ({} bytes) and {} index entries checked; {} faults",
                r.blobs_checked,
                r.bytes_checked,
                r.entries_checked,
                r.faults.len()
            );
            let mut run = Run::finished(RunKind::Verify, started, r.is_clean(), line.clone());
            run.details = serde_json::json!({
                "blobs_checked": r.blobs_checked,
                "bytes_checked": r.bytes_checked,
                "entries_checked": r.entries_checked,
                "faults": r.faults.len(),
                "first_faults": r.faults.iter().take(10).collect::<Vec<_>>(),
            });
            runs::record(&store, &run)?;
            println_stdout(&line);
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
            let core = std::sync::Arc::new(packrat::cache::Core::new(
                config.clone(),
                store.clone(),
                metrics,
            )?);
            packrat::forwarding::fold_pin_keys(&core)?;
            core.set_public_url(config.public_url_for(config.server.listen));
            let started = now_ms();
            let s = packrat::sync::run::run(core.clone(), &inputs).await;
            core.flush().await?;
            let mut run = Run::finished(RunKind::Sync, started, s.ok(), sync_line(&s));
            run.details = serde_json::json!({
                "inputs": inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "items": s.items,
                "fetched": s.fetched,
                "present": s.present,
                "failed": s.failed.len() + s.errors.len(),
                "skipped": s.skipped.len(),
                "bytes": s.bytes,
            });
            runs::record(&store, &run)?;
            s
        }
    };
    for s in &summary.skipped {
        println_stdout(&format!("skipped: {}: {}", s.entry, s.reason));
    }
    for f in summary.failed.iter().chain(&summary.errors) {
        println_stdout(&format!("failed: {f}"));
    }
    println_stdout(&sync_line(&summary));
    Ok(summary.ok())
}

fn sync_line(summary: &packrat::sync::run::Summary) -> String {
    format!(
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
    )
}

/// A command that failed still leaves its run on the status page (best effort: the data
/// directory may be what failed).
fn record_failed(store: &Store, kind: RunKind, started: u64, e: &dyn std::fmt::Display) {
    let run = Run::finished(kind, started, false, format!("{}: {e}", kind.as_str()));
    if let Err(e) = runs::record(store, &run) {
        eprintln!("packrat: could not record the {} run: {e}", kind.as_str());
    }
}

fn unreachable_serve() -> anyhow::Result<bool> {
    anyhow::bail!("serve, sync and keygen are not data-directory commands")
}

#[allow(clippy::print_stdout)] // command results go to stdout; logs go to stderr
fn println_stdout(line: &str) {
    println!("{line}");
}
