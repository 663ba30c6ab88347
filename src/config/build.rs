//! Stage two: the checked file (or nothing) with the environment on top, into a [`Config`].
//! Each scalar key is read through its declaration in [`super::keys`] (defaults < file <
//! environment, one place); then the rules between keys and the arrays of tables.

use std::path::Path;

use super::keys::{self, Key};
use super::values::{self, Raw};
use super::*;

/// Where one value came from, for error messages.
pub(super) struct Provenance {
    origin: Origin,
    /// dotted key (file) or variable name (environment)
    key: String,
}

impl Provenance {
    pub(super) fn error(&self, reason: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            key: self.key.clone(),
            reason: reason.to_string(),
        }
    }
}

/// The layering: defaults < file < environment.
struct Layers<'a> {
    table: &'a toml::Table,
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

    /// The value of one scalar key and where it came from (`None`: its default).
    fn scalar<T>(&self, key: &Key<T>) -> Result<(T, Option<Provenance>), ConfigError> {
        let var = keys::env_var(key.name);
        let (raw, prov) = if let Some(value) = (self.env)(&var) {
            let prov = Provenance {
                origin: Origin::Environment,
                key: var,
            };
            (key.kind.raw_from_env(value), prov)
        } else if let Some(value) = keys::lookup(self.table, key.name) {
            (Raw::from_toml(value), self.in_file(key.name.to_owned()))
        } else {
            return Ok(((key.default)(), None));
        };
        let value = (key.parse)(raw).map_err(|r| prov.error(r))?;
        Ok((value, Some(prov)))
    }

    fn get<T>(&self, key: &Key<T>) -> Result<T, ConfigError> {
        self.scalar(key).map(|(v, _)| v)
    }

    /// The entries of an array of tables (already checked against its fields).
    fn entries(&self, name: &str) -> Vec<&toml::Table> {
        keys::lookup(self.table, name)
            .and_then(toml::Value::as_array)
            .map(|items| items.iter().filter_map(toml::Value::as_table).collect())
            .unwrap_or_default()
    }
}

pub(super) fn build(
    table: &toml::Table,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let l = Layers { table, file, env };

    let (tls_cert, cert_prov) = l.scalar(&keys::SERVER_TLS_CERT)?;
    let (tls_key, key_prov) = l.scalar(&keys::SERVER_TLS_KEY)?;
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
        listen: l.get(&keys::SERVER_LISTEN)?,
        public_url: l.get(&keys::SERVER_PUBLIC_URL)?,
        max_body: l.get(&keys::SERVER_MAX_BODY)?,
        tls_cert,
        tls_key,
        ops_tokens: l.get(&keys::SERVER_OPS_TOKENS)?,
        header_read_timeout: l.get(&keys::SERVER_HEADER_READ_TIMEOUT)?,
        idle_timeout: l.get(&keys::SERVER_IDLE_TIMEOUT)?,
        max_connections: l.get(&keys::SERVER_MAX_CONNECTIONS)?,
        ui_session_ttl: l.get(&keys::SERVER_UI_SESSION_TTL)?,
    };

    let backend = l.get(&keys::STORAGE_BACKEND)?;
    let storage = StorageConfig {
        dir: l.get(&keys::STORAGE_DIR)?,
        max_size: l.get(&keys::STORAGE_MAX_SIZE)?,
        memory_cache: l.get(&keys::STORAGE_MEMORY_CACHE)?,
        backend,
        s3: s3(&l, env, backend)?,
    };

    let token_env = l.get(&keys::UPSTREAM_TOKEN_ENV)?;
    let token = env(&token_env)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let upstream = UpstreamConfig {
        url: l.get(&keys::UPSTREAM_URL)?,
        token_env,
        token,
        timeout: l.get(&keys::UPSTREAM_TIMEOUT)?,
        connect_timeout: l.get(&keys::UPSTREAM_CONNECT_TIMEOUT)?,
    };

    let cache = CacheConfig {
        metadata_ttl: l.get(&keys::CACHE_METADATA_TTL)?,
        auth_ttl: l.get(&keys::CACHE_AUTH_TTL)?,
        stale_if_error: l.get(&keys::CACHE_STALE_IF_ERROR)?,
        negative_ttl: l.get(&keys::CACHE_NEGATIVE_TTL)?,
        offline: l.get(&keys::CACHE_OFFLINE)?,
    };

    let forwarding = ForwardingConfig {
        npm_registry: l.get(&keys::FORWARDING_NPM_REGISTRY)?,
        go_proxy: l.get(&keys::FORWARDING_GO_PROXY)?,
        go_sumdb: l.get(&keys::FORWARDING_GO_SUMDB)?,
        rules: rules(&l)?,
    };

    let go = GoConfig {
        host: l
            .get(&keys::GO_HOST)?
            .unwrap_or_else(|| values::url_host(&upstream.url)),
        modules: go_modules(&l)?,
    };

    let offline = OfflineConfig {
        tokens: offline_tokens(&l)?,
        trusted_keys: l.get(&keys::OFFLINE_TRUSTED_KEYS)?,
    };

    Ok(Config {
        server,
        storage,
        upstream,
        cache,
        forwarding,
        go,
        offline,
        source: file.map(Path::to_owned),
    })
}

