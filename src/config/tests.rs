use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{self, Kind, SCALARS, TABLE_ARRAYS};
use super::values::{parse_duration, Invalid};
use super::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/config").join(name)
}

/// Parses `text` as if read from `config.toml`.
fn parse_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    from_toml_str(text, Path::new("config.toml"), env)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, &no_env)
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn env_err(vars: &[(&str, &str)]) -> String {
    match Config::load_with_env(None, &env_of(vars)) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn load_env(path: Option<&Path>, vars: &[(&str, &str)]) -> Config {
    match Config::load_with_env(path, &env_of(vars)) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

// ---------------------------------------------------------------------------
// sizes and durations

#[test]
fn sizes_parse() {
    let cases: &[(&str, u64)] = &[
        ("0", 0),
        ("1024", 1024),
        ("512MiB", 512 * MIB),
        ("50GiB", 50 * GIB),
        ("10MB", 10_000_000),
        ("1.5GiB", 3 * GIB / 2),
        ("1.5KB", 1500),
        ("2TiB", 2 * TIB),
        ("3TB", 3_000_000_000_000),
        ("7B", 7),
        ("1KiB", KIB),
        ("1kb", 1000),
        ("512mib", 512 * MIB),
        ("512 MiB", 512 * MIB),
        ("  64KiB ", 64 * KIB),
        ("0.5KiB", 512),
        ("18446744073709551615", u64::MAX),
        ("16777215.999999999999999999999TiB", u64::MAX),
    ];
    for (input, want) in cases {
        assert_eq!(parse_size(input), Ok(*want), "input {input:?}");
    }
}

#[test]
fn sizes_reject() {
    let cases: &[(&str, &str)] = &[
        (
            "lots",
            "invalid size \"lots\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "",
            "invalid size \"\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "MiB",
            "invalid size \"MiB\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        ("-1", "invalid size \"-1\": must not be negative"),
        ("-5MiB", "invalid size \"-5MiB\": must not be negative"),
        (
            "1.5",
            "invalid size \"1.5\": a number of bytes must be whole",
        ),
        (
            "1.GiB",
            "invalid size \"1.GiB\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            ".5GiB",
            "invalid size \".5GiB\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "1e3",
            "invalid size \"1e3\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "5XB",
            "invalid size \"5XB\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "5M",
            "invalid size \"5M\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "1.2.3MiB",
            "invalid size \"1.2.3MiB\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "18446744073709551616",
            "invalid size \"18446744073709551616\": too large",
        ),
        ("99999999TiB", "invalid size \"99999999TiB\": too large"),
        ("16777216TiB", "invalid size \"16777216TiB\": too large"),
        ("18446744.08TB", "invalid size \"18446744.08TB\": too large"),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_size(input),
            Err(Invalid((*want).to_owned())),
            "input {input:?}"
        );
    }
}

#[test]
fn durations_parse() {
    let cases: &[(&str, u64)] = &[
        ("0", 0),
        ("45", 45),
        ("30s", 30),
        ("5m", 300),
        ("7d", 7 * 86_400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("60s", 60),
        (" 2m ", 120),
    ];
    for (input, secs) in cases {
        assert_eq!(
            parse_duration(input),
            Ok(Duration::from_secs(*secs)),
            "input {input:?}"
        );
    }
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
}

#[test]
fn durations_reject() {
    let expected =
        |s: &str| format!("invalid duration {s:?} (expected e.g. \"30s\", \"5m\", \"7d\")");
    for input in ["5x", "", "abc", "5 minutes please", "1.5.2h"] {
        assert_eq!(
            parse_duration(input),
            Err(Invalid(expected(input))),
            "input {input:?}"
        );
    }
    assert_eq!(
        parse_duration("-5s"),
        Err(Invalid(
            "invalid duration \"-5s\": must not be negative".to_owned()
        ))
    );
    assert_eq!(
        parse_duration("99999999999999999999"),
        Err(Invalid(
            "invalid duration \"99999999999999999999\": too large".to_owned()
        ))
    );
}

#[test]
fn toml_integers_are_bytes_and_seconds() {
    let c = ok("[server]\nmax_body = 1024\n[cache]\nmetadata_ttl = 90\n");
    assert_eq!(c.server.max_body, 1024);
    assert_eq!(c.cache.metadata_ttl, Duration::from_secs(90));
    assert_eq!(
        err("[server]\nmax_body = -1\n"),
        "config.toml: key `server.max_body`: invalid size -1: must not be negative"
    );
    assert_eq!(
        err("[cache]\nauth_ttl = -1\n"),
        "config.toml: key `cache.auth_ttl`: invalid duration -1: must not be negative"
    );
}

// ---------------------------------------------------------------------------
// defaults and the example file

#[test]
fn defaults_match_spec() {
    let d = Config::default();
    assert_eq!(
        d.server.listen,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)
    );
    assert_eq!(d.server.public_url, None);
    assert_eq!(d.server.max_body, 512 * MIB);
    assert_eq!(
        (d.server.tls_cert.as_ref(), d.server.tls_key.as_ref()),
        (None, None)
    );
    assert_eq!(d.storage.dir, PathBuf::from("./packrat-data"));
    assert_eq!(d.storage.max_size, 50 * GIB);
    assert_eq!(d.storage.memory_cache, 256 * MIB);
    assert_eq!(d.upstream.url, "https://gitlab.com");
    assert_eq!(d.upstream.token_env, "PACKRAT_UPSTREAM_TOKEN");
    assert_eq!(d.upstream.token, None);
    assert_eq!(d.upstream.timeout, Duration::from_secs(30));
    assert_eq!(d.upstream.connect_timeout, Duration::from_secs(5));
    assert_eq!(d.cache.metadata_ttl, Duration::from_secs(300));
    assert_eq!(d.cache.auth_ttl, Duration::from_secs(60));
    assert_eq!(d.cache.stale_if_error, Duration::from_secs(7 * 86_400));
    assert_eq!(d.cache.negative_ttl, Duration::from_secs(30));
    assert!(!d.cache.offline);
    assert_eq!(d.forwarding.npm_registry, None);
    assert_eq!(d.forwarding.go_proxy, None);
    assert_eq!(d.forwarding.go_sumdb, "https://sum.golang.org");
    assert!(d.forwarding.rules.is_empty());
    assert!(d.go.modules.is_empty());
    assert!(d.offline.tokens.is_empty());
    assert_eq!(d.source, None);
}

#[test]
fn no_file_no_env_gives_defaults() {
    assert_eq!(load_env(None, &[]), Config::default());
    let mut c = ok("");
    assert_eq!(c.source.as_deref(), Some(Path::new("config.toml")));
    c.source = None;
    assert_eq!(c, Config::default());
}

#[test]
fn example_file_equals_defaults() {
    let path = root().join("config.example.toml");
    let mut c = load_env(Some(&path), &[]);
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    c.source = None;
    assert_eq!(c, Config::default());
}

/// Every key of the schema appears in the example, set or commented out.
#[test]
fn example_file_documents_every_key() {
    let text = match std::fs::read_to_string(root().join("config.example.toml")) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let mut missing = Vec::new();
    let set_or_commented = |name: &str| {
        text.lines().any(|l| {
            let l = l.trim_start_matches("# ");
            l.starts_with(&format!("{name} = "))
        })
    };
    for key in SCALARS {
        let (section, name) = key.name.rsplit_once('.').unwrap_or(("", key.name));
        let header =
            text.contains(&format!("[{section}]")) || text.contains(&format!("[[{section}."));
        if !header || !set_or_commented(name) {
            missing.push(key.name.to_owned());
        }
    }
    for array in TABLE_ARRAYS {
        if !text.contains(&format!("# [[{}]]", array.name)) {
            missing.push(array.name.to_owned());
        }
        for (field, _) in array.fields {
            if !set_or_commented(field) {
                missing.push(format!("{}.{field}", array.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in config.example.toml: {missing:?}"
    );
}

/// The commented-out examples in config.example.toml are valid as written.
#[test]
fn example_file_commented_sections_parse() {
    let text = match std::fs::read_to_string(root().join("config.example.toml")) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with("[[")
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty()
                            && k.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => line,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let c = ok(&uncommented);
    assert_eq!(c.forwarding.rules.len(), 2);
    assert!(!c.forwarding.may_forward("@acme/ui"));
    assert!(c.forwarding.may_forward("left-pad"));
    assert_eq!(c.go.modules.len(), 1);
    assert_eq!(c.go.modules[0].project, ProjectRef::Id(42));
    assert_eq!(c.offline.tokens.len(), 1);
    assert_eq!(c.offline.tokens[0].scopes, vec!["*".to_owned()]);
}

#[test]
fn full_fixture_parses() {
    let path = fixture("full.toml");
    let c = load_env(Some(&path), &[("GITLAB_TOKEN", "glpat-secret")]);
    assert_eq!(c.source.as_deref(), Some(path.as_path()));

    assert_eq!(
        c.server.listen,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443)
    );
    assert_eq!(
        c.server.public_url.as_deref(),
        Some("https://packrat.example.com")
    );
    assert_eq!(c.server.max_body, GIB);
    assert_eq!(
        c.server.tls_cert,
        Some(PathBuf::from("/etc/packrat/cert.pem"))
    );
    assert_eq!(
        c.server.tls_key,
        Some(PathBuf::from("/etc/packrat/key.pem"))
    );

    assert_eq!(c.storage.dir, PathBuf::from("/var/lib/packrat"));
    assert_eq!(c.storage.max_size, 3 * TIB / 2);
    assert_eq!(c.storage.memory_cache, MIB);

    assert_eq!(c.upstream.url, "https://gitlab.example.com");
    assert_eq!(c.upstream.token_env, "GITLAB_TOKEN");
    assert_eq!(
        c.upstream.token.as_ref().map(Secret::expose),
        Some("glpat-secret")
    );
    assert_eq!(c.upstream.timeout, Duration::from_secs(60));
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(3));

    assert_eq!(c.cache.metadata_ttl, Duration::from_secs(600));
    assert_eq!(c.cache.auth_ttl, Duration::from_secs(120));
    assert_eq!(c.cache.stale_if_error, Duration::from_secs(14 * 86_400));
    assert_eq!(c.cache.negative_ttl, Duration::from_secs(5400));
    assert!(c.cache.offline);

    assert_eq!(
        c.forwarding.npm_registry.as_deref(),
        Some("https://registry.npmjs.org")
    );
    assert_eq!(
        c.forwarding.go_proxy.as_deref(),
        Some("https://proxy.golang.org")
    );
    assert_eq!(c.forwarding.go_sumdb, "https://sum.golang.org");
    let rules: Vec<(&str, bool)> = c
        .forwarding
        .rules
        .iter()
        .map(|r| (r.pattern.as_str(), r.forward))
        .collect();
    assert_eq!(
        rules,
        [
            ("@acme/*", false),
            ("gitlab.example.com/acme/*", false),
            ("*", true)
        ]
    );

    assert_eq!(
        c.go.modules,
        vec![
            GoModuleMapping {
                prefix: "gitlab.example.com/acme".into(),
                project: ProjectRef::Id(42),
            },
            GoModuleMapping {
                prefix: "gitlab.example.com/acme/tools".into(),
                project: ProjectRef::Path("acme/sub/tools".into()),
            },
        ]
    );

    assert_eq!(c.offline.tokens.len(), 2);
    assert_eq!(
        hex::encode(c.offline.tokens[0].sha256),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
    assert_eq!(c.offline.tokens[0].scopes, ["*"]);
    assert_eq!(
        hex::encode(c.offline.tokens[1].sha256),
        "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
    );
    assert_eq!(c.offline.tokens[1].scopes, ["42", "acme/platform"]);

    // Debug never shows the token.
    let debug = format!("{c:?}");
    assert!(!debug.contains("glpat-secret"), "{debug}");
    assert!(debug.contains("Some(****)"), "{debug}");
}

// ---------------------------------------------------------------------------
// environment

#[test]
fn env_var_names_follow_the_pattern_and_cover_every_scalar_key() {
    let scalar_keys: Vec<&str> = SCALARS.iter().map(|k| k.name).collect();
    let overrides = keys::overrides();
    let listed: Vec<&str> = overrides.iter().map(|(_, k)| *k).collect();
    assert_eq!(listed, scalar_keys);
    let all = env::all();
    for (var, key) in &overrides {
        assert_eq!(
            *var,
            format!("PACKRAT_{}", key.replace('.', "_").to_uppercase())
        );
        assert!(all.contains(var), "{var} missing from env::all()");
    }
    assert!(all.contains(&"PACKRAT_CONFIG".to_owned()));
    assert_eq!(all.len(), overrides.len() + 4);
    // Scalars only: an array of tables has no environment form.
    assert!(SCALARS
        .iter()
        .all(|k| !TABLE_ARRAYS.iter().any(|t| t.name == k.name)));
    assert!(SCALARS.iter().any(|k| k.kind == Kind::StrArray));
}

#[test]
fn every_override_is_consulted_and_nothing_else() {
    let asked = RefCell::new(Vec::<String>::new());
    let lookup = |k: &str| {
        asked.borrow_mut().push(k.to_owned());
        None
    };
    if let Err(e) = Config::load_with_env(None, &lookup) {
        panic!("{e}");
    }
    let mut asked = asked.into_inner();
    asked.sort();
    let mut want: Vec<String> = env::all();
    want.sort();
    assert_eq!(asked, want);
}

#[test]
fn env_overrides_every_scalar_key() {
    let vars: &[(&str, &str)] = &[
        ("PACKRAT_SERVER_LISTEN", "[::1]:9000"),
        (
            "PACKRAT_SERVER_PUBLIC_URL",
            "https://cache.example.com/npm/",
        ),
        ("PACKRAT_SERVER_MAX_BODY", "1MiB"),
        ("PACKRAT_SERVER_TLS_CERT", "c.pem"),
        ("PACKRAT_SERVER_TLS_KEY", "k.pem"),
        (
            "PACKRAT_SERVER_OPS_TOKENS",
            " 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 ,",
        ),
        ("PACKRAT_STORAGE_DIR", "/data"),
        ("PACKRAT_STORAGE_MAX_SIZE", "1TB"),
        ("PACKRAT_STORAGE_MEMORY_CACHE", "0"),
        ("PACKRAT_UPSTREAM_URL", "http://gitlab.internal:8080"),
        ("PACKRAT_UPSTREAM_TOKEN_ENV", "MY_TOKEN"),
        ("MY_TOKEN", "  tok  "),
        ("PACKRAT_UPSTREAM_TIMEOUT", "2m"),
        ("PACKRAT_UPSTREAM_CONNECT_TIMEOUT", "1"),
        ("PACKRAT_CACHE_METADATA_TTL", "0"),
        ("PACKRAT_CACHE_AUTH_TTL", "1h"),
        ("PACKRAT_CACHE_STALE_IF_ERROR", "30d"),
        ("PACKRAT_CACHE_NEGATIVE_TTL", "10s"),
        ("PACKRAT_CACHE_OFFLINE", "true"),
        (
            "PACKRAT_FORWARDING_NPM_REGISTRY",
            "https://registry.npmjs.org",
        ),
        ("PACKRAT_FORWARDING_GO_PROXY", "https://proxy.golang.org/"),
        ("PACKRAT_FORWARDING_GO_SUMDB", "https://sumdb.example.com"),
        ("PACKRAT_GO_HOST", "git.example.com"),
    ];
    let c = load_env(None, vars);
    assert_eq!(
        c.server.listen,
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 9000)
    );
    assert_eq!(
        c.server.public_url.as_deref(),
        Some("https://cache.example.com/npm")
    );
    assert_eq!(c.server.max_body, MIB);
    assert_eq!(c.server.tls_cert, Some(PathBuf::from("c.pem")));
    assert_eq!(c.server.tls_key, Some(PathBuf::from("k.pem")));
    // sha256("test")
    assert_eq!(c.server.ops_tokens.len(), 1);
    assert_eq!(c.server.ops_tokens[0][..2], [0x9f, 0x86]);
    assert_eq!(c.storage.dir, PathBuf::from("/data"));
    assert_eq!(c.storage.max_size, 1_000_000_000_000);
    assert_eq!(c.storage.memory_cache, 0);
    assert_eq!(c.upstream.url, "http://gitlab.internal:8080");
    assert_eq!(c.upstream.token_env, "MY_TOKEN");
    assert_eq!(c.upstream.token, Some(Secret::new("tok".into())));
    assert_eq!(c.upstream.timeout, Duration::from_secs(120));
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.cache.metadata_ttl, Duration::ZERO);
    assert_eq!(c.cache.auth_ttl, Duration::from_secs(3600));
    assert_eq!(c.cache.stale_if_error, Duration::from_secs(30 * 86_400));
    assert_eq!(c.cache.negative_ttl, Duration::from_secs(10));
    assert!(c.cache.offline);
    assert_eq!(
        c.forwarding.npm_registry.as_deref(),
        Some("https://registry.npmjs.org")
    );
    assert_eq!(
        c.forwarding.go_proxy.as_deref(),
        Some("https://proxy.golang.org")
    );
    assert_eq!(c.forwarding.go_sumdb, "https://sumdb.example.com");
    assert_eq!(c.go.host, "git.example.com");
    assert_eq!(c.source, None);
}

/// `go.host` defaults to upstream.url's host (no port), and is a bare host name.
#[test]
fn go_host_defaults_to_the_upstream_host() {
    assert_eq!(Config::default().go.host, "gitlab.com");
    let c = ok("[upstream]\nurl = \"http://GitLab.Internal:8080/sub\"\n");
    assert_eq!(c.go.host, "gitlab.internal");
    let c = ok("[upstream]\nurl = \"http://[::1]:8080\"\n");
    assert_eq!(c.go.host, "::1");
    let c = ok("[upstream]\nurl = \"http://127.0.0.1:9\"\n[go]\nhost = \"gitlab.example.com\"\n");
    assert_eq!(c.go.host, "gitlab.example.com");
    for bad in [
        "",
        "https://gitlab.example.com",
        "gitlab.example.com/acme",
        "a b",
    ] {
        let e = err(&format!("[go]\nhost = {bad:?}\n"));
        assert!(
            e.starts_with("config.toml: key `go.host`: invalid module host"),
            "{e}"
        );
    }
}

#[test]
fn env_beats_file_and_file_beats_defaults() {
    let text = "[upstream]\nurl = \"https://file.example.com\"\ntimeout = \"10s\"\n\
                [cache]\noffline = true\n[server]\ntls_cert = \"c\"\ntls_key = \"k\"\n";
    let c = ok(text);
    assert_eq!(c.upstream.url, "https://file.example.com");
    assert_eq!(c.upstream.timeout, Duration::from_secs(10));
    assert_eq!(
        c.upstream.connect_timeout,
        (keys::UPSTREAM_CONNECT_TIMEOUT.default)()
    );
    assert!(c.cache.offline);

    let env = env_of(&[
        ("PACKRAT_UPSTREAM_URL", "https://env.example.com"),
        ("PACKRAT_CACHE_OFFLINE", "false"),
        // An empty value is a value: it clears what the file set.
        ("PACKRAT_SERVER_TLS_CERT", ""),
        ("PACKRAT_SERVER_TLS_KEY", ""),
    ]);
    let c = match parse_with(text, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.upstream.url, "https://env.example.com");
    assert_eq!(c.upstream.timeout, Duration::from_secs(10));
    assert!(!c.cache.offline);
    assert_eq!(c.server.tls_cert, None);
    assert_eq!(c.server.tls_key, None);
}

#[test]
fn env_booleans() {
    for (v, want) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("on", true),
    ] {
        assert_eq!(
            load_env(None, &[("PACKRAT_CACHE_OFFLINE", v)])
                .cache
                .offline,
            want,
            "{v}"
        );
    }
    for v in ["false", "0", "no", "off", "False"] {
        assert!(
            !load_env(None, &[("PACKRAT_CACHE_OFFLINE", v)])
                .cache
                .offline,
            "{v}"
        );
    }
    assert_eq!(
        env_err(&[("PACKRAT_CACHE_OFFLINE", "maybe")]),
        "environment: PACKRAT_CACHE_OFFLINE: invalid boolean \"maybe\" (expected true or false)"
    );
}

#[test]
fn env_errors_name_the_variable() {
    assert_eq!(
        env_err(&[("PACKRAT_STORAGE_MAX_SIZE", "lots")]),
        "environment: PACKRAT_STORAGE_MAX_SIZE: invalid size \"lots\" (expected e.g. \"512MiB\", \"50GiB\")"
    );
    assert_eq!(
        env_err(&[("PACKRAT_CACHE_STALE_IF_ERROR", "forever")]),
        "environment: PACKRAT_CACHE_STALE_IF_ERROR: invalid duration \"forever\" (expected e.g. \"30s\", \"5m\", \"7d\")"
    );
    assert_eq!(
        env_err(&[("PACKRAT_UPSTREAM_URL", "gitlab.com")]),
        "environment: PACKRAT_UPSTREAM_URL: invalid URL \"gitlab.com\": expected an http:// or https:// URL"
    );
    assert_eq!(
        env_err(&[("PACKRAT_SERVER_TLS_KEY", "key.pem")]),
        "environment: PACKRAT_SERVER_TLS_KEY: is set but `server.tls_cert` is empty; set both (HTTPS) or neither (HTTP)"
    );
    // The environment error wins over a valid file value, and names the env var.
    let e = parse_with(
        "[server]\nlisten = \"127.0.0.1:1\"\n",
        &env_of(&[("PACKRAT_SERVER_LISTEN", "localhost:80")]),
    );
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err("environment: PACKRAT_SERVER_LISTEN: invalid listen address \"localhost:80\" (expected ip:port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\")".to_owned())
    );
}

