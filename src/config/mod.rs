//! Configuration: a TOML file (SPEC §2) plus `PACKRAT_<SECTION>_<KEY>`
//! environment overrides, validated once at start.
//!
//! Two stages (STYLE lesson 11):
//! 1. [`raw`] parses the file into a serde mirror, after checking every key
//!    against a schema so unknown keys and wrong types are reported with
//!    their dotted path;
//! 2. [`Config::load_with_env`] layers defaults < file < environment in one
//!    place, parses sizes and durations, checks URLs and addresses, compiles
//!    the forwarding globs and resolves the upstream token.
//!
//! Every error names the file (or "environment"), the key and the reason;
//! the binary turns it into exit code 2 before binding any port.
//! [`env`](mod@env) lists every environment variable that is read.

pub mod env;
mod raw;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::gitlab::ProjectRef;
use raw::{RawConfig, RawNumber, RawProject, SchemaError};

// ---------------------------------------------------------------------------
// Defaults (SPEC §1, §2)

/// `server.listen` default.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
/// `server.max_body` default: 512 MiB.
pub const DEFAULT_MAX_BODY: u64 = 512 << 20;
/// `storage.dir` default.
pub const DEFAULT_STORAGE_DIR: &str = "./packrat-data";
/// `storage.max_size` default: 50 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 50 << 30;
/// `storage.memory_cache` default: 256 MiB.
pub const DEFAULT_MEMORY_CACHE: u64 = 256 << 20;
/// `upstream.url` default.
pub const DEFAULT_UPSTREAM_URL: &str = "https://gitlab.com";
/// `upstream.timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `server.header_read_timeout` default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `server.idle_timeout` default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `upstream.connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `cache.metadata_ttl` default.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(5 * 60);
/// `cache.auth_ttl` default.
pub const DEFAULT_AUTH_TTL: Duration = Duration::from_secs(60);
/// `cache.stale_if_error` default.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(7 * 24 * 3600);
/// `cache.negative_ttl` default.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// `forwarding.go_sumdb` default.
pub const DEFAULT_GO_SUMDB: &str = "https://sum.golang.org";

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
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub dir: PathBuf,
    /// gc target, bytes.
    pub max_size: u64,
    /// In-memory (moka) cache budget, bytes.
    pub memory_cache: u64,
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
    pub fn new(pattern: &str, forward: bool) -> Result<ForwardingRule, String> {
        if pattern.is_empty() {
            return Err("must not be empty (use \"*\" to match every name)".to_owned());
        }
        // GitLab compares npm scopes and names case-insensitively (and GitLab paths in Go
        // module paths): so does every rule, or `@ACME/x` would slip past `@acme/*`.
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("invalid glob {pattern:?}: {}", e.kind()))?;
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

/// A secret string: `Debug` and `Display` print `****`; read it with
/// [`Secret::expose`] only where it is sent.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl PartialEq for Secret {
    /// Constant time in the length of the shorter value.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl Default for Config {
    fn default() -> Config {
        Config {
            server: ServerConfig {
                listen: DEFAULT_LISTEN,
                public_url: None,
                max_body: DEFAULT_MAX_BODY,
                tls_cert: None,
                tls_key: None,
                ops_tokens: Vec::new(),
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
            },
            storage: StorageConfig {
                dir: PathBuf::from(DEFAULT_STORAGE_DIR),
                max_size: DEFAULT_MAX_SIZE,
                memory_cache: DEFAULT_MEMORY_CACHE,
            },
            upstream: UpstreamConfig {
                url: DEFAULT_UPSTREAM_URL.to_owned(),
                token_env: env::DEFAULT_UPSTREAM_TOKEN.to_owned(),
                token: None,
                timeout: DEFAULT_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            },
            cache: CacheConfig {
                metadata_ttl: DEFAULT_METADATA_TTL,
                auth_ttl: DEFAULT_AUTH_TTL,
                stale_if_error: DEFAULT_STALE_IF_ERROR,
                negative_ttl: DEFAULT_NEGATIVE_TTL,
                offline: false,
            },
            forwarding: ForwardingConfig {
                npm_registry: None,
                go_proxy: None,
                go_sumdb: DEFAULT_GO_SUMDB.to_owned(),
                rules: Vec::new(),
            },
            go: GoConfig {
                host: url_host(DEFAULT_UPSTREAM_URL),
                modules: Vec::new(),
            },
            offline: OfflineConfig::default(),
            source: None,
        }
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
            None => build(RawConfig::default(), None, env),
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
    raw::check(&table).map_err(|e| match e {
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
    // Backstop: the schema check above should make this infallible.
    let raw: RawConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            origin: origin.clone(),
            key: "(file)".to_owned(),
            reason: one_line(e.message()),
        })?;
    build(raw, Some(file), env)
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

/// Where one value came from, for error messages.
struct Provenance {
    origin: Origin,
    /// dotted key (file) or variable name (environment)
    key: String,
}

impl Provenance {
    fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            key: self.key.clone(),
            reason: reason.into(),
        }
    }
}

