//! Every configuration key, declared once.
//!
//! A scalar key is one line of `keys!`: its dotted name, the TOML kind it takes, its
//! default and its parser. From that one table come the schema check of the file
//! ([`check`]: an unknown key or a wrong type is reported with its dotted path), the
//! `PACKRAT_<SECTION>_<KEY>` environment overrides ([`env_var`], [`overrides`]) and the list
//! of variables read. Arrays of tables (`[[forwarding.rules]]`, …) are declared in
//! [`TABLE_ARRAYS`] with their fields; they have no environment form.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use super::values::{self, Invalid, Raw};
use super::StorageBackend;

/// What a key may hold in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    /// string with a unit, or integer bytes
    Size,
    /// humantime string, or integer seconds
    Duration,
    /// integer id or string path
    Project,
    /// a whole number
    Count,
    StrArray,
}

impl Kind {
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean (true or false)",
            Kind::Size => "a size string such as \"512MiB\" or an integer number of bytes",
            Kind::Duration => "a duration string such as \"30s\" or an integer number of seconds",
            Kind::Project => "a project id (integer) or full path (string)",
            Kind::Count => "a whole number",
            Kind::StrArray => "an array of strings",
        }
    }

    fn accepts(self, value: &toml::Value) -> bool {
        use toml::Value as V;
        match (self, value) {
            (Kind::Str, V::String(_)) | (Kind::Bool, V::Boolean(_)) => true,
            (Kind::Size | Kind::Duration | Kind::Project, V::String(_) | V::Integer(_)) => true,
            (Kind::Count, V::Integer(_)) => true,
            (Kind::StrArray, V::Array(items)) => items.iter().all(|v| v.is_str()),
            _ => false,
        }
    }

    /// An environment value read as this kind: a list is comma-separated (blanks ignored),
    /// anything else is its text, parsed by the key's parser.
    pub fn raw_from_env(self, value: String) -> Raw {
        match self {
            Kind::StrArray => Raw::List(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => Raw::Str(value),
        }
    }
}

/// One scalar key, typed: where it is, what it takes, what it is when unset.
pub struct Key<T: 'static> {
    pub name: &'static str,
    pub kind: Kind,
    pub default: fn() -> T,
    pub parse: fn(Raw) -> Result<T, Invalid>,
}

/// A scalar key as the schema and the environment see it.
#[derive(Debug, Clone, Copy)]
pub struct Scalar {
    pub name: &'static str,
    pub kind: Kind,
}