#[test]
fn config_file_from_packrat_config() {
    let path = fixture("full.toml");
    let path_str = path.to_string_lossy().into_owned();
    let c = load_env(None, &[("PACKRAT_CONFIG", path_str.as_str())]);
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    assert!(c.cache.offline);
    // An explicit path wins over PACKRAT_CONFIG.
    let example = root().join("config.example.toml");
    let c = load_env(Some(&example), &[("PACKRAT_CONFIG", path_str.as_str())]);
    assert_eq!(c.source.as_deref(), Some(example.as_path()));
    // Empty means unset.
    assert_eq!(load_env(None, &[("PACKRAT_CONFIG", "")]), Config::default());
}

#[test]
fn upstream_token() {
    assert_eq!(load_env(None, &[]).upstream.token, None);
    assert_eq!(
        load_env(None, &[("PACKRAT_UPSTREAM_TOKEN", "")])
            .upstream
            .token,
        None
    );
    let c = load_env(None, &[("PACKRAT_UPSTREAM_TOKEN", "glpat-abc")]);
    assert_eq!(
        c.upstream.token.as_ref().map(Secret::expose),
        Some("glpat-abc")
    );
    // token_env from the file names another variable; the default one is then ignored.
    let env = env_of(&[
        ("PACKRAT_UPSTREAM_TOKEN", "wrong"),
        ("CI_JOB_TOKEN", "right"),
    ]);
    let c = parse_with("[upstream]\ntoken_env = \"CI_JOB_TOKEN\"\n", &env);
    assert_eq!(
        c.ok()
            .and_then(|c| c.upstream.token)
            .map(|t| t.expose().to_owned()),
        Some("right".to_owned())
    );
    assert_eq!(
        err("[upstream]\ntoken_env = \"\"\n"),
        "config.toml: key `upstream.token_env`: must name an environment variable"
    );
    assert_eq!(
        err("[upstream]\ntoken_env = \"A=B\"\n"),
        "config.toml: key `upstream.token_env`: invalid environment variable name \"A=B\""
    );
}

