//! Runs the real `packrat` binary on a temporary data directory.
//!
//! Async on purpose: the fake GitLab runs on the test's tokio runtime, so waiting for packrat
//! must never block that runtime. Call from `#[tokio::test]`.
//!
//! ```ignore
//! let fake = FakeGitlab::start(World::standard()).await;
//! let packrat = Packrat::start(&fake.url(), "[npm]\n...").await;
//! let traced = Packrat::builder()
//!     .upstream(&fake.url())
//!     .server_keys("max_body = \"1KiB\"")
//!     .rust_log("trace")
//!     .start()
//!     .await;
//! // ... packrat.url() ...
//! ```

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use super::poll;

/// What packrat prints on stdout once it is bound.
const LISTENING: &str = "packrat listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The operator token [`Packrat::builder`] configures in `server.ops_tokens` (for `/-/pins`)
/// unless told [`PackratBuilder::without_ops_tokens`].
pub const OPS_TOKEN: &str = "packrat-ops-token";
/// sha256 of [`OPS_TOKEN`], hex.
const OPS_TOKEN_SHA256: &str = "5dddef15bc4c7b13395bb60a5bf686f5f4a5428b41a207fedfd56b2cae082ea3";
/// Placeholder [`PackratBuilder::config`] replaces with the data directory path.
pub const DATA_DIR_PLACEHOLDER: &str = "@DATA_DIR@";

pub struct Packrat {
    child: Option<Child>,
    url: String,
    config_text: String,
    /// Holds the config file; removed on drop.
    config_dir: TempDir,
    data_dir: TempDir,
    logs: Arc<Mutex<String>>,
    /// `RUST_LOG` for the process (`packrat=debug` unless a test asks for more).
    rust_log: String,
    /// The threads copying stdout/stderr into `logs`; they end when the pipes close.
    drains: Vec<std::thread::JoinHandle<()>>,
}

/// A self-signed certificate for 127.0.0.1 and localhost, made at test time, in a temporary
/// directory that lives as long as it does.
pub struct TestCert {
    dir: TempDir,
    pem: String,
}

impl TestCert {
    #[allow(clippy::new_without_default)] // not a plain value: it writes files
    pub fn new() -> TestCert {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("self-signed certificate");
        let dir = tempfile::tempdir().expect("certificate tempdir");
        let pem = cert.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &pem).expect("write cert.pem");
        std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem())
            .expect("write key.pem");
        TestCert { dir, pem }
    }

    /// The certificate, PEM (what a client adds as its root).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

/// How a test configures packrat before it starts: [`Packrat::builder`].
///
/// By default the config is packrat's usual one for tests: `[server]` listening on
/// `127.0.0.1:0` with [`OPS_TOKEN`] in `ops_tokens`, `[storage] dir` a fresh temporary
/// directory and `[upstream] url` what [`PackratBuilder::upstream`] names, then
/// [`PackratBuilder::toml`]'s sections. [`PackratBuilder::config`] replaces all of that with a
/// complete config of the test's own.
#[must_use = "a builder does nothing until .start()"]
pub struct PackratBuilder {
    upstream: Option<String>,
    server_keys: String,
    upstream_keys: String,
    toml: String,
    ops_tokens: bool,
    config: Option<String>,
    rust_log: String,
}

impl PackratBuilder {
    /// `[upstream] url`.
    pub fn upstream(mut self, url: &str) -> Self {
        self.upstream = Some(url.to_string());
        self
    }

    /// More keys under `[server]` (lines of TOML).
    pub fn server_keys(mut self, toml: &str) -> Self {
        push_lines(&mut self.server_keys, toml);
        self
    }

    /// More keys under `[upstream]` (lines of TOML).
    pub fn upstream_keys(mut self, toml: &str) -> Self {
        push_lines(&mut self.upstream_keys, toml);
        self
    }

    /// Serve HTTPS with this certificate (`server.tls_cert`, `server.tls_key`).
    pub fn tls(self, cert: &TestCert) -> Self {
        let keys = format!(
            "tls_cert = {}\ntls_key = {}",
            toml_string(&cert.cert_path().display().to_string()),
            toml_string(&cert.key_path().display().to_string())
        );
        self.server_keys(&keys)
    }

