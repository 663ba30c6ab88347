//! Configuration: a TOML file (`config.example.toml` documents every key) plus `PACKRAT_<SECTION>_<KEY>`
//! environment overrides, validated once at start.
//!
//! Every key is declared once, in [`keys`] (name, kind, default, parser); the
//! schema check, the environment overrides and the defaults all come from
//! there. Loading has two stages:
//! 1. the file is parsed and checked against the declared keys, so unknown
//!    keys and wrong types are reported with their dotted path;
//! 2. `build` layers defaults < file < environment per key, runs each key's
//!    parser ([`values`]), checks the rules between keys, compiles the
//!    forwarding globs and resolves the upstream token.
//!
//! Every error names the file (or "environment"), the key and the reason;
//! the binary turns it into exit code 2 before binding any port.
//! [`env`](mod@env) lists every environment variable that is read.

mod build;
pub mod env;
pub mod keys;
#[cfg(test)]
mod tests;
pub mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::auth::secret::Secret;
pub use crate::gitlab::ProjectRef;
use keys::SchemaError;
pub use values::parse_size;

// ---------------------------------------------------------------------------
// The validated configuration

/// The validated configuration. Build it with [`Config::load`]; every field
/// has already been checked, so users never re-validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub forwarding: ForwardingConfig,
    pub go: GoConfig,
    pub offline: OfflineConfig,
    /// The file loaded, if any.
    pub source: Option<PathBuf>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `None` unless set explicitly (`""` also means unset); see
    /// [`Config::public_url_for`]. When set: an http(s) URL without trailing `/`.
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body: u64,
    /// PEM certificate chain; `None` when empty. Set together with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; `None` when empty. Set together with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// sha256 of the tokens that may read `/-/pins`; empty: the endpoint is off.
    pub ops_tokens: Vec<[u8; 32]>,
    /// A connection that starts no request within this long is closed (silent sockets,
    /// half-sent heads, a bare h2 preface).
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight is closed after this long (keep-alive, idle h2).
    pub idle_timeout: Duration,
    /// Open connections at most (capped by the process's open-file limit); at the limit a
    /// new connection evicts the longest-idle one.
    pub max_connections: usize,
    /// How long an operator page login lasts (the session is ended sooner by logging out).
    pub ui_session_ttl: Duration,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub dir: PathBuf,
    /// gc target, bytes.
    pub max_size: u64,
    /// In-memory (moka) cache budget, bytes.
    pub memory_cache: u64,
    /// Where verified blobs live.
    pub backend: StorageBackend,
    /// `[storage.s3]`: used when `backend` is `S3` (checked complete then).
    pub s3: S3Config,
}

/// `storage.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    /// Everything under `storage.dir` (one node).
    Fs,
    /// Blobs and shared records in an S3-compatible bucket (N nodes); index, metadata
    /// variants and the disk tier under `storage.dir`.
    S3,
}

/// `[storage.s3]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `None`: AWS for `region`. Otherwise an http(s) URL without trailing `/`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Key prefix inside the bucket: empty or ending in `/`.
    pub prefix: String,
    /// Names of the variables holding the keys (for messages).
    pub access_key_env: String,
    pub secret_key_env: String,
    /// The keys, read at load; `None` when unset (the SDK's default chain: instance roles).
    pub access_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    /// Plain-HTTP endpoints are refused unless this is set (local test endpoints).
    pub allow_http: bool,
    /// The node's disk tier for hot blobs (LRU), bytes, under `storage.dir`.
    pub local_cache: u64,
}

/// `[upstream]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The GitLab instance, http(s), without trailing `/`.
    pub url: String,
    /// Name of the environment variable holding the token.
    pub token_env: String,
    /// The token, read at load from `token_env`; `None` when unset or empty.
    pub token: Option<Secret>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// `[cache]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub metadata_ttl: Duration,
    pub auth_ttl: Duration,
    pub stale_if_error: Duration,
    pub negative_ttl: Duration,
    /// Air-gapped: never contact any upstream.
    pub offline: bool,
}

/// `[forwarding]` and `[[forwarding.rules]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingConfig {
    /// Public npm registry; `None` = never forward npm names.
    pub npm_registry: Option<String>,
    /// Public Go module proxy; `None` = never forward Go modules.
    pub go_proxy: Option<String>,
    /// Checksum database proxied at `/go/sumdb/sum.golang.org/`.
    pub go_sumdb: String,
    /// In file order; the first match decides.
    pub rules: Vec<ForwardingRule>,
}

impl ForwardingConfig {
    /// The first rule whose glob matches `name`, if any.
    pub fn first_match(&self, name: &str) -> Option<&ForwardingRule> {
        self.rules.iter().find(|r| r.matches(name))
    }

    /// SPEC §5: a name may be looked up in a public registry only if the
    /// first matching rule says `forward = true` (no rule: never).
    pub fn may_forward(&self, name: &str) -> bool {
        self.first_match(name).is_some_and(|r| r.forward)
    }
}

/// One `[[forwarding.rules]]` entry, its glob compiled.
#[derive(Debug, Clone)]
pub struct ForwardingRule {
    /// The glob as written (TOML key `match`).
    pub pattern: String,
    pub forward: bool,
    pub matcher: globset::GlobMatcher,
}