#[test]
fn secret_never_prints() {
    let s = Secret::new("glpat-very-secret".into());
    assert_eq!(format!("{s}"), "****");
    assert_eq!(format!("{s:?}"), "****");
    assert_eq!(format!("{:?}", Some(s.clone())), "Some(****)");
    assert_eq!(s.expose(), "glpat-very-secret");
    assert_eq!(s, Secret::new("glpat-very-secret".into()));
    assert_ne!(s, Secret::new("glpat-very-secreT".into()));
    assert_ne!(s, Secret::new("glpat".into()));
}

// ---------------------------------------------------------------------------
// errors: file, key, reason

#[test]
fn invalid_values_name_key_and_reason() {
    let cases: &[(&str, &str)] = &[
        (
            "[cache]\nmetadata_ttl = \"5x\"\n",
            "config.toml: key `cache.metadata_ttl`: invalid duration \"5x\" (expected e.g. \"30s\", \"5m\", \"7d\")",
        ),
        (
            "[storage]\nmax_size = \"lots\"\n",
            "config.toml: key `storage.max_size`: invalid size \"lots\" (expected e.g. \"512MiB\", \"50GiB\")",
        ),
        (
            "[storage]\nmemory_cache = \"-1MiB\"\n",
            "config.toml: key `storage.memory_cache`: invalid size \"-1MiB\": must not be negative",
        ),
        (
            "[storage]\ndir = \"\"\n",
            "config.toml: key `storage.dir`: must not be empty",
        ),
        (
            "[server]\nlisten = \"localhost:8080\"\n",
            "config.toml: key `server.listen`: invalid listen address \"localhost:8080\" (expected ip:port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\")",
        ),
        (
            "[server]\nlisten = \"127.0.0.1\"\n",
            "config.toml: key `server.listen`: invalid listen address \"127.0.0.1\" (expected ip:port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\")",
        ),
        (
            "[server]\nlisten = 8080\n",
            "config.toml: key `server.listen`: expected a string, found an integer",
        ),
        (
            "[server]\npublic_url = \"ftp://x\"\n",
            "config.toml: key `server.public_url`: invalid URL \"ftp://x\": the scheme must be http or https",
        ),
        (
            "[server]\ntls_cert = \"cert.pem\"\n",
            "config.toml: key `server.tls_cert`: is set but `server.tls_key` is empty; set both (HTTPS) or neither (HTTP)",
        ),
        (
            "[server]\ntls_cert = \"\"\ntls_key = \"key.pem\"\n",
            "config.toml: key `server.tls_key`: is set but `server.tls_cert` is empty; set both (HTTPS) or neither (HTTP)",
        ),
        (
            "[server]\nmax_body = 1.5\n",
            "config.toml: key `server.max_body`: expected a size string such as \"512MiB\" or an integer number of bytes, found a float",
        ),
        (
            "[upstream]\nurl = \"https://\"\n",
            "config.toml: key `upstream.url`: invalid URL \"https://\": missing host",
        ),
        (
            "[upstream]\nurl = \"https://user:pw@gitlab.example.com\"\n",
            "config.toml: key `upstream.url`: invalid URL \"https://user:pw@gitlab.example.com\": must not contain user credentials",
        ),
        (
            "[upstream]\nurl = \"https://gitlab.example.com:99999\"\n",
            "config.toml: key `upstream.url`: invalid URL \"https://gitlab.example.com:99999\": invalid port \"99999\"",
        ),
        (
            "[upstream]\nurl = \"https://gitlab.example.com/?x=1\"\n",
            "config.toml: key `upstream.url`: invalid URL \"https://gitlab.example.com/?x=1\": must not contain a query or fragment",
        ),
        (
            "[upstream]\ntimeout = \"0s\"\n",
            "config.toml: key `upstream.timeout`: must be greater than zero",
        ),
        (
            "[upstream]\nconnect_timeout = 0\n",
            "config.toml: key `upstream.connect_timeout`: must be greater than zero",
        ),
        (
            "[cache]\noffline = \"yes\"\n",
            "config.toml: key `cache.offline`: expected a boolean (true or false), found a string",
        ),
        (
            "[forwarding]\nnpm_registry = \"registry.npmjs.org\"\n",
            "config.toml: key `forwarding.npm_registry`: invalid URL \"registry.npmjs.org\": expected an http:// or https:// URL",
        ),
        (
            "[forwarding]\ngo_sumdb = \"\"\n",
            "config.toml: key `forwarding.go_sumdb`: invalid URL \"\": must not be empty",
        ),
        (
            "[[forwarding.rules]]\nmatch = \"[abc\"\nforward = true\n",
            "config.toml: key `forwarding.rules[0].match`: invalid glob \"[abc\": unclosed character class; missing ']'",
        ),
        (
            "[[forwarding.rules]]\nmatch = \"\"\nforward = true\n",
            "config.toml: key `forwarding.rules[0].match`: must not be empty (use \"*\" to match every name)",
        ),
        (
            "[[forwarding.rules]]\nmatch = \"*\"\n",
            "config.toml: key `forwarding.rules[0].forward`: missing (every rule needs `match` and `forward`)",
        ),
        (
            "[[forwarding.rules]]\nmatch = \"*\"\nforward = true\n[[forwarding.rules]]\nforward = true\n",
            "config.toml: key `forwarding.rules[1].match`: missing (every rule needs `match` and `forward`)",
        ),
        (
            "[forwarding]\nrules = [1]\n",
            "config.toml: key `forwarding.rules`: expected an array of tables, found an array containing an integer",
        ),
        (
            "[[go.modules]]\nprefix = \"\"\nproject = 1\n",
            "config.toml: key `go.modules[0].prefix`: invalid module prefix \"\": must not be empty",
        ),
        (
            "[[go.modules]]\nprefix = \"https://gitlab.example.com/acme\"\nproject = 1\n",
            "config.toml: key `go.modules[0].prefix`: invalid module prefix \"https://gitlab.example.com/acme\": a module path has no scheme (e.g. \"gitlab.example.com/acme\")",
        ),
        (
            "[[go.modules]]\nproject = 1\n",
            "config.toml: key `go.modules[0].prefix`: missing (every entry needs `prefix` and `project`)",
        ),
        (
            "[[go.modules]]\nprefix = \"a.example/x\"\n",
            "config.toml: key `go.modules[0].project`: missing (every entry needs `prefix` and `project`)",
        ),
        (
            "[[go.modules]]\nprefix = \"a.example/x\"\nproject = 0\n",
            "config.toml: key `go.modules[0].project`: invalid project id 0: must be positive",
        ),
        (
            "[[go.modules]]\nprefix = \"a.example/x\"\nproject = -3\n",
            "config.toml: key `go.modules[0].project`: invalid project id -3: must be positive",
        ),
        (
            "[[go.modules]]\nprefix = \"a.example/x\"\nproject = \"/group/proj\"\n",
            "config.toml: key `go.modules[0].project`: invalid project \"/group/proj\": must not start or end with '/' (expected a numeric id or a full path such as \"group/sub/project\")",
        ),
        (
            "[[go.modules]]\nprefix = \"a.example/x\"\nproject = \"\"\n",
            "config.toml: key `go.modules[0].project`: invalid project \"\": must not be empty (expected a numeric id or a full path such as \"group/sub/project\")",
        ),
        (
            "[[go.modules]]\nprefix = \"a.example/x\"\nproject = 1.5\n",
            "config.toml: key `go.modules[0].project`: expected a project id (integer) or full path (string), found a float",
        ),
        (
            "[[go.modules]]\nprefix = \"a.example/x\"\nproject = 1\n[[go.modules]]\nprefix = \"a.example/x\"\nproject = 2\n",
            "config.toml: key `go.modules[1].prefix`: duplicate prefix \"a.example/x\" (already mapped by go.modules[0])",
        ),
        (
            "[[offline.tokens]]\nsha256 = \"abc\"\nscopes = [\"*\"]\n",
            "config.toml: key `offline.tokens[0].sha256`: expected 64 hex characters (the sha256 of the token), found 3 characters",
        ),
        (
            "[[offline.tokens]]\nsha256 = \"zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\nscopes = [\"*\"]\n",
            "config.toml: key `offline.tokens[0].sha256`: expected 64 hex characters (the sha256 of the token), found a non-hex character",
        ),
        (
            "[[offline.tokens]]\nscopes = [\"*\"]\n",
            "config.toml: key `offline.tokens[0].sha256`: missing (every token needs `sha256` and `scopes`)",
        ),
        (
            "[[offline.tokens]]\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
            "config.toml: key `offline.tokens[0].scopes`: missing (every token needs `sha256` and `scopes`)",
        ),
        (
            "[[offline.tokens]]\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\nscopes = []\n",
            "config.toml: key `offline.tokens[0].scopes`: must list at least one scope (project ids, group paths, or \"*\")",
        ),
        (
            "[[offline.tokens]]\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\nscopes = [\"42\", \"\"]\n",
            "config.toml: key `offline.tokens[0].scopes[1]`: invalid scope \"\": must not be empty (expected a project id, a group path, or \"*\")",
        ),
        (
            "[[offline.tokens]]\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\nscopes = [\"*\", 42]\n",
            "config.toml: key `offline.tokens[0].scopes`: expected an array of strings, found an array containing an integer",
        ),
        (
            "offline = true\n",
            "config.toml: key `offline`: expected a table, found a boolean",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "for:\n{text}");
    }
}