/// A raw value as it arrives from the environment.
trait FromEnv: Sized {
    fn from_env(value: String) -> Result<Self, String>;
}

impl FromEnv for String {
    fn from_env(value: String) -> Result<Self, String> {
        Ok(value)
    }
}

impl FromEnv for RawNumber {
    fn from_env(value: String) -> Result<Self, String> {
        Ok(RawNumber::Str(value))
    }
}

/// A list from the environment: comma-separated, blanks ignored.
impl FromEnv for Vec<String> {
    fn from_env(value: String) -> Result<Self, String> {
        Ok(value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

impl FromEnv for bool {
    fn from_env(value: String) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!(
                "invalid boolean {value:?} (expected true or false)"
            )),
        }
    }
}

/// The layering: defaults < file < environment, in one place.
struct Layers<'a> {
    file: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Layers<'_> {
    fn in_file(&self, key: String) -> Provenance {
        Provenance {
            origin: self
                .file
                .map_or(Origin::Defaults, |f| Origin::File(f.to_owned())),
            key,
        }
    }

    /// The value of one scalar key: from `var` if set, else from the file,
    /// else `default`; converted by `conv`, whose error names the source.
    fn scalar<R: FromEnv, T>(
        &self,
        key: &str,
        var: &'static str,
        file: Option<R>,
        default: T,
        conv: impl FnOnce(R) -> Result<T, String>,
    ) -> Result<(T, Option<Provenance>), ConfigError> {
        let (raw, prov) = if let Some(value) = (self.env)(var) {
            let prov = Provenance {
                origin: Origin::Environment,
                key: var.to_owned(),
            };
            (R::from_env(value).map_err(|r| prov.error(r))?, prov)
        } else if let Some(value) = file {
            (value, self.in_file(key.to_owned()))
        } else {
            return Ok((default, None));
        };
        let value = conv(raw).map_err(|r| prov.error(r))?;
        Ok((value, Some(prov)))
    }

    /// [`Layers::scalar`] without the provenance.
    fn value<R: FromEnv, T>(
        &self,
        key: &str,
        var: &'static str,
        file: Option<R>,
        default: T,
        conv: impl FnOnce(R) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.scalar(key, var, file, default, conv).map(|(v, _)| v)
    }
}