macro_rules! keys {
    ($( $(#[$doc:meta])* $id:ident: $ty:ty = $name:literal, $kind:ident, $default:expr, $parse:expr; )*) => {
        $( $(#[$doc])* pub const $id: Key<$ty> = Key {
            name: $name,
            kind: Kind::$kind,
            default: || $default,
            parse: $parse,
        }; )*
        /// Every scalar key, in file order.
        pub const SCALARS: &[Scalar] = &[ $( Scalar { name: $name, kind: Kind::$kind } ),* ];
    };
}

/// The default value of `upstream.token_env`: the variable holding the upstream token. Read
/// once at load, never logged.
pub const DEFAULT_UPSTREAM_TOKEN: &str = "PACKRAT_UPSTREAM_TOKEN";

/// The defaults of `storage.s3.access_key_env` and `storage.s3.secret_key_env`: the
/// variables holding the object store's keys. Read once at load, never logged.
pub const DEFAULT_S3_ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const DEFAULT_S3_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";

keys! {
    SERVER_LISTEN: SocketAddr = "server.listen", Str,
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080)), values::listen;
    /// Unset (or `""`): derived from the bound address.
    SERVER_PUBLIC_URL: Option<String> = "server.public_url", Str, None, values::optional_url;
    SERVER_MAX_BODY: u64 = "server.max_body", Size, 512 << 20, values::size;
    SERVER_TLS_CERT: Option<PathBuf> = "server.tls_cert", Str, None, values::optional_path;
    SERVER_TLS_KEY: Option<PathBuf> = "server.tls_key", Str, None, values::optional_path;
    SERVER_OPS_TOKENS: Vec<[u8; 32]> = "server.ops_tokens", StrArray, Vec::new(), values::sha256_list;
    SERVER_HEADER_READ_TIMEOUT: Duration = "server.header_read_timeout", Duration,
        Duration::from_secs(30), values::positive_duration;
    SERVER_IDLE_TIMEOUT: Duration = "server.idle_timeout", Duration,
        Duration::from_secs(60), values::positive_duration;
    SERVER_MAX_CONNECTIONS: usize = "server.max_connections", Count, 16384, values::positive_count;
    SERVER_UI_SESSION_TTL: Duration = "server.ui_session_ttl", Duration,
        Duration::from_secs(8 * 3600), values::positive_duration;

    STORAGE_DIR: PathBuf = "storage.dir", Str, PathBuf::from("./packrat-data"), values::dir;
    STORAGE_MAX_SIZE: u64 = "storage.max_size", Size, 50 << 30, values::size;
    STORAGE_MEMORY_CACHE: u64 = "storage.memory_cache", Size, 256 << 20, values::size;
    /// Where verified blobs live: `fs` (under `storage.dir`) or `s3` (`[storage.s3]`).
    STORAGE_BACKEND: StorageBackend = "storage.backend", Str, StorageBackend::Fs,
        values::storage_backend;
    /// Required with `backend = "s3"`.
    STORAGE_S3_BUCKET: String = "storage.s3.bucket", Str, String::new(), values::text;
    /// Empty: AWS for `region`.
    STORAGE_S3_ENDPOINT: Option<String> = "storage.s3.endpoint", Str, None, values::optional_url;
    STORAGE_S3_REGION: String = "storage.s3.region", Str, "us-east-1".to_owned(), values::name;
    STORAGE_S3_PREFIX: String = "storage.s3.prefix", Str, String::new(), values::key_prefix;
    STORAGE_S3_ACCESS_KEY_ENV: String = "storage.s3.access_key_env", Str,
        DEFAULT_S3_ACCESS_KEY.to_owned(), values::var_name;
    STORAGE_S3_SECRET_KEY_ENV: String = "storage.s3.secret_key_env", Str,
        DEFAULT_S3_SECRET_KEY.to_owned(), values::var_name;
    STORAGE_S3_ALLOW_HTTP: bool = "storage.s3.allow_http", Bool, false, values::boolean;
    STORAGE_S3_LOCAL_CACHE: u64 = "storage.s3.local_cache", Size, 20 << 30, values::size;

    UPSTREAM_URL: String = "upstream.url", Str, "https://gitlab.com".to_owned(), values::http_url;
    UPSTREAM_TOKEN_ENV: String = "upstream.token_env", Str,
        DEFAULT_UPSTREAM_TOKEN.to_owned(), values::var_name;
    UPSTREAM_TIMEOUT: Duration = "upstream.timeout", Duration,
        Duration::from_secs(30), values::positive_duration;
    UPSTREAM_CONNECT_TIMEOUT: Duration = "upstream.connect_timeout", Duration,
        Duration::from_secs(5), values::positive_duration;

    CACHE_METADATA_TTL: Duration = "cache.metadata_ttl", Duration,
        Duration::from_secs(5 * 60), values::duration;
    CACHE_AUTH_TTL: Duration = "cache.auth_ttl", Duration, Duration::from_secs(60), values::duration;
    CACHE_STALE_IF_ERROR: Duration = "cache.stale_if_error", Duration,
        Duration::from_secs(7 * 24 * 3600), values::duration;
    CACHE_NEGATIVE_TTL: Duration = "cache.negative_ttl", Duration,
        Duration::from_secs(30), values::duration;
    CACHE_OFFLINE: bool = "cache.offline", Bool, false, values::boolean;

    FORWARDING_NPM_REGISTRY: Option<String> = "forwarding.npm_registry", Str, None,
        values::optional_url;
    FORWARDING_GO_PROXY: Option<String> = "forwarding.go_proxy", Str, None, values::optional_url;
    FORWARDING_GO_SUMDB: String = "forwarding.go_sumdb", Str,
        "https://sum.golang.org".to_owned(), values::http_url;

    /// Unset: `upstream.url`'s host.
    GO_HOST: Option<String> = "go.host", Str, None, values::go_host;

    OFFLINE_TRUSTED_KEYS: Vec<[u8; 32]> = "offline.trusted_keys", StrArray, Vec::new(),
        values::public_keys;
}

/// An array of tables and the fields each entry may have.
#[derive(Debug, Clone, Copy)]
pub struct TableArray {
    pub name: &'static str,
    pub fields: &'static [(&'static str, Kind)],
}

pub const TABLE_ARRAYS: &[TableArray] = &[
    TableArray {
        name: "forwarding.rules",
        fields: &[("match", Kind::Str), ("forward", Kind::Bool)],
    },
    TableArray {
        name: "go.modules",
        fields: &[("prefix", Kind::Str), ("project", Kind::Project)],
    },
    TableArray {
        name: "offline.tokens",
        fields: &[("sha256", Kind::Str), ("scopes", Kind::StrArray)],
    },
];