#[test]
fn a_token_pasted_as_sha256_is_not_echoed() {
    let e = err("[[offline.tokens]]\nsha256 = \"glpat-AbCdEfGh123\"\nscopes = [\"*\"]\n");
    assert!(!e.contains("glpat"), "{e}");
}

#[test]
fn unknown_keys_are_named() {
    let cases: &[(&str, &str)] = &[
        ("[server]\nlisen = \"127.0.0.1:8080\"\n", "config.toml: unknown key `server.lisen`"),
        ("[serverr]\nlisten = \"x\"\n", "config.toml: unknown key `serverr`"),
        ("listen = \"127.0.0.1:8080\"\n", "config.toml: unknown key `listen`"),
        ("[storage]\nbackends = \"s3\"\n", "config.toml: unknown key `storage.backends`"),
        (
            "[[forwarding.rules]]\nmatch = \"a\"\nforward = true\n[[forwarding.rules]]\nmach = \"*\"\nforward = true\n",
            "config.toml: unknown key `forwarding.rules[1].mach`",
        ),
        (
            "[[go.modules]]\nprefix = \"a\"\nproject = 1\nbranch = \"main\"\n",
            "config.toml: unknown key `go.modules[0].branch`",
        ),
        (
            "[[offline.tokens]]\ntoken = \"abc\"\n",
            "config.toml: unknown key `offline.tokens[0].token`",
        ),
        ("[cache.extra]\nx = 1\n", "config.toml: unknown key `cache.extra`"),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "for:\n{text}");
    }
    // Unknown PACKRAT_* variables are not consulted, so they are not errors.
    let c = load_env(
        None,
        &[
            ("PACKRAT_SERVER_LISEN", "x"),
            ("PACKRAT_UPSTREAM_TOKEN", "t"),
        ],
    );
    assert_eq!(c.server.listen, (keys::SERVER_LISTEN.default)());
}