/// Stage two: validate `raw` (from `file`, if any) with the environment on top.
fn build(
    raw: RawConfig,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let l = Layers { file, env };
    let d = Config::default();

    let s = raw.server;
    let (tls_cert, cert_prov) = l.scalar(
        "server.tls_cert",
        env::SERVER_TLS_CERT,
        s.tls_cert,
        None,
        |v| Ok(optional_path(v)),
    )?;
    let (tls_key, key_prov) = l.scalar(
        "server.tls_key",
        env::SERVER_TLS_KEY,
        s.tls_key,
        None,
        |v| Ok(optional_path(v)),
    )?;
    match (&tls_cert, &tls_key, &cert_prov, &key_prov) {
        (Some(_), None, Some(p), _) => {
            return Err(
                p.error("is set but `server.tls_key` is empty; set both (HTTPS) or neither (HTTP)")
            )
        }
        (None, Some(_), _, Some(p)) => {
            return Err(p.error(
                "is set but `server.tls_cert` is empty; set both (HTTPS) or neither (HTTP)",
            ))
        }
        _ => {}
    }
    let server = ServerConfig {
        listen: l.value(
            "server.listen",
            env::SERVER_LISTEN,
            s.listen,
            d.server.listen,
            |v| parse_listen(&v),
        )?,
        public_url: l.value(
            "server.public_url",
            env::SERVER_PUBLIC_URL,
            s.public_url,
            None,
            |v| optional_url(&v),
        )?,
        max_body: l.value(
            "server.max_body",
            env::SERVER_MAX_BODY,
            s.max_body,
            d.server.max_body,
            size_value,
        )?,
        tls_cert,
        tls_key,
        ops_tokens: l.value(
            "server.ops_tokens",
            env::SERVER_OPS_TOKENS,
            s.ops_tokens,
            Vec::new(),
            |v| {
                v.iter()
                    .enumerate()
                    .map(|(i, h)| parse_sha256(h).map_err(|r| format!("entry {i}: {r}")))
                    .collect()
            },
        )?,
        header_read_timeout: l.value(
            "server.header_read_timeout",
            env::SERVER_HEADER_READ_TIMEOUT,
            s.header_read_timeout,
            d.server.header_read_timeout,
            positive_duration,
        )?,
        idle_timeout: l.value(
            "server.idle_timeout",
            env::SERVER_IDLE_TIMEOUT,
            s.idle_timeout,
            d.server.idle_timeout,
            positive_duration,
        )?,
    };

    let s = raw.storage;
    let storage = StorageConfig {
        dir: l.value("storage.dir", env::STORAGE_DIR, s.dir, d.storage.dir, |v| {
            if v.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(PathBuf::from(v))
            }
        })?,
        max_size: l.value(
            "storage.max_size",
            env::STORAGE_MAX_SIZE,
            s.max_size,
            d.storage.max_size,
            size_value,
        )?,
        memory_cache: l.value(
            "storage.memory_cache",
            env::STORAGE_MEMORY_CACHE,
            s.memory_cache,
            d.storage.memory_cache,
            size_value,
        )?,
    };

    let s = raw.upstream;
    let token_env = l.value(
        "upstream.token_env",
        env::UPSTREAM_TOKEN_ENV,
        s.token_env,
        d.upstream.token_env,
        |v| check_var_name(&v).map(|()| v),
    )?;
    let token = env(&token_env)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let upstream = UpstreamConfig {
        url: l.value(
            "upstream.url",
            env::UPSTREAM_URL,
            s.url,
            d.upstream.url,
            |v| parse_http_url(&v),
        )?,
        token_env,
        token,
        timeout: l.value(
            "upstream.timeout",
            env::UPSTREAM_TIMEOUT,
            s.timeout,
            d.upstream.timeout,
            positive_duration,
        )?,
        connect_timeout: l.value(
            "upstream.connect_timeout",
            env::UPSTREAM_CONNECT_TIMEOUT,
            s.connect_timeout,
            d.upstream.connect_timeout,
            positive_duration,
        )?,
    };

    let s = raw.cache;
    let cache = CacheConfig {
        metadata_ttl: l.value(
            "cache.metadata_ttl",
            env::CACHE_METADATA_TTL,
            s.metadata_ttl,
            d.cache.metadata_ttl,
            duration_value,
        )?,
        auth_ttl: l.value(
            "cache.auth_ttl",
            env::CACHE_AUTH_TTL,
            s.auth_ttl,
            d.cache.auth_ttl,
            duration_value,
        )?,
        stale_if_error: l.value(
            "cache.stale_if_error",
            env::CACHE_STALE_IF_ERROR,
            s.stale_if_error,
            d.cache.stale_if_error,
            duration_value,
        )?,
        negative_ttl: l.value(
            "cache.negative_ttl",
            env::CACHE_NEGATIVE_TTL,
            s.negative_ttl,
            d.cache.negative_ttl,
            duration_value,
        )?,
        offline: l.value(
            "cache.offline",
            env::CACHE_OFFLINE,
            s.offline,
            d.cache.offline,
            Ok,
        )?,
    };

    let s = raw.forwarding;
    let mut rules = Vec::with_capacity(s.rules.len());
    for (i, rule) in s.rules.into_iter().enumerate() {
        let at = |k: &str| l.in_file(format!("forwarding.rules[{i}].{k}"));
        let pattern = rule
            .pattern
            .ok_or_else(|| at("match").error("missing (every rule needs `match` and `forward`)"))?;
        let forward = rule.forward.ok_or_else(|| {
            at("forward").error("missing (every rule needs `match` and `forward`)")
        })?;
        rules.push(ForwardingRule::new(&pattern, forward).map_err(|r| at("match").error(r))?);
    }
    let forwarding = ForwardingConfig {
        npm_registry: l.value(
            "forwarding.npm_registry",
            env::FORWARDING_NPM_REGISTRY,
            s.npm_registry,
            None,
            |v| optional_url(&v),
        )?,
        go_proxy: l.value(
            "forwarding.go_proxy",
            env::FORWARDING_GO_PROXY,
            s.go_proxy,
            None,
            |v| optional_url(&v),
        )?,
        go_sumdb: l.value(
            "forwarding.go_sumdb",
            env::FORWARDING_GO_SUMDB,
            s.go_sumdb,
            d.forwarding.go_sumdb,
            |v| parse_http_url(&v),
        )?,
        rules,
    };

    let go_host = l
        .value("go.host", env::GO_HOST, raw.go.host, None, |v| {
            // Go requires the first element of a module path to be lower case.
            check_go_host(&v).map(|()| Some(v.to_ascii_lowercase()))
        })?
        .unwrap_or_else(|| url_host(&upstream.url));
    let mut modules: Vec<GoModuleMapping> = Vec::with_capacity(raw.go.modules.len());
    for (i, m) in raw.go.modules.into_iter().enumerate() {
        let at = |k: &str| l.in_file(format!("go.modules[{i}].{k}"));
        let prefix = m.prefix.ok_or_else(|| {
            at("prefix").error("missing (every entry needs `prefix` and `project`)")
        })?;
        check_module_prefix(&prefix).map_err(|r| at("prefix").error(r))?;
        if let Some(j) = modules.iter().position(|m| m.prefix == prefix) {
            return Err(at("prefix").error(format!(
                "duplicate prefix {prefix:?} (already mapped by go.modules[{j}])"
            )));
        }
        let project = match m.project {
            None => {
                return Err(
                    at("project").error("missing (every entry needs `prefix` and `project`)")
                )
            }
            Some(RawProject::Id(id)) => match u64::try_from(id) {
                Ok(id) if id > 0 => ProjectRef::Id(id),
                _ => {
                    return Err(
                        at("project").error(format!("invalid project id {id}: must be positive"))
                    )
                }
            },
            Some(RawProject::Path(p)) => {
                ProjectRef::parse(&p).map_err(|r| at("project").error(r))?
            }
        };
        modules.push(GoModuleMapping { prefix, project });
    }

    let mut tokens = Vec::with_capacity(raw.offline.tokens.len());
    for (i, t) in raw.offline.tokens.into_iter().enumerate() {
        let at = |k: &str| l.in_file(format!("offline.tokens[{i}].{k}"));
        let hex = t.sha256.ok_or_else(|| {
            at("sha256").error("missing (every token needs `sha256` and `scopes`)")
        })?;
        let sha256 = parse_sha256(&hex).map_err(|r| at("sha256").error(r))?;
        let scopes = t.scopes.ok_or_else(|| {
            at("scopes").error("missing (every token needs `sha256` and `scopes`)")
        })?;
        if scopes.is_empty() {
            return Err(at("scopes")
                .error("must list at least one scope (project ids, group paths, or \"*\")"));
        }
        for (j, scope) in scopes.iter().enumerate() {
            check_scope(scope).map_err(|r| at(&format!("scopes[{j}]")).error(r))?;
        }
        tokens.push(OfflineToken { sha256, scopes });
    }

    let trusted_keys = l.value(
        "offline.trusted_keys",
        env::OFFLINE_TRUSTED_KEYS,
        raw.offline.trusted_keys,
        Vec::new(),
        |v: Vec<String>| {
            v.iter()
                .enumerate()
                .map(|(i, k)| {
                    crate::signing::parse_public_key(k).map_err(|r| format!("entry {i}: {r}"))
                })
                .collect()
        },
    )?;

    Ok(Config {
        server,
        storage,
        upstream,
        cache,
        forwarding,
        go: GoConfig {
            host: go_host,
            modules,
        },
        offline: OfflineConfig {
            tokens,
            trusted_keys,
        },
        source: file.map(Path::to_owned),
    })
}

