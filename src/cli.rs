//! The command line: `packrat <command> [--config FILE]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "packrat",
    version,
    about = "A caching pull-through proxy and mirror for GitLab package registries"
)]
pub struct Cli {
    /// Configuration file (TOML). Values can be overridden by `PACKRAT_<SECTION>_<KEY>`.
    #[arg(long, global = true, env = "PACKRAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (defaults: 127.0.0.1:8080, ./packrat-data, upstream `https://gitlab.com`).
    Serve,
    /// Fill the cache ahead of time from lockfiles and manifests (package-lock.json,
    /// npm-shrinkwrap.json, yarn.lock, pnpm-lock.yaml, bun.lock, go.mod/go.sum, packrat.list).
    Sync {
        /// Inputs; the format is detected from the name and content.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<PathBuf>,
        /// Warm a running packrat through its HTTP routes instead of opening the data
        /// directory (which a running `serve` holds).
        #[arg(long, value_name = "URL")]
        via: Option<String>,
    },
    /// Write everything cached (or only what an earlier bundle lacks) into one bundle file.
    Export {
        /// The bundle file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// An earlier bundle: leave out the blobs it already carries.
        #[arg(long, value_name = "FILE")]
        since: Option<PathBuf>,
        /// Sign the bundle's manifest with this Ed25519 key (from `packrat keygen`).
        #[arg(long, value_name = "KEYFILE")]
        sign: Option<PathBuf>,
    },
    /// Load a bundle into the data directory, verifying every blob first.
    Import {
        /// The bundle file.
        file: PathBuf,
    },
    /// Evict least-recently-used blobs until the store fits.
    Gc {
        /// Target size (default: storage.max_size), e.g. 10GiB.
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Also evict blobs that synced lockfiles and manifests still need.
        #[arg(long)]
        include_pinned: bool,
    },
    /// Re-hash every blob and check every index entry; quarantine what is wrong.
    Verify,
    /// Print pinned private names and blocked public-fallback attempts (the `/-/pins`
    /// report) as JSON, read from the data directory.
    Pins,
    /// Write a new Ed25519 key pair for signing bundles: KEYFILE (private) and KEYFILE.pub.
    Keygen {
        /// Where to write the private key; the public key goes to KEYFILE.pub.
        #[arg(long, value_name = "KEYFILE")]
        out: PathBuf,
    },
}