#[test]
fn missing_file() {
    let path = fixture("does-not-exist.toml");
    match Config::load_with_env(Some(&path), &no_env) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            assert_eq!(
                e.to_string(),
                format!(
                    "{}: cannot read file: No such file or directory",
                    path.display()
                )
            );
            assert_eq!(e.key(), None);
        }
    }
    match Config::load_with_env(Some(Path::new("config.toml")), &no_env) {
        Ok(_) => panic!("expected an error"),
        Err(e) => assert_eq!(
            e.to_string(),
            "config.toml: cannot read file: No such file or directory"
        ),
    }
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let e = err("[server]\nlisten = \"127.0.0.1:8080\"\nmax_body = = \"512MiB\"\n");
    assert!(
        e.starts_with("config.toml: TOML syntax error at line 3, column 12: "),
        "{e}"
    );
    let e = err("[server]\nlisten = \"a\"\nlisten = \"b\"\n");
    assert!(
        e.starts_with("config.toml: TOML syntax error at line 3, column 1: "),
        "{e}"
    );
    assert!(e.contains("duplicate key"), "{e}");
    let e = err("[server]\nmax_body = = 1\n");
    assert_eq!(
        e,
        "config.toml: TOML syntax error at line 2, column 12: invalid string; expected `\"`, `'`"
    );
}