// ---------------------------------------------------------------------------
// Value parsers

/// Parses a size: `"512MiB"`, `"50GiB"`, `"10MB"`, `"1.5GiB"`, `"1024"`, `"0"`.
/// Units (case-insensitive): B, KB/KiB, MB/MiB, GB/GiB, TB/TiB, where KB = 1000
/// and KiB = 1024; no unit means bytes. Fractions are rounded down to a byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {s:?} (expected e.g. \"512MiB\", \"50GiB\")");
    let too_large = || format!("invalid size {s:?}: too large");
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("invalid size {s:?}: must not be negative"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return Err(invalid());
    }
    // Only digits remain, so a parse failure is an overflow.
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let mut total = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        if multiplier == 1 {
            return Err(format!(
                "invalid size {s:?}: a number of bytes must be whole"
            ));
        }
        // At most 18 digits: below 10^18 * 2^40 < 2^128.
        let fraction = &fraction[..fraction.len().min(18)];
        let numerator: u128 = fraction.parse().map_err(|_| invalid())?;
        let scale = 10u128.pow(fraction.len() as u32);
        let extra =
            u64::try_from(numerator * u128::from(multiplier) / scale).map_err(|_| too_large())?;
        total = total.checked_add(extra).ok_or_else(too_large)?;
    }
    Ok(total)
}