/// The variable that overrides `key`: `PACKRAT_` and the dotted key in upper case, `.` → `_`.
pub fn env_var(key: &str) -> String {
    format!("PACKRAT_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every override variable with the dotted key it overrides, in file order.
pub fn overrides() -> Vec<(String, &'static str)> {
    SCALARS.iter().map(|k| (env_var(k.name), k.name)).collect()
}

/// The value at a dotted key in a parsed file, if present.
pub fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Whether `key` names a section (a table holding declared keys).
fn is_section(key: &str) -> bool {
    let within = |name: &str| {
        name.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
    };
    SCALARS.iter().any(|k| within(k.name)) || TABLE_ARRAYS.iter().any(|t| within(t.name))
}

/// A schema violation, with the dotted path of the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaError {
    Unknown {
        key: String,
    },
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
}

/// Checks a parsed file against the declared keys; the first problem (in key order) wins.
pub fn check(table: &toml::Table) -> Result<(), SchemaError> {
    check_table(table, "")
}

fn check_table(table: &toml::Table, prefix: &str) -> Result<(), SchemaError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(scalar) = SCALARS.iter().find(|k| k.name == key) {
            check_value(&key, scalar.kind, value)?;
        } else if let Some(array) = TABLE_ARRAYS.iter().find(|t| t.name == key) {
            let wrong = |found| SchemaError::WrongType {
                key: key.clone(),
                expected: "an array of tables",
                found,
            };
            let toml::Value::Array(items) = value else {
                return Err(wrong(found_type(value)));
            };
            for (i, item) in items.iter().enumerate() {
                let toml::Value::Table(entry) = item else {
                    return Err(wrong(found_in_array(item)));
                };
                for (field, v) in entry {
                    let at = format!("{key}[{i}].{field}");
                    match array.fields.iter().find(|(f, _)| f == field) {
                        Some((_, kind)) => check_value(&at, *kind, v)?,
                        None => return Err(SchemaError::Unknown { key: at }),
                    }
                }
            }
        } else if is_section(&key) {
            match value {
                toml::Value::Table(inner) => check_table(inner, &key)?,
                other => {
                    return Err(SchemaError::WrongType {
                        key,
                        expected: "a table",
                        found: found_type(other),
                    })
                }
            }
        } else {
            return Err(SchemaError::Unknown { key });
        }
    }
    Ok(())
}

fn check_value(key: &str, kind: Kind, value: &toml::Value) -> Result<(), SchemaError> {
    if kind.accepts(value) {
        return Ok(());
    }
    let found = match (kind, value) {
        (Kind::StrArray, toml::Value::Array(items)) => items
            .iter()
            .find(|v| !v.is_str())
            .map_or("an array", found_in_array),
        _ => found_type(value),
    };
    Err(SchemaError::WrongType {
        key: key.to_owned(),
        expected: kind.expected(),
        found,
    })
}

fn found_in_array(item: &toml::Value) -> &'static str {
    match item.type_str() {
        "string" => "an array containing a string",
        "integer" => "an array containing an integer",
        "float" => "an array containing a float",
        "boolean" => "an array containing a boolean",
        "datetime" => "an array containing a datetime",
        "array" => "an array containing an array",
        _ => "an array containing a table",
    }
}

fn found_type(value: &toml::Value) -> &'static str {
    match value.type_str() {
        "string" => "a string",
        "integer" => "an integer",
        "float" => "a float",
        "boolean" => "a boolean",
        "datetime" => "a datetime",
        "table" => "a table",
        "array" => "an array",
        _ => "a value of another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        match s.parse() {
            Ok(t) => t,
            Err(e) => panic!("bad test TOML: {e}"),
        }
    }

    #[test]
    fn schema_accepts_known_keys() {
        let t = table(
            r#"
            [server]
            listen = "x"
            max_body = 5
            [[forwarding.rules]]
            match = "*"
            forward = true
            [[go.modules]]
            prefix = "a"
            project = "g/p"
            [[offline.tokens]]
            sha256 = "ab"
            scopes = ["*"]
            "#,
        );
        assert_eq!(check(&t), Ok(()));
    }

    #[test]
    fn schema_names_wrong_types() {
        let t = table("[server]\nlisten = 8080\n");
        assert_eq!(
            check(&t),
            Err(SchemaError::WrongType {
                key: "server.listen".into(),
                expected: "a string",
                found: "an integer",
            })
        );
        let t = table("[[offline.tokens]]\nsha256 = \"x\"\nscopes = [\"a\", 1]\n");
        assert_eq!(
            check(&t),
            Err(SchemaError::WrongType {
                key: "offline.tokens[0].scopes".into(),
                expected: "an array of strings",
                found: "an array containing an integer",
            })
        );
        let t = table("server = 1\n");
        assert!(matches!(check(&t), Err(SchemaError::WrongType { key, .. }) if key == "server"));
    }

    #[test]
    fn unknown_keys_are_named_by_their_dotted_path() {
        for (text, key) in [
            ("[server]\nlistn = \"x\"\n", "server.listn"),
            ("[nope]\n", "nope"),
            (
                "[[forwarding.rules]]\nmach = \"*\"\n",
                "forwarding.rules[0].mach",
            ),
        ] {
            assert_eq!(
                check(&table(text)),
                Err(SchemaError::Unknown { key: key.into() })
            );
        }
    }

    #[test]
    fn every_variable_is_the_key_in_upper_case() {
        assert_eq!(env_var("server.listen"), "PACKRAT_SERVER_LISTEN");
        assert_eq!(env_var("cache.offline"), "PACKRAT_CACHE_OFFLINE");
        assert_eq!(overrides().len(), SCALARS.len());
    }
}
