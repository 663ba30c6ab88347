//! Every environment variable packrat reads, in one place.
//!
//! Each scalar key of the configuration file can be overridden by
//! `PACKRAT_<SECTION>_<KEY>` (upper case); the environment beats the file.
//! Arrays of tables (`[[forwarding.rules]]`, `[[go.modules]]`,
//! `[[offline.tokens]]`) have no environment form.
//!
//! Only the names listed here are ever consulted, so other `PACKRAT_*`
//! variables (for example the upstream token itself) are never mistaken for
//! unknown configuration keys.

/// Names the configuration file when `--config` is not given.
pub const CONFIG: &str = "PACKRAT_CONFIG";

/// The default value of `upstream.token_env`: the variable holding the
/// upstream token. Read once at load, never logged.
pub const DEFAULT_UPSTREAM_TOKEN: &str = "PACKRAT_UPSTREAM_TOKEN";

// [server]
pub const SERVER_LISTEN: &str = "PACKRAT_SERVER_LISTEN";
pub const SERVER_PUBLIC_URL: &str = "PACKRAT_SERVER_PUBLIC_URL";
pub const SERVER_MAX_BODY: &str = "PACKRAT_SERVER_MAX_BODY";
pub const SERVER_TLS_CERT: &str = "PACKRAT_SERVER_TLS_CERT";
pub const SERVER_TLS_KEY: &str = "PACKRAT_SERVER_TLS_KEY";
/// Comma-separated sha256 hex digests.
pub const SERVER_OPS_TOKENS: &str = "PACKRAT_SERVER_OPS_TOKENS";
pub const SERVER_HEADER_READ_TIMEOUT: &str = "PACKRAT_SERVER_HEADER_READ_TIMEOUT";
pub const SERVER_IDLE_TIMEOUT: &str = "PACKRAT_SERVER_IDLE_TIMEOUT";

// [storage]
pub const STORAGE_DIR: &str = "PACKRAT_STORAGE_DIR";
pub const STORAGE_MAX_SIZE: &str = "PACKRAT_STORAGE_MAX_SIZE";
pub const STORAGE_MEMORY_CACHE: &str = "PACKRAT_STORAGE_MEMORY_CACHE";

// [upstream]
pub const UPSTREAM_URL: &str = "PACKRAT_UPSTREAM_URL";
pub const UPSTREAM_TOKEN_ENV: &str = "PACKRAT_UPSTREAM_TOKEN_ENV";
pub const UPSTREAM_TIMEOUT: &str = "PACKRAT_UPSTREAM_TIMEOUT";
pub const UPSTREAM_CONNECT_TIMEOUT: &str = "PACKRAT_UPSTREAM_CONNECT_TIMEOUT";

// [cache]
pub const CACHE_METADATA_TTL: &str = "PACKRAT_CACHE_METADATA_TTL";
pub const CACHE_AUTH_TTL: &str = "PACKRAT_CACHE_AUTH_TTL";
pub const CACHE_STALE_IF_ERROR: &str = "PACKRAT_CACHE_STALE_IF_ERROR";
pub const CACHE_NEGATIVE_TTL: &str = "PACKRAT_CACHE_NEGATIVE_TTL";
pub const CACHE_OFFLINE: &str = "PACKRAT_CACHE_OFFLINE";

// [forwarding]
pub const FORWARDING_NPM_REGISTRY: &str = "PACKRAT_FORWARDING_NPM_REGISTRY";
pub const FORWARDING_GO_PROXY: &str = "PACKRAT_FORWARDING_GO_PROXY";
pub const FORWARDING_GO_SUMDB: &str = "PACKRAT_FORWARDING_GO_SUMDB";

// [go]
pub const GO_HOST: &str = "PACKRAT_GO_HOST";

// [offline]
/// Comma-separated `ed25519:<base64>` public keys.
pub const OFFLINE_TRUSTED_KEYS: &str = "PACKRAT_OFFLINE_TRUSTED_KEYS";

/// Every override variable with the dotted key it overrides, in file order.
pub const OVERRIDES: &[(&str, &str)] = &[
    (SERVER_LISTEN, "server.listen"),
    (SERVER_PUBLIC_URL, "server.public_url"),
    (SERVER_MAX_BODY, "server.max_body"),
    (SERVER_TLS_CERT, "server.tls_cert"),
    (SERVER_TLS_KEY, "server.tls_key"),
    (SERVER_OPS_TOKENS, "server.ops_tokens"),
    (SERVER_HEADER_READ_TIMEOUT, "server.header_read_timeout"),
    (SERVER_IDLE_TIMEOUT, "server.idle_timeout"),
    (STORAGE_DIR, "storage.dir"),
    (STORAGE_MAX_SIZE, "storage.max_size"),
    (STORAGE_MEMORY_CACHE, "storage.memory_cache"),
    (UPSTREAM_URL, "upstream.url"),
    (UPSTREAM_TOKEN_ENV, "upstream.token_env"),
    (UPSTREAM_TIMEOUT, "upstream.timeout"),
    (UPSTREAM_CONNECT_TIMEOUT, "upstream.connect_timeout"),
    (CACHE_METADATA_TTL, "cache.metadata_ttl"),
    (CACHE_AUTH_TTL, "cache.auth_ttl"),
    (CACHE_STALE_IF_ERROR, "cache.stale_if_error"),
    (CACHE_NEGATIVE_TTL, "cache.negative_ttl"),
    (CACHE_OFFLINE, "cache.offline"),
    (FORWARDING_NPM_REGISTRY, "forwarding.npm_registry"),
    (FORWARDING_GO_PROXY, "forwarding.go_proxy"),
    (FORWARDING_GO_SUMDB, "forwarding.go_sumdb"),
    (GO_HOST, "go.host"),
    (OFFLINE_TRUSTED_KEYS, "offline.trusted_keys"),
];

/// Every variable packrat reads (the token variable only under its default
/// name: `upstream.token_env` may name another one).
pub const ALL: &[&str] = &[
    CONFIG,
    DEFAULT_UPSTREAM_TOKEN,
    SERVER_LISTEN,
    SERVER_PUBLIC_URL,
    SERVER_MAX_BODY,
    SERVER_TLS_CERT,
    SERVER_TLS_KEY,
    SERVER_OPS_TOKENS,
    SERVER_HEADER_READ_TIMEOUT,
    SERVER_IDLE_TIMEOUT,
    STORAGE_DIR,
    STORAGE_MAX_SIZE,
    STORAGE_MEMORY_CACHE,
    UPSTREAM_URL,
    UPSTREAM_TOKEN_ENV,
    UPSTREAM_TIMEOUT,
    UPSTREAM_CONNECT_TIMEOUT,
    CACHE_METADATA_TTL,
    CACHE_AUTH_TTL,
    CACHE_STALE_IF_ERROR,
    CACHE_NEGATIVE_TTL,
    CACHE_OFFLINE,
    FORWARDING_NPM_REGISTRY,
    FORWARDING_GO_PROXY,
    FORWARDING_GO_SUMDB,
    GO_HOST,
    OFFLINE_TRUSTED_KEYS,
];