    /// Sections after `[server]`, `[storage]` and `[upstream]` (which they must not repeat).
    pub fn toml(mut self, toml: &str) -> Self {
        push_lines(&mut self.toml, toml);
        self
    }

    /// No `server.ops_tokens` (so `/-/pins` is off).
    pub fn without_ops_tokens(mut self) -> Self {
        self.ops_tokens = false;
        self
    }

    /// A complete config instead of the usual one; every [`DATA_DIR_PLACEHOLDER`] in it is
    /// replaced by the path of a fresh temporary data directory (already escaped for a TOML
    /// basic string).
    pub fn config(mut self, full_toml: &str) -> Self {
        self.config = Some(full_toml.to_string());
        self
    }

    /// `RUST_LOG` for the process (`packrat=debug` unless set; e.g. `"trace"` for the tests
    /// that read every log line for secrets).
    pub fn rust_log(mut self, rust_log: &str) -> Self {
        self.rust_log = rust_log.to_string();
        self
    }

    fn config_text(&self) -> String {
        if let Some(full) = &self.config {
            assert!(
                self.upstream.is_none()
                    && self.server_keys.is_empty()
                    && self.upstream_keys.is_empty()
                    && self.toml.is_empty()
                    && self.ops_tokens,
                "PackratBuilder::config is a complete config: set nothing else but rust_log"
            );
            return full.clone();
        }
        let upstream = self
            .upstream
            .as_deref()
            .expect("PackratBuilder: name the upstream (or give a complete config)");
        let ops_tokens = if self.ops_tokens {
            format!("ops_tokens = [\"{OPS_TOKEN_SHA256}\"]\n")
        } else {
            String::new()
        };
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{ops_tokens}{}\n[storage]\ndir = \"{DATA_DIR_PLACEHOLDER}\"\n\n\
             [upstream]\nurl = {}\n{}\n{}\n",
            self.server_keys,
            toml_string(upstream),
            self.upstream_keys,
            self.toml,
        )
    }

    /// Writes the config, spawns packrat and waits until it listens (panicking with its
    /// output if it exits or does not within 30 s).
    pub async fn start(self) -> Packrat {
        let full_toml = self.config_text();
        let data_dir = tempfile::tempdir().expect("data tempdir");
        let escaped = toml_string(&data_dir.path().display().to_string());
        let config_text = full_toml.replace(DATA_DIR_PLACEHOLDER, &escaped[1..escaped.len() - 1]);
        let mut packrat = Packrat {
            child: None,
            url: String::new(),
            config_text,
            config_dir: tempfile::tempdir().expect("config tempdir"),
            data_dir,
            logs: Arc::new(Mutex::new(String::new())),
            rust_log: self.rust_log,
            drains: Vec::new(),
        };
        std::fs::write(packrat.config_path(), &packrat.config_text).expect("write config");
        packrat.spawn().await;
        packrat
    }
}

/// Appends `toml` to `buf` as whole lines.
fn push_lines(buf: &mut String, toml: &str) {
    buf.push_str(toml);
    if !toml.is_empty() && !toml.ends_with('\n') {
        buf.push('\n');
    }
}

impl Packrat {
    /// A [`PackratBuilder`] with nothing set.
    pub fn builder() -> PackratBuilder {
        PackratBuilder {
            upstream: None,
            server_keys: String::new(),
            upstream_keys: String::new(),
            toml: String::new(),
            ops_tokens: true,
            config: None,
            rust_log: "packrat=debug".to_string(),
        }
    }

    /// The common case, `Packrat::builder().upstream(upstream_url).toml(extra_toml).start()`:
    /// the usual config for `upstream_url`, followed by `extra_toml` (which must not repeat
    /// `[server]`, `[storage]` or `[upstream]`).
    pub async fn start(upstream_url: &str, extra_toml: &str) -> Packrat {
        Packrat::builder()
            .upstream(upstream_url)
            .toml(extra_toml)
            .start()
            .await
    }

