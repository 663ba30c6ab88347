//! The HTTP server: `serve` opens the store and builds the cache core, then runs a graceful
//! accept loop over hyper 1 ([`protocol`]: HTTP/1.1 keep-alive, parked while idle by
//! [`park`], and h2c; h2 by ALPN with TLS), connection lifetimes and limit ([`conn`]), the background housekeeping (access times, eviction past
//! `storage.max_size`, expiry of old access decisions), and shutdown on SIGINT/SIGTERM that
//! lets in-flight requests finish and flushes the index. The status report and the operator
//! page are [`report`] and [`ui`].

pub mod body;
pub mod conn;
mod guesses;
pub mod ops;
mod park;
mod protocol;
pub mod report;
pub mod respond;
pub mod router;
mod service;
pub mod ui;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cache::Core;
use crate::config::Config;
use crate::error::{Error, StoreError};
use crate::metrics::Metrics;
use crate::store::Store;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Core(#[from] Error),
}

/// Run the proxy until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let store = Store::open_config(&config.storage)?;
    let metrics = Arc::new(Metrics::new());
    let core = Arc::new(Core::new(config.clone(), store, metrics)?);
    crate::forwarding::fold_pin_keys(&core)?;
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.server.listen,
        source,
    })?;
    core.set_public_url(config.public_url_for(bound));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ui = Arc::new(ui::Ui::new(config.server.ui_session_ttl, tls.is_some()));
    tokio::spawn(housekeeping(core.clone()));
    tracing::info!(
        listen = %bound,
        public_url = core.public_url(),
        upstream = core.upstream_base(),
        offline = config.cache.offline,
        data = %config.storage.dir.display(),
        "packrat started"
    );
    // The one line scripts and tests wait for.
    #[allow(clippy::print_stdout)]
    {
        println!("packrat listening on {scheme}://{bound}");
    }

    let connections = Arc::new(conn::Connections::new(conn::connection_limit(
        config.server.max_connections,
    )));
    let protocols = Arc::new(protocol::Protocols::new(park::Timeouts {
        header_read: config.server.header_read_timeout,
        idle: config.server.idle_timeout,
    }));
    let stopping = CancellationToken::new();
    let tasks = TaskTracker::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Every open connection busy at the limit: refuse this one (closing it).
        let Some(state) = connections.admit() else {
            tracing::warn!(%peer, "connection limit reached with every connection busy; refused one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service::Handler::new(core.clone(), ui.clone(), state.clone());
        let (protocols, stopping, tls) = (protocols.clone(), stopping.clone(), tls.clone());
        let span = tracing::debug_span!("connection", %peer);
        tasks.spawn(
            async move {
                match &tls {
                    None => {
                        protocols
                            .serve_plain(stream, state.clone(), service, &stopping)
                            .await
                    }
                    Some(acceptor) => {
                        protocols
                            .serve_tls(stream, acceptor, state.clone(), service, &stopping)
                            .await
                    }
                }
                state.finish();
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    stopping.cancel();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests did not finish within {}s",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    // Downloads whose clients are served may still be committing (fsync, rename, index):
    // let them land before the index is flushed.
    if !core.downloads_landed(SHUTDOWN_GRACE).await {
        tracing::warn!(
            "downloads still committing after {}s; they will be fetched again",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    if let Err(e) = core.flush_atimes() {
        tracing::warn!(error = %e, "could not record blob access times");
    }
    core.flush().await?;
    tracing::info!("index flushed; bye");
    Ok(())
}

/// Every 30 s: write the batched blob access times; when the store has grown past
/// `storage.max_size`, evict least-recently-used blobs (the same code as `packrat gc`).
/// Every 10 min (and at start): delete access decisions too old to be used. The first
/// eviction check waits for the size scan of the blob store, so a store already past
/// `max_size` at start is trimmed at once rather than 30 s later.
async fn housekeeping(core: Arc<Core>) {
    core.scan_size().await;
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        if n % 20 == 0 {
            let c = core.clone();
            match tokio::task::spawn_blocking(move || c.expire_decisions()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => tracing::debug!(removed, "deleted expired access decisions"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not delete expired access decisions")
                }
                Err(e) => tracing::warn!(error = %e, "decision expiry task failed"),
            }
        }
        if let Err(e) = core.flush_atimes() {
            tracing::warn!(error = %e, "could not record blob access times");
        }
        let c = core.clone();
        match tokio::task::spawn_blocking(move || c.evict_over_max_size()).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(r))) => tracing::info!(
                evicted = r.evicted.len(),
                before = r.before,
                after = r.after,
                "evicted least-recently-used blobs"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "background eviction failed"),
            Err(e) => tracing::warn!(error = %e, "background eviction task failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ServeError::Tls(format!(
                "{}: not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: not a PEM private key: {e}", key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