#[test]
fn fixture_errors() {
    let cases: &[(&str, &str)] = &[
        ("unknown_key.toml", ": unknown key `server.lisen`"),
        ("unknown_rule_key.toml", ": unknown key `forwarding.rules[1].mach`"),
        (
            "bad_duration.toml",
            ": key `cache.metadata_ttl`: invalid duration \"5x\" (expected e.g. \"30s\", \"5m\", \"7d\")",
        ),
        ("syntax_error.toml", ": TOML syntax error at line 3, column 12: "),
        (
            "tls_half.toml",
            ": key `server.tls_cert`: is set but `server.tls_key` is empty; set both (HTTPS) or neither (HTTP)",
        ),
    ];
    for (name, want) in cases {
        let path = fixture(name);
        let e = match Config::load_with_env(Some(&path), &no_env) {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => e.to_string(),
        };
        let want = format!("{}{want}", path.display());
        assert!(e.starts_with(&want), "{name}:\n got {e}\nwant {want}");
    }
}

#[test]
fn error_key_accessor() {
    let e = parse("[cache]\nauth_ttl = \"x\"\n");
    assert_eq!(
        e.as_ref().err().and_then(ConfigError::key),
        Some("cache.auth_ttl")
    );
    let e = Config::load_with_env(None, &env_of(&[("PACKRAT_CACHE_AUTH_TTL", "x")]));
    assert_eq!(
        e.as_ref().err().and_then(ConfigError::key),
        Some("PACKRAT_CACHE_AUTH_TTL")
    );
}