/// Parses a duration: humantime (`"30s"`, `"5m"`, `"7d"`, `"1h30m"`), or a
/// bare integer number of seconds (`"0"` allowed).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration {s:?}: too large"));
    }
    if t.starts_with('-') {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. \"30s\", \"5m\", \"7d\")"))
}

fn size_value(v: RawNumber) -> Result<u64, String> {
    match v {
        RawNumber::Int(n) => {
            u64::try_from(n).map_err(|_| format!("invalid size {n}: must not be negative"))
        }
        RawNumber::Str(s) => parse_size(&s),
    }
}

fn duration_value(v: RawNumber) -> Result<Duration, String> {
    match v {
        RawNumber::Int(n) => u64::try_from(n)
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration {n}: must not be negative")),
        RawNumber::Str(s) => parse_duration(&s),
    }
}

fn positive_duration(v: RawNumber) -> Result<Duration, String> {
    let d = duration_value(v)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "invalid listen address {s:?} (expected ip:port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"
        )
    })
}

fn optional_path(v: String) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn optional_url(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    parse_http_url(v).map(Some)
}

/// Checks an absolute http(s) URL; returns it with a lower-case scheme and
/// no trailing `/`. Paths are allowed (GitLab under a relative URL), query,
/// fragment and user credentials are not.
fn parse_http_url(s: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("invalid URL {s:?}: {why}"));
    if s.is_empty() {
        return bad("must not be empty");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return bad("expected an http:// or https:// URL");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return bad("the scheme must be http or https");
    }
    if rest.contains(['?', '#']) {
        return bad("must not contain a query or fragment");
    }
    let rest = rest.trim_end_matches('/');
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return bad("must not contain user credentials");
    }
    if let Err(why) = check_authority(authority) {
        return bad(&why);
    }
    Ok(format!("{scheme}://{authority}{path}"))
}

fn check_authority(authority: &str) -> Result<(), String> {
    let port = if let Some(inner) = authority.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err("unclosed '[' in host".to_owned());
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address [{v6}]"));
        }
        match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| "unexpected characters after ']'".to_owned())?,
            ),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("missing host".to_owned());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(format!("invalid host {host:?}"));
        }
        port
    };
    match port {
        Some(p)
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || p.parse::<u16>().is_err() =>
        {
            Err(format!("invalid port {p:?}"))
        }
        _ => Ok(()),
    }
}

fn check_var_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must name an environment variable".to_owned());
    }
    if name.contains(['=', '\0']) || name.chars().any(char::is_whitespace) {
        return Err(format!("invalid environment variable name {name:?}"));
    }
    Ok(())
}

/// The host (without port) of a URL already checked by [`parse_http_url`].
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    host.to_ascii_lowercase()
}

/// `go.host`: a bare host name as module paths start with it.
fn check_go_host(host: &str) -> Result<(), String> {
    let why = if host.is_empty() {
        "must not be empty"
    } else if host.contains("://") {
        "a module host has no scheme (e.g. \"gitlab.example.com\")"
    } else if host.contains('/') {
        "must be a host name only, without '/'"
    } else if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace"
    } else {
        return Ok(());
    };
    Err(format!("invalid module host {host:?}: {why}"))
}

fn check_module_prefix(prefix: &str) -> Result<(), String> {
    let why = if prefix.is_empty() {
        "must not be empty"
    } else if prefix.contains("://") {
        "a module path has no scheme (e.g. \"gitlab.example.com/acme\")"
    } else if prefix.starts_with('/') || prefix.ends_with('/') {
        "must not start or end with '/'"
    } else if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace"
    } else {
        return Ok(());
    };
    Err(format!("invalid module prefix {prefix:?}: {why}"))
}

/// 64 hex characters. The value is never echoed: a token pasted here by
/// mistake must not reach the logs.
fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(format!(
            "expected 64 hex characters (the sha256 of the token), found {} characters",
            hex.chars().count()
        ));
    }
    hex::decode_to_slice(hex, &mut out).map_err(|_| {
        "expected 64 hex characters (the sha256 of the token), found a non-hex character".to_owned()
    })?;
    Ok(out)
}

fn check_scope(scope: &str) -> Result<(), String> {
    let why = if scope.is_empty() {
        "must not be empty"
    } else if scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace"
    } else if scope != "*" && (scope.starts_with('/') || scope.ends_with('/')) {
        "must not start or end with '/'"
    } else {
        return Ok(());
    };
    Err(format!(
        "invalid scope {scope:?}: {why} (expected a project id, a group path, or \"*\")"
    ))
}
