//! Real package-manager clients, run in isolated environments: [`Npm`] and [`Go`].
//!
//! A test that needs one starts with [`require_tool!`](crate::support::require_tool), the one
//! policy for a missing tool (a failure under `CI`, else a printed skip):
//!
//! ```ignore
//! require_tool!("npm");
//! let npm = Npm::new();
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// How long one client command may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `tool` is on `PATH` (it answers `--version`, or `version` as `go` does).
pub fn tool_found(tool: &str) -> bool {
    ["--version", "version"].iter().any(|arg| {
        std::process::Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// How `scripts/test` installs `tool` when it is missing.
fn install_hint(tool: &str) -> &'static str {
    match tool {
        "npm" | "node" => "scripts/test installs it with `apt-get install nodejs npm`",
        "go" => "scripts/test installs it with `apt-get install golang-go`",
        "openssl" => "scripts/test installs it with `apt-get install openssl`",
        _ => "scripts/test does not install it; install it by hand",
    }
}

/// The policy behind [`require_tool!`](crate::support::require_tool): `true` when `tool` is
/// on `PATH`. Missing: with `ci` (the `CI` variable set) it panics, naming the tool and how
/// scripts/test installs it; otherwise it prints `skipping <test>: <tool> not found` and
/// returns `false`.
pub fn tool_or_skip(tool: &str, ci: bool) -> bool {
    if tool_found(tool) {
        return true;
    }
    assert!(
        !ci,
        "`{tool}` was not found on PATH and CI is set, so this test may not be skipped; {}",
        install_hint(tool)
    );
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    eprintln!("skipping {test}: {tool} not found");
    false
}

/// Renders a command's output for panic messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Appends one line to a (config) file that exists.
fn append_line(path: &Path, line: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    writeln!(file, "{line}").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A client's private world: a temporary root holding `home`, `tmp`, `project` (where
/// commands run) and whatever else the client names, and the environment every command gets
/// (that and `PATH`, nothing else).
struct Sandbox {
    root: TempDir,
    env: BTreeMap<String, String>,
}

impl Sandbox {
    fn new(extra_dirs: &[&str]) -> Sandbox {
        let sandbox = Sandbox {
            root: tempfile::tempdir().expect("client tempdir"),
            env: BTreeMap::new(),
        };
        for dir in ["home", "tmp", "project"].iter().chain(extra_dirs) {
            std::fs::create_dir_all(sandbox.dir(dir)).expect("create client dirs");
        }
        sandbox
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `dir(name)` as an environment value.
    fn dir_value(&self, name: &str) -> String {
        self.dir(name).display().to_string()
    }

    fn set_env(&mut self, vars: impl IntoIterator<Item = (&'static str, String)>) {
        for (k, v) in vars {
            self.env.insert(k.to_string(), v);
        }
    }

    /// Runs `program <args>` in `project`; panics if it cannot start or after
    /// [`CLIENT_TIMEOUT`].
    async fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(self.dir("project"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match tokio::time::timeout(CLIENT_TIMEOUT, cmd.output()).await {
            Ok(output) => output.unwrap_or_else(|e| panic!("run {program}: {e}")),
            Err(_) => panic!(
                "`{program} {}` did not finish within {CLIENT_TIMEOUT:?}",
                args.join(" ")
            ),
        }
    }

    /// [`Sandbox::run`], panicking with the output unless it succeeded.
    async fn run_ok(&self, program: &str, args: &[&str]) -> Output {
        let output = self.run(program, args).await;
        assert!(
            output.status.success(),
            "{program} {} failed\n{}",
            args.join(" "),
            describe(&output)
        );
        output
    }
}

/// The real `npm`, with its own HOME, cache, `.npmrc` and project directory. The default
/// registry is a dead local port, so nothing ever reaches the internet.
pub struct Npm {
    sandbox: Sandbox,
}

impl Npm {
    /// Call after `require_tool!("npm")`.
    #[allow(clippy::new_without_default)] // not a plain value: it creates a temporary tree
    pub fn new() -> Npm {
        let mut sandbox = Sandbox::new(&["cache"]);
        std::fs::write(sandbox.dir("npmrc"), "").expect("write .npmrc");
        std::fs::write(sandbox.dir("globalnpmrc"), "").expect("write global npmrc");
        let vars = [
            ("HOME", sandbox.dir_value("home")),
            ("TMPDIR", sandbox.dir_value("tmp")),
            (
                "XDG_CONFIG_HOME",
                sandbox.dir("home").join(".config").display().to_string(),
            ),
            ("npm_config_userconfig", sandbox.dir_value("npmrc")),
            ("npm_config_globalconfig", sandbox.dir_value("globalnpmrc")),
            ("npm_config_cache", sandbox.dir_value("cache")),
            ("npm_config_registry", "http://127.0.0.1:9/".to_string()),
            ("npm_config_audit", "false".to_string()),
            ("npm_config_fund", "false".to_string()),
            ("npm_config_update_notifier", "false".to_string()),
            ("npm_config_progress", "false".to_string()),
            ("npm_config_color", "false".to_string()),
            // npm retries failed fetches after 10-60 s by default; keep retries, shorten waits.
            ("npm_config_fetch_retry_mintimeout", "200".to_string()),
            ("npm_config_fetch_retry_maxtimeout", "1000".to_string()),
        ];
        sandbox.set_env(vars);
        let npm = Npm { sandbox };
        npm.write_package_json(&[]);
        npm
    }

    /// Where `package.json` and `node_modules` live; commands run here.
    pub fn project_dir(&self) -> PathBuf {
        self.sandbox.dir("project")
    }

    /// The user config (`npm_config_userconfig`).
    pub fn npmrc_path(&self) -> PathBuf {
        self.sandbox.dir("npmrc")
    }

    /// The directory the test owns (for extra files).
    pub fn root(&self) -> &Path {
        self.sandbox.root.path()
    }

    /// Appends a raw line to the `.npmrc`.
    pub fn npmrc_line(&self, line: &str) {
        append_line(&self.npmrc_path(), line);
    }

    /// `@scope:registry=<url>` (`scope` with or without `@`; a trailing `/` is added).
    pub fn scope_registry(&self, scope: &str, url: &str) {
        let scope = scope.trim_start_matches('@');
        self.npmrc_line(&format!("@{scope}:registry={}", with_slash(url)));
    }

    /// `//host:port/path/:_authToken=TOKEN` for `registry_url` (npm sends it as
    /// `Authorization: Bearer` for every URL under that prefix).
    pub fn auth_token(&self, registry_url: &str, token: &str) {
        let url = with_slash(registry_url);
        let nerfed = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(&url);
        self.npmrc_line(&format!("//{nerfed}:_authToken={token}"));
    }

    /// Writes the project's `package.json` with these dependencies.
    pub fn write_package_json(&self, deps: &[(&str, &str)]) {
        let deps: serde_json::Map<String, serde_json::Value> = deps
            .iter()
            .map(|(n, r)| {
                (
                    (*n).to_string(),
                    serde_json::Value::String((*r).to_string()),
                )
            })
            .collect();
        let doc = serde_json::json!({
            "name": "packrat-test-project",
            "version": "1.0.0",
            "private": true,
            "dependencies": deps,
        });
        std::fs::write(
            self.project_dir().join("package.json"),
            serde_json::to_vec_pretty(&doc).expect("json"),
        )
        .expect("write package.json");
    }

    /// Runs `npm <args>` in the project directory; panics after [`CLIENT_TIMEOUT`].
    pub async fn run(&self, args: &[&str]) -> Output {
        self.sandbox.run("npm", args).await
    }

    /// Runs `npm <args>` and panics with its output unless it succeeded.
    pub async fn run_ok(&self, args: &[&str]) -> Output {
        self.sandbox.run_ok("npm", args).await
    }

    /// Empties npm's cache directory.
    pub fn clear_cache(&self) {
        let _ = std::fs::remove_dir_all(self.sandbox.dir("cache"));
        std::fs::create_dir_all(self.sandbox.dir("cache")).expect("recreate npm cache");
    }

    /// Removes `node_modules` and `package-lock.json` (the cache stays).
    pub fn clear_install(&self) {
        let _ = std::fs::remove_dir_all(self.project_dir().join("node_modules"));
        let _ = std::fs::remove_file(self.project_dir().join("package-lock.json"));
    }

    /// The `version` in `node_modules/<name>/package.json`, if installed.
    pub fn installed_version(&self, name: &str) -> Option<String> {
        let path = self
            .project_dir()
            .join("node_modules")
            .join(name)
            .join("package.json");
        let text = std::fs::read_to_string(path).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
        doc["version"].as_str().map(str::to_string)
    }

    /// `node -e 'console.log(require(name))'` in the project; panics unless it succeeds.
    pub async fn require(&self, name: &str) -> String {
        let output = self
            .sandbox
            .run(
                "node",
                &["-e", "console.log(require(process.argv[1]))", name],
            )
            .await;
        assert!(
            output.status.success(),
            "require({name:?}) failed\n{}",
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// The real `go` command with its own HOME (and `.netrc`), GOPATH, module cache, build cache
/// and module directory. Nothing reaches the internet: `GOPROXY` and `GOSUMDB` are `off` until
/// a test sets them, `GOFLAGS=-mod=mod`, and TLS trusts only `SSL_CERT_FILE` when set.
///
/// ```ignore
/// require_tool!("go");
/// let mut go = Go::new();
/// go.netrc("127.0.0.1", "alice", ALICE_PAT);
/// go.env("GOPROXY", &format!("{}/go", packrat.url())).env("SSL_CERT_FILE", &cert_path);
/// go.write_module(GO_MOD, MAIN_GO);
/// go.run_ok(&["mod", "download"]).await;
/// ```
pub struct Go {
    sandbox: Sandbox,
}

impl Go {
    /// Call after `require_tool!("go")`.
    #[allow(clippy::new_without_default)] // not a plain value: it creates a temporary tree
    pub fn new() -> Go {
        let mut sandbox = Sandbox::new(&["gopath", "modcache", "gocache"]);
        std::fs::write(sandbox.dir("home").join(".netrc"), "").expect("write .netrc");
        let vars = [
            ("HOME", sandbox.dir_value("home")),
            ("GOPATH", sandbox.dir_value("gopath")),
            ("GOMODCACHE", sandbox.dir_value("modcache")),
            ("GOCACHE", sandbox.dir_value("gocache")),
            ("GOTMPDIR", sandbox.dir_value("tmp")),
            ("TMPDIR", sandbox.dir_value("tmp")),
            ("GOENV", "off".to_string()),
            ("GO111MODULE", "on".to_string()),
            ("GOFLAGS", "-mod=mod".to_string()),
            ("GOTOOLCHAIN", "local".to_string()),
            ("GOPROXY", "off".to_string()),
            ("GOSUMDB", "off".to_string()),
            ("GONOSUMDB", String::new()),
            ("GONOSUMCHECK", String::new()),
            ("GOPRIVATE", String::new()),
            ("GONOPROXY", String::new()),
            ("GOINSECURE", String::new()),
            ("CGO_ENABLED", "0".to_string()),
            // Trust nothing but what a test names in SSL_CERT_FILE.
            ("SSL_CERT_DIR", sandbox.dir_value("no-certs")),
        ];
        sandbox.set_env(vars);
        Go { sandbox }
    }

    /// Sets (or overrides) an environment variable for every later command.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Go {
        self.sandbox.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Appends `machine HOST login USER password PASS` to `~/.netrc` (the go command sends
    /// it as Basic auth, over https only).
    pub fn netrc(&self, machine: &str, login: &str, password: &str) {
        append_line(
            &self.sandbox.dir("home").join(".netrc"),
            &format!("machine {machine} login {login} password {password}"),
        );
    }

    /// Where `go.mod` and `main.go` live; commands run here.
    pub fn project_dir(&self) -> PathBuf {
        self.sandbox.dir("project")
    }

    /// The directory the test owns (for extra files such as a CA certificate).
    pub fn root(&self) -> &Path {
        self.sandbox.root.path()
    }

    /// Writes the main module (and removes any go.sum).
    pub fn write_module(&self, go_mod: &str, main_go: &str) {
        std::fs::write(self.project_dir().join("go.mod"), go_mod).expect("write go.mod");
        std::fs::write(self.project_dir().join("main.go"), main_go).expect("write main.go");
        self.remove_go_sum();
    }

    /// The main module's go.sum, if written.
    pub fn go_sum(&self) -> Option<String> {
        std::fs::read_to_string(self.project_dir().join("go.sum")).ok()
    }

    pub fn remove_go_sum(&self) {
        let _ = std::fs::remove_file(self.project_dir().join("go.sum"));
    }

    /// Runs `go <args>` in the module directory; panics after [`CLIENT_TIMEOUT`].
    pub async fn run(&self, args: &[&str]) -> Output {
        self.sandbox.run("go", args).await
    }

    /// Runs `go <args>` and panics with its output unless it succeeded.
    pub async fn run_ok(&self, args: &[&str]) -> Output {
        self.sandbox.run_ok("go", args).await
    }

    /// Runs a program (e.g. the binary `go build` wrote) with the same environment.
    pub async fn exec(&self, program: &Path, args: &[&str]) -> Output {
        self.sandbox.run(&program.display().to_string(), args).await
    }

    /// Empties the module cache (go marks it read-only: `go clean -modcache`) and the
    /// checksum database client's state (`$GOPATH/pkg/sumdb`), so the next command fetches
    /// everything again.
    pub async fn clear_modcache(&self) {
        self.run_ok(&["clean", "-modcache"]).await;
        let _ = std::fs::remove_dir_all(self.sandbox.dir("gopath").join("pkg").join("sumdb"));
        std::fs::create_dir_all(self.sandbox.dir("modcache")).expect("recreate modcache");
    }
}