// ---------------------------------------------------------------------------
// URLs

#[test]
fn urls_are_normalised() {
    let c = ok("[upstream]\nurl = \"HTTPS://gitlab.example.com/gitlab///\"\n");
    assert_eq!(c.upstream.url, "https://gitlab.example.com/gitlab");
    let c = ok("[upstream]\nurl = \"http://[::1]:8929/\"\n");
    assert_eq!(c.upstream.url, "http://[::1]:8929");
    let c = ok("[server]\npublic_url = \"\"\n");
    assert_eq!(c.server.public_url, None);
    let c = ok("[forwarding]\nnpm_registry = \"https://registry.npmjs.org/\"\n");
    assert_eq!(
        c.forwarding.npm_registry.as_deref(),
        Some("https://registry.npmjs.org")
    );
}

#[test]
fn public_url_for_bound_address() {
    let bound: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 41234);
    let c = Config::default();
    assert_eq!(c.public_url_for(bound), "http://10.0.0.5:41234");
    let c = ok("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n");
    assert_eq!(c.public_url_for(bound), "https://10.0.0.5:41234");
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080);
    assert_eq!(Config::default().public_url_for(v6), "http://[::1]:8080");
    let c = ok("[server]\npublic_url = \"https://packrat.example.com/\"\n");
    assert_eq!(c.public_url_for(bound), "https://packrat.example.com");
}

// ---------------------------------------------------------------------------
// forwarding rules

