//! Stage one: the configuration file exactly as written.
//!
//! [`RawConfig`] mirrors the TOML with every key optional and
//! `deny_unknown_fields` as a backstop. Before it is deserialized, [`check`]
//! walks the parsed table against [`SCHEMA`] so that an unknown key or a value
//! of the wrong TOML type is reported with its dotted path
//! (`forwarding.rules[1].mach`), which serde alone cannot do.
//! Stage two (validation into `Config`) lives in `mod.rs`.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub forwarding: RawForwarding,
    #[serde(default)]
    pub go: RawGo,
    #[serde(default)]
    pub offline: RawOffline,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub max_body: Option<RawNumber>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub ops_tokens: Option<Vec<String>>,
    pub header_read_timeout: Option<RawNumber>,
    pub idle_timeout: Option<RawNumber>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub dir: Option<String>,
    pub max_size: Option<RawNumber>,
    pub memory_cache: Option<RawNumber>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub token_env: Option<String>,
    pub timeout: Option<RawNumber>,
    pub connect_timeout: Option<RawNumber>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub metadata_ttl: Option<RawNumber>,
    pub auth_ttl: Option<RawNumber>,
    pub stale_if_error: Option<RawNumber>,
    pub negative_ttl: Option<RawNumber>,
    pub offline: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    pub npm_registry: Option<String>,
    pub go_proxy: Option<String>,
    pub go_sumdb: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    pub forward: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGo {
    pub host: Option<String>,
    #[serde(default)]
    pub modules: Vec<RawGoModule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGoModule {
    pub prefix: Option<String>,
    pub project: Option<RawProject>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOffline {
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    pub trusted_keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub sha256: Option<String>,
    pub scopes: Option<Vec<String>>,
}

/// A size or a duration: a string with a unit, or a bare TOML integer
/// (bytes, respectively seconds).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawNumber {
    Int(i64),
    Str(String),
}

/// `project = 42` or `project = "group/sub/proj"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawProject {
    Id(i64),
    Path(String),
}

// ---------------------------------------------------------------------------
// Schema: the known keys and their TOML types.

/// What a key may hold.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Bool,
    /// string with a unit, or integer bytes
    Size,
    /// humantime string, or integer seconds
    Duration,
    /// integer id or string path
    Project,
    StrArray,
    Table(&'static [Field]),
    TableArray(&'static [Field]),
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean (true or false)",
            Kind::Size => "a size string such as \"512MiB\" or an integer number of bytes",
            Kind::Duration => "a duration string such as \"30s\" or an integer number of seconds",
            Kind::Project => "a project id (integer) or full path (string)",
            Kind::StrArray => "an array of strings",
            Kind::Table(_) => "a table",
            Kind::TableArray(_) => "an array of tables",
        }
    }

    fn accepts(self, value: &toml::Value) -> bool {
        use toml::Value as V;
        match (self, value) {
            (Kind::Str, V::String(_)) | (Kind::Bool, V::Boolean(_)) => true,
            (Kind::Size | Kind::Duration | Kind::Project, V::String(_) | V::Integer(_)) => true,
            (Kind::StrArray, V::Array(items)) => items.iter().all(|v| v.is_str()),
            (Kind::Table(_), V::Table(_)) => true,
            (Kind::TableArray(_), V::Array(items)) => items.iter().all(|v| v.is_table()),
            _ => false,
        }
    }
}

/// One known key.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