/// `[storage.s3]`, checked complete when `storage.backend = "s3"`.
fn s3(
    l: &Layers<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    backend: StorageBackend,
) -> Result<S3Config, ConfigError> {
    let key = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    let access_key_env = l.get(&keys::STORAGE_S3_ACCESS_KEY_ENV)?;
    let secret_key_env = l.get(&keys::STORAGE_S3_SECRET_KEY_ENV)?;
    let c = S3Config {
        bucket: l.get(&keys::STORAGE_S3_BUCKET)?,
        endpoint: l.get(&keys::STORAGE_S3_ENDPOINT)?,
        region: l.get(&keys::STORAGE_S3_REGION)?,
        prefix: l.get(&keys::STORAGE_S3_PREFIX)?,
        access_key: key(&access_key_env),
        secret_key: key(&secret_key_env),
        access_key_env,
        secret_key_env,
        allow_http: l.get(&keys::STORAGE_S3_ALLOW_HTTP)?,
        local_cache: l.get(&keys::STORAGE_S3_LOCAL_CACHE)?,
    };
    if backend != StorageBackend::S3 {
        return Ok(c);
    }
    if c.bucket.trim().is_empty() {
        return Err(at(l, &keys::STORAGE_S3_BUCKET)?
            .error("must name the bucket when `storage.backend = \"s3\"`"));
    }
    if let Some(e) = &c.endpoint {
        if e.starts_with("http://") && !c.allow_http {
            return Err(at(l, &keys::STORAGE_S3_ENDPOINT)?.error(
                "is plain http; use https, or set `storage.s3.allow_http = true` for a local test endpoint",
            ));
        }
    }
    if c.access_key.is_some() != c.secret_key.is_some() {
        let (set, unset) = if c.access_key.is_some() {
            (&c.access_key_env, &c.secret_key_env)
        } else {
            (&c.secret_key_env, &c.access_key_env)
        };
        return Err(at(l, &keys::STORAGE_S3_ACCESS_KEY_ENV)?.error(format!(
            "the variable {set} is set but {unset} is not; set both, or neither (instance credentials)"
        )));
    }
    Ok(c)
}

/// Where a key's value came from (its default: the file, for the message).
fn at<T>(l: &Layers<'_>, k: &Key<T>) -> Result<Provenance, ConfigError> {
    Ok(l.scalar(k)?
        .1
        .unwrap_or_else(|| l.in_file(k.name.to_owned())))
}

fn field(entry: &toml::Table, name: &str) -> Option<Raw> {
    entry.get(name).map(Raw::from_toml)
}

/// `[[forwarding.rules]]`, in file order.
fn rules(l: &Layers<'_>) -> Result<Vec<ForwardingRule>, ConfigError> {
    let mut rules = Vec::new();
    for (i, entry) in l.entries("forwarding.rules").into_iter().enumerate() {
        let at = |k: &str| l.in_file(format!("forwarding.rules[{i}].{k}"));
        let missing = "missing (every rule needs `match` and `forward`)";
        let pattern = match field(entry, "match") {
            Some(Raw::Str(p)) => p,
            _ => return Err(at("match").error(missing)),
        };
        let forward = match field(entry, "forward") {
            Some(Raw::Bool(b)) => b,
            _ => return Err(at("forward").error(missing)),
        };
        rules.push(ForwardingRule::new(&pattern, forward).map_err(|r| at("match").error(r))?);
    }
    Ok(rules)
}

/// `[[go.modules]]`: prefixes unique, projects by id or path.
fn go_modules(l: &Layers<'_>) -> Result<Vec<GoModuleMapping>, ConfigError> {
    let mut modules: Vec<GoModuleMapping> = Vec::new();
    for (i, entry) in l.entries("go.modules").into_iter().enumerate() {
        let at = |k: &str| l.in_file(format!("go.modules[{i}].{k}"));
        let missing = "missing (every entry needs `prefix` and `project`)";
        let prefix = match field(entry, "prefix") {
            Some(Raw::Str(p)) => p,
            _ => return Err(at("prefix").error(missing)),
        };
        values::check_module_prefix(&prefix).map_err(|r| at("prefix").error(r))?;
        if let Some(j) = modules.iter().position(|m| m.prefix == prefix) {
            return Err(at("prefix").error(format!(
                "duplicate prefix {prefix:?} (already mapped by go.modules[{j}])"
            )));
        }
        let project = match field(entry, "project") {
            Some(Raw::Int(id)) => match u64::try_from(id) {
                Ok(id) if id > 0 => ProjectRef::Id(id),
                _ => {
                    return Err(
                        at("project").error(format!("invalid project id {id}: must be positive"))
                    )
                }
            },
            Some(Raw::Str(p)) => ProjectRef::parse(&p).map_err(|r| at("project").error(r))?,
            _ => return Err(at("project").error(missing)),
        };
        modules.push(GoModuleMapping { prefix, project });
    }
    Ok(modules)
}

/// `[[offline.tokens]]`: who may read the mirror, by token hash.
fn offline_tokens(l: &Layers<'_>) -> Result<Vec<OfflineToken>, ConfigError> {
    let mut tokens = Vec::new();
    for (i, entry) in l.entries("offline.tokens").into_iter().enumerate() {
        let at = |k: &str| l.in_file(format!("offline.tokens[{i}].{k}"));
        let missing = "missing (every token needs `sha256` and `scopes`)";
        let hex = match field(entry, "sha256") {
            Some(Raw::Str(h)) => h,
            _ => return Err(at("sha256").error(missing)),
        };
        let sha256 = values::parse_sha256(&hex).map_err(|r| at("sha256").error(r))?;
        let scopes = match field(entry, "scopes") {
            Some(Raw::List(s)) => s,
            _ => return Err(at("scopes").error(missing)),
        };
        if scopes.is_empty() {
            return Err(at("scopes")
                .error("must list at least one scope (project ids, group paths, or \"*\")"));
        }
        for (j, scope) in scopes.iter().enumerate() {
            values::check_scope(scope).map_err(|r| at(&format!("scopes[{j}]")).error(r))?;
        }
        tokens.push(OfflineToken { sha256, scopes });
    }
    Ok(tokens)
}