impl ForwardingRule {
    /// Compiles `pattern`. `*` matches across `/` too, so `@acme/*` covers
    /// `@acme/ui` and `gitlab.example.com/acme/*` covers nested modules.
    pub fn new(pattern: &str, forward: bool) -> Result<ForwardingRule, values::Invalid> {
        if pattern.is_empty() {
            return Err(values::Invalid(
                "must not be empty (use \"*\" to match every name)".to_owned(),
            ));
        }
        // GitLab compares npm scopes and names case-insensitively (and GitLab paths in Go
        // module paths): so does every rule, or `@ACME/x` would slip past `@acme/*`.
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .case_insensitive(true)
            .build()
            .map_err(|e| values::Invalid(format!("invalid glob {pattern:?}: {}", e.kind())))?;
        Ok(ForwardingRule {
            pattern: pattern.to_owned(),
            forward,
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether this rule's glob matches the npm name or Go module path.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }
}

impl PartialEq for ForwardingRule {
    fn eq(&self, other: &Self) -> bool {
        // The matcher is derived from the pattern.
        self.pattern == other.pattern && self.forward == other.forward
    }
}

impl Eq for ForwardingRule {}

/// `[go]`: the module host and `[[go.modules]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoConfig {
    /// The host name GitLab puts in module paths (`go.host`; default: `upstream.url`'s host).
    pub host: String,
    pub modules: Vec<GoModuleMapping>,
}

impl GoConfig {
    /// The mapping whose prefix is the longest one covering `module`
    /// (equal to it, or followed by `/`).
    pub fn lookup(&self, module: &str) -> Option<&GoModuleMapping> {
        self.modules
            .iter()
            .filter(|m| {
                module
                    .strip_prefix(m.prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|m| m.prefix.len())
    }
}

/// Which GitLab project holds the Go modules under `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoModuleMapping {
    pub prefix: String,
    pub project: ProjectRef,
}

/// `[offline]`: who may read the mirror when `cache.offline` (`[[offline.tokens]]`), and whose
/// signature a bundle needs to be imported (`trusted_keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineConfig {
    pub tokens: Vec<OfflineToken>,
    /// Ed25519 public keys (32 bytes each) whose signature a bundle must carry to be imported;
    /// empty: bundles need no signature.
    pub trusted_keys: Vec<[u8; 32]>,
}

/// A token known by its sha256 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineToken {
    pub sha256: [u8; 32],
    /// Project ids, group paths, or `"*"`.
    pub scopes: Vec<String>,
}

impl Default for Config {
    /// Every key at its default, as [`keys`] declares it.
    fn default() -> Config {
        Config::load_with_env(None, &|_| None).unwrap_or_else(|e| {
            // The defaults are constants checked by the tests: this cannot fail.
            unreachable!("the built-in defaults are invalid: {e}")
        })
    }
}

// ---------------------------------------------------------------------------
// Errors

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Environment,
    Defaults,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Environment => f.write_str("environment"),
            Origin::Defaults => f.write_str("defaults"),
        }
    }
}

/// A configuration error: names the file (or environment), the key and the
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read file: {reason}", .file.display())]
    Read { file: PathBuf, reason: String },
    #[error("{}: TOML syntax error at line {line}, column {column}: {message}", .file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: unknown key `{key}`")]
    UnknownKey { origin: Origin, key: String },
    /// `key` is the dotted key for a file, the variable name for the environment.
    #[error("{origin}: {}: {reason}", key_label(.origin, .key))]
    Invalid {
        origin: Origin,
        key: String,
        reason: String,
    },
}

fn key_label(origin: &Origin, key: &str) -> String {
    match origin {
        Origin::Environment => key.to_owned(),
        _ => format!("key `{key}`"),
    }
}

impl ConfigError {
    /// The dotted key or environment variable at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Loading and layering

impl Config {
    /// Load from an optional file, applying `PACKRAT_<SECTION>_<KEY>` env
    /// overrides from the process environment. With no `path`, the file
    /// named by `PACKRAT_CONFIG` is loaded, if that is set and non-empty;
    /// otherwise the built-in defaults are used.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// Same as [`Config::load`], with an injectable environment lookup.
    pub fn load_with_env(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let from_env = match path {
            Some(_) => None,
            None => env(env::CONFIG)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        };
        match path.or(from_env.as_deref()) {
            None => build::build(&toml::Table::new(), None, env),
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Read {
                    file: file.to_owned(),
                    reason: io_reason(&e),
                })?;
                from_toml_str(&text, file, env)
            }
        }
    }

    /// The effective public URL: `server.public_url` if set, else derived
    /// from the bound address (`http://ip:port`, `https` when TLS is on).
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        match &self.server.public_url {
            Some(url) => url.clone(),
            None => {
                let scheme = if self.server.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{bound}")
            }
        }
    }
}

/// `io::Error`'s text without the ` (os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// Parses `text` (the content of `file`) and validates it.
fn from_toml_str(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: one_line(e.message()),
        }
    })?;
    let origin = Origin::File(file.to_owned());
    keys::check(&table).map_err(|e| match e {
        SchemaError::Unknown { key } => ConfigError::UnknownKey {
            origin: origin.clone(),
            key,
        },
        SchemaError::WrongType {
            key,
            expected,
            found,
        } => ConfigError::Invalid {
            origin: origin.clone(),
            key,
            reason: format!("expected {expected}, found {found}"),
        },
    })?;
    build::build(&table, Some(file), env)
}

/// A possibly multi-line parser message on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