    /// `http://127.0.0.1:PORT`, as packrat printed it.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.config_dir.path().join("packrat.toml")
    }

    /// Everything packrat wrote to stdout and stderr so far (across restarts).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `timeout` for a log line containing every one of `needles` (output is
    /// copied from the process's pipes by threads, so a line may lag the response that
    /// caused it). Returns whether it appeared.
    pub async fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> bool {
        poll::within(timeout, || {
            self.logs()
                .lines()
                .any(|l| needles.iter().all(|n| l.contains(n)))
        })
        .await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, wait up to 10 s for a graceful exit, then SIGKILL. Returns the exit status
    /// (`None` if it was not running). Afterwards `logs()` holds everything it printed.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        let status = self.terminate().await;
        self.settle_logs().await;
        status
    }

    async fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let mut status = None;
        if poll::within(STOP_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        })
        .await
        {
            return status;
        }
        eprintln!("packrat did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it");
        let _ = child.kill();
        child.wait().ok()
    }

    /// Restart on the same data directory with `extra_toml` appended to the config (it must
    /// not repeat a section the config already has).
    pub async fn restart_with(&mut self, extra_toml: &str) {
        self.config_text.push('\n');
        self.config_text.push_str(extra_toml);
        self.restart().await;
    }

    /// Restart on the same data directory with `from` replaced by `to` in the config (e.g. a
    /// key added to a section the config already has).
    pub async fn restart_replacing(&mut self, from: &str, to: &str) {
        assert!(
            self.config_text.contains(from),
            "{from:?} not in the config"
        );
        self.config_text = self.config_text.replacen(from, to, 1);
        self.restart().await;
    }

    /// Stops packrat and starts it again on the same config and data directory. With a
    /// config that listens on `127.0.0.1:0` (the builder's) it listens on the same port
    /// again, so `url()` and clients configured with it stay valid.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Some(port) = self.url.trim_end_matches('/').rsplit(':').next() {
            let pinned = self.config_text.replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
                1,
            );
            std::fs::write(self.config_path(), pinned).expect("write config");
        }
        self.append_log("---- packrat restarting ----\n");
        self.spawn().await;
    }

    /// Waits (briefly) for the drain threads to copy the last output of an exited process.
    async fn settle_logs(&mut self) {
        poll::within(Duration::from_secs(2), || {
            self.drains.iter().all(std::thread::JoinHandle::is_finished)
        })
        .await;
        self.drains.retain(|t| !t.is_finished());
    }

    /// `kill -9`: no chance to clean up. Returns once the process is gone (so its lock on the
    /// data directory is released) and its last output copied; [`Packrat::restart`] starts it
    /// again.
    pub async fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        self.settle_logs().await;
    }

    fn append_log(&self, text: &str) {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }

    async fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_packrat"))
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn packrat");
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        self.drains.push(drain(
            child.stdout.take().expect("stdout"),
            self.logs.clone(),
            Some(url_tx),
        ));
        self.drains.push(drain(
            child.stderr.take().expect("stderr"),
            self.logs.clone(),
            None,
        ));
        self.child = Some(child);
        match tokio::time::timeout(START_TIMEOUT, url_rx).await {
            Ok(Ok(url)) => self.url = url,
            Ok(Err(_)) => {
                let status = self.stop().await.map(|s| s.to_string());
                panic!(
                    "packrat exited ({}) before printing {LISTENING:?}\n\
                     config:\n{}\noutput:\n{}",
                    status.unwrap_or_default(),
                    self.config_text,
                    self.logs()
                );
            }
            Err(_) => {
                self.stop().await;
                panic!(
                    "packrat did not print {LISTENING:?} within {START_TIMEOUT:?}\n\
                     config:\n{}\noutput:\n{}",
                    self.config_text,
                    self.logs()
                );
            }
        }
    }
}

impl Drop for Packrat {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies a pipe into `logs` line by line on a thread; the stdout drain also reports the URL
/// from the first `packrat listening on <url>` line.
fn drain(
    pipe: impl Read + Send + 'static,
    logs: Arc<Mutex<String>>,
    mut url_tx: Option<tokio::sync::oneshot::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(url) = line.trim_end().strip_prefix(LISTENING) {
                if let Some(tx) = url_tx.take() {
                    let _ = tx.send(url.trim().to_string());
                }
            }
            logs.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
            line.clear();
        }
    })
}

/// A TOML basic string literal (quoted and escaped).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
