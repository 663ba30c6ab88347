//! TEMPORARY stub; replaced by the config branch.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone)]
pub struct Secret(String);
impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub forwarding: ForwardingConfig,
    pub source: Option<PathBuf>,
}
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub max_body: u64,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}
#[derive(Clone, Debug)]
pub struct StorageConfig {
    pub dir: PathBuf,
    pub max_size: u64,
    pub memory_cache: u64,
}
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub url: String,
    pub token_env: String,
    pub token: Option<Secret>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub metadata_ttl: Duration,
    pub auth_ttl: Duration,
    pub stale_if_error: Duration,
    pub negative_ttl: Duration,
    pub offline: bool,
}
#[derive(Clone, Debug)]
pub struct ForwardingConfig {
    pub npm_registry: Option<String>,
    pub go_proxy: Option<String>,
    pub go_sumdb: String,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                public_url: None,
                max_body: 512 << 20,
                tls_cert: None,
                tls_key: None,
            },
            storage: StorageConfig {
                dir: "./packrat-data".into(),
                max_size: 50 << 30,
                memory_cache: 256 << 20,
            },
            upstream: UpstreamConfig {
                url: "https://gitlab.com".into(),
                token_env: "PACKRAT_UPSTREAM_TOKEN".into(),
                token: None,
                timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(5),
            },
            cache: CacheConfig {
                metadata_ttl: Duration::from_secs(300),
                auth_ttl: Duration::from_secs(60),
                stale_if_error: Duration::from_secs(7 * 86400),
                negative_ttl: Duration::from_secs(30),
                offline: false,
            },
            forwarding: ForwardingConfig {
                npm_registry: None,
                go_proxy: None,
                go_sumdb: "https://sum.golang.org".into(),
            },
            source: None,
        }
    }
}
impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let _ = path;
        Ok(Config::default())
    }
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        match &self.server.public_url {
            Some(u) => u.clone(),
            None => format!(
                "{}://{}",
                if self.server.tls_cert.is_some() { "https" } else { "http" },
                bound
            ),
        }
    }
}