fn rule(pattern: &str, forward: bool) -> ForwardingRule {
    match ForwardingRule::new(pattern, forward) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn rule_matching() {
    let scope = rule("@acme/*", false);
    assert!(scope.matches("@acme/ui"));
    assert!(scope.matches("@acme/ui-kit"));
    assert!(!scope.matches("@acme"));
    assert!(!scope.matches("@acmecorp/ui"));
    assert!(!scope.matches("acme-ui"));

    let all = rule("*", true);
    for name in ["left-pad", "@types/node", "golang.org/x/mod", ""] {
        assert!(all.matches(name), "{name}");
    }

    let go = rule("gitlab.example.com/acme/*", false);
    assert!(go.matches("gitlab.example.com/acme/x"));
    assert!(go.matches("gitlab.example.com/acme/x/y"));
    assert!(!go.matches("gitlab.example.com/acmex"));
    assert!(!go.matches("gitlab.example.com/other/x"));

    let exact = rule("lodash", true);
    assert!(exact.matches("lodash"));
    assert!(!exact.matches("lodash.merge"));

    let alternatives = rule("{@acme,@acme-internal}/*", false);
    assert!(alternatives.matches("@acme-internal/core"));
}

#[test]
fn first_match_wins_in_file_order() {
    let fwd = ForwardingConfig {
        npm_registry: None,
        go_proxy: None,
        go_sumdb: (keys::FORWARDING_GO_SUMDB.default)(),
        rules: vec![
            rule("@acme/public-*", true),
            rule("@acme/*", false),
            rule("*", true),
        ],
    };
    assert_eq!(
        fwd.first_match("@acme/public-ui")
            .map(|r| r.pattern.as_str()),
        Some("@acme/public-*")
    );
    assert_eq!(
        fwd.first_match("@acme/ui").map(|r| r.pattern.as_str()),
        Some("@acme/*")
    );
    assert_eq!(
        fwd.first_match("react").map(|r| r.pattern.as_str()),
        Some("*")
    );
    assert!(fwd.may_forward("@acme/public-ui"));
    assert!(!fwd.may_forward("@acme/ui"));
    assert!(fwd.may_forward("react"));

    // Reversed order: the catch-all shadows everything.
    let mut reversed = fwd.clone();
    reversed.rules.reverse();
    assert_eq!(
        reversed.first_match("@acme/ui").map(|r| r.pattern.as_str()),
        Some("*")
    );

    // No rules: nothing matches, nothing is forwarded.
    let none = Config::default().forwarding;
    assert!(none.first_match("react").is_none());
    assert!(!none.may_forward("react"));
}

// ---------------------------------------------------------------------------
// projects and Go modules

#[test]
fn project_refs() {
    let p = ProjectRef::Path("group/sub/proj".into());
    assert_eq!(p.url_segment(), "group%2Fsub%2Fproj");
    assert_eq!(p.to_string(), "group/sub/proj");
    assert_eq!(ProjectRef::Id(42).url_segment(), "42");
    assert_eq!(ProjectRef::Id(42).to_string(), "42");
    assert_eq!(
        ProjectRef::Path("my.group/my-proj_1".into()).url_segment(),
        "my.group%2Fmy-proj_1"
    );

    assert_eq!(ProjectRef::parse("42"), Ok(ProjectRef::Id(42)));
    assert_eq!("group/sub/proj".parse::<ProjectRef>(), Ok(p.clone()));
    assert_eq!(ProjectRef::parse("group%2Fsub%2Fproj"), Ok(p.clone()));
    assert_eq!(ProjectRef::parse("group%2fsub%2fproj"), Ok(p));
    assert!(ProjectRef::parse("0").is_err());
    assert!(ProjectRef::parse("99999999999999999999999").is_err());
    assert!(ProjectRef::parse("group/").is_err());
    assert!(ProjectRef::parse("a//b").is_err());
    assert!(ProjectRef::parse("a b").is_err());

    let c = ok("[[go.modules]]\nprefix = \"x.example/a\"\nproject = \"7\"\n");
    assert_eq!(c.go.modules[0].project, ProjectRef::Id(7));
}

#[test]
fn go_module_lookup_longest_prefix() {
    let c = match Config::load_with_env(Some(&fixture("full.toml")), &no_env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let find = |m: &str| c.go.lookup(m).map(|m| m.project.to_string());
    assert_eq!(find("gitlab.example.com/acme/lib"), Some("42".into()));
    assert_eq!(find("gitlab.example.com/acme"), Some("42".into()));
    assert_eq!(
        find("gitlab.example.com/acme/tools"),
        Some("acme/sub/tools".into())
    );
    assert_eq!(
        find("gitlab.example.com/acme/tools/v2"),
        Some("acme/sub/tools".into())
    );
    assert_eq!(find("gitlab.example.com/acme/toolsx"), Some("42".into()));
    assert_eq!(find("gitlab.example.com/acmex"), None);
    assert_eq!(find("github.com/x/y"), None);
}

// ---------------------------------------------------------------------------
// [storage] backend and [storage.s3] (issue 14)

#[test]
fn the_s3_backend_takes_its_keys_and_secrets_from_the_named_variables() {
    let text = "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\nprefix = \"edge-eu\"\nlocal_cache = \"1GiB\"\naccess_key_env = \"K\"\nsecret_key_env = \"S\"\n";
    let c = parse_with(text, &env_of(&[("K", "id"), ("S", "secret")])).unwrap();
    assert_eq!(c.storage.backend, StorageBackend::S3);
    assert_eq!(c.storage.s3.bucket, "b");
    assert_eq!(c.storage.s3.prefix, "edge-eu/");
    assert_eq!(c.storage.s3.local_cache, GIB);
    assert_eq!(
        c.storage.s3.access_key.as_ref().map(Secret::expose),
        Some("id")
    );
    assert!(
        !format!("{c:?}").contains("secret\""),
        "secrets are masked in Debug"
    );
    // The default stays the filesystem, with the s3 keys unchecked.
    assert_eq!(ok("").storage.backend, StorageBackend::Fs);
}

#[test]
fn a_bad_s3_configuration_is_refused_at_start_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[storage]\nbackend = \"gcs\"\n",
            "config.toml: key `storage.backend`: unknown storage backend \"gcs\" (expected \"fs\" or \"s3\")",
        ),
        (
            "[storage]\nbackend = \"s3\"\n",
            "config.toml: key `storage.s3.bucket`: must name the bucket when `storage.backend = \"s3\"`",
        ),
        (
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nendpoint = \"http://minio:9000\"\n",
            "config.toml: key `storage.s3.endpoint`: is plain http; use https, or set `storage.s3.allow_http = true` for a local test endpoint",
        ),
        (
            "[storage.s3]\nprefix = \"/abs\"\n",
            "config.toml: key `storage.s3.prefix`: invalid key prefix \"/abs\" (expected e.g. \"edge-eu/\": no leading `/`, no empty, `.` or `..` segments)",
        ),
        (
            "[storage.s3]\nbucket = 1\n",
            "config.toml: key `storage.s3.bucket`: expected a string, found an integer",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "for:\n{text}");
    }
    let half = parse_with(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\n",
        &env_of(&[("AWS_ACCESS_KEY_ID", "id")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        half.contains("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
        "{half}"
    );
}