const SERVER: &[Field] = &[
    f("listen", Kind::Str),
    f("public_url", Kind::Str),
    f("max_body", Kind::Size),
    f("tls_cert", Kind::Str),
    f("tls_key", Kind::Str),
    f("ops_tokens", Kind::StrArray),
    f("header_read_timeout", Kind::Duration),
    f("idle_timeout", Kind::Duration),
];
const STORAGE: &[Field] = &[
    f("dir", Kind::Str),
    f("max_size", Kind::Size),
    f("memory_cache", Kind::Size),
];
const UPSTREAM: &[Field] = &[
    f("url", Kind::Str),
    f("token_env", Kind::Str),
    f("timeout", Kind::Duration),
    f("connect_timeout", Kind::Duration),
];
const CACHE: &[Field] = &[
    f("metadata_ttl", Kind::Duration),
    f("auth_ttl", Kind::Duration),
    f("stale_if_error", Kind::Duration),
    f("negative_ttl", Kind::Duration),
    f("offline", Kind::Bool),
];
const RULE: &[Field] = &[f("match", Kind::Str), f("forward", Kind::Bool)];
const FORWARDING: &[Field] = &[
    f("npm_registry", Kind::Str),
    f("go_proxy", Kind::Str),
    f("go_sumdb", Kind::Str),
    f("rules", Kind::TableArray(RULE)),
];
const GO_MODULE: &[Field] = &[f("prefix", Kind::Str), f("project", Kind::Project)];
const GO: &[Field] = &[
    f("host", Kind::Str),
    f("modules", Kind::TableArray(GO_MODULE)),
];
const TOKEN: &[Field] = &[f("sha256", Kind::Str), f("scopes", Kind::StrArray)];
const OFFLINE: &[Field] = &[
    f("tokens", Kind::TableArray(TOKEN)),
    f("trusted_keys", Kind::StrArray),
];

/// The whole file.
pub const SCHEMA: &[Field] = &[
    f("server", Kind::Table(SERVER)),
    f("storage", Kind::Table(STORAGE)),
    f("upstream", Kind::Table(UPSTREAM)),
    f("cache", Kind::Table(CACHE)),
    f("forwarding", Kind::Table(FORWARDING)),
    f("go", Kind::Table(GO)),
    f("offline", Kind::Table(OFFLINE)),
];

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

/// Checks `table` against [`SCHEMA`]; the first problem (in key order) wins.
pub fn check(table: &toml::Table) -> Result<(), SchemaError> {
    check_table(table, SCHEMA, "")
}

fn check_table(table: &toml::Table, fields: &[Field], prefix: &str) -> Result<(), SchemaError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(field) = fields.iter().find(|f| f.name == name) else {
            return Err(SchemaError::Unknown { key });
        };
        if !field.kind.accepts(value) {
            return Err(SchemaError::WrongType {
                key,
                expected: field.kind.expected(),
                found: found_type(field.kind, value),
            });
        }
        match (field.kind, value) {
            (Kind::Table(inner), toml::Value::Table(t)) => check_table(t, inner, &key)?,
            (Kind::TableArray(inner), toml::Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        check_table(t, inner, &format!("{key}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Names what was found; for arrays, the type of the offending element.
fn found_type(kind: Kind, value: &toml::Value) -> &'static str {
    if let toml::Value::Array(items) = value {
        let bad = items.iter().find(|v| match kind {
            Kind::StrArray => !v.is_str(),
            Kind::TableArray(_) => !v.is_table(),
            _ => false,
        });
        return match bad {
            Some(v) => match v.type_str() {
                "string" => "an array containing a string",
                "integer" => "an array containing an integer",
                "float" => "an array containing a float",
                "boolean" => "an array containing a boolean",
                "datetime" => "an array containing a datetime",
                "array" => "an array containing an array",
                _ => "an array containing a table",
            },
            None => "an array",
        };
    }
    match value.type_str() {
        "string" => "a string",
        "integer" => "an integer",
        "float" => "a float",
        "boolean" => "a boolean",
        "datetime" => "a datetime",
        "table" => "a table",
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
    fn raw_deserializes_untagged_numbers() {
        let t = table("[server]\nmax_body = 10\n[storage]\nmax_size = \"1GiB\"\n");
        let raw: RawConfig = match t.try_into() {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(raw.server.max_body, Some(RawNumber::Int(10)));
        assert_eq!(raw.storage.max_size, Some(RawNumber::Str("1GiB".into())));
    }
}
