//! Real package-manager clients, run in isolated environments.
//!
//! Missing tools: [`require_tool`] panics when `CI` is set and otherwise prints a loud
//! message and returns `false`, so the test can return early:
//!
//! ```ignore
//! let Some(npm) = Npm::new() else { return };
//! ```

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// How long one client command may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `tool` is on `PATH`. Missing: panics under `CI`, else warns loudly and returns false.
pub fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "`{tool}` is required on CI but was not found on PATH"
    );
    eprintln!(
        "\n==================== SKIPPING ====================\n\
         `{tool}` was not found on PATH; this test did not run.\n\
         Install it to run the real-client tests (CI requires it).\n\
         ==================================================\n"
    );
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

/// The real `npm`, with its own HOME, cache, `.npmrc` and project directory. The default
/// registry is a dead local port, so nothing ever reaches the internet.
pub struct Npm {
    root: TempDir,
}

impl Npm {
    /// `None` (after a loud message) when npm is missing outside CI.
    pub fn new() -> Option<Npm> {
        if !require_tool("npm") {
            return None;
        }
        let npm = Npm {
            root: tempfile::tempdir().expect("npm tempdir"),
        };
        for dir in [
            npm.home(),
            npm.cache_dir(),
            npm.project_dir(),
            npm.tmp_dir(),
        ] {
            std::fs::create_dir_all(dir).expect("create npm dirs");
        }
        std::fs::write(npm.npmrc_path(), "").expect("write .npmrc");
        std::fs::write(npm.root.path().join("globalnpmrc"), "").expect("write global npmrc");
        npm.write_package_json(&[]);
        Some(npm)
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// Where `package.json` and `node_modules` live; commands run here.
    pub fn project_dir(&self) -> PathBuf {
        self.root.path().join("project")
    }

    /// The user config (`npm_config_userconfig`).
    pub fn npmrc_path(&self) -> PathBuf {
        self.root.path().join("npmrc")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    /// Appends a raw line to the `.npmrc`.
    pub fn npmrc_line(&self, line: &str) {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.npmrc_path())
            .expect("open .npmrc");
        writeln!(file, "{line}").expect("write .npmrc");
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
        self.command("npm", args).await
    }

    /// Runs `npm <args>` and panics with its output unless it succeeded.
    pub async fn run_ok(&self, args: &[&str]) -> Output {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "npm {} failed\n{}",
            args.join(" "),
            describe(&output)
        );
        output
    }

    /// Empties npm's cache directory.
    pub fn clear_cache(&self) {
        let _ = std::fs::remove_dir_all(self.cache_dir());
        std::fs::create_dir_all(self.cache_dir()).expect("recreate npm cache");
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
            .command(
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

    async fn command(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(self.project_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TMPDIR", self.tmp_dir())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("npm_config_userconfig", self.npmrc_path())
            .env(
                "npm_config_globalconfig",
                self.root.path().join("globalnpmrc"),
            )
            .env("npm_config_cache", self.cache_dir())
            .env("npm_config_registry", "http://127.0.0.1:9/")
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_update_notifier", "false")
            .env("npm_config_progress", "false")
            .env("npm_config_color", "false")
            // npm retries failed fetches after 10-60 s by default; keep retries, shorten waits.
            .env("npm_config_fetch_retry_mintimeout", "200")
            .env("npm_config_fetch_retry_maxtimeout", "1000")
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

    /// The directory the test owns (for extra files).
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}
