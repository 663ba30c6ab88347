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
    /// Configuration file (TOML). Values can be overridden by PACKRAT_<SECTION>_<KEY>.
    #[arg(long, global = true, env = "PACKRAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (defaults: 127.0.0.1:8080, ./packrat-data, upstream https://gitlab.com).
    Serve,
}
