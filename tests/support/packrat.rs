//! Runs the real `packrat` binary on a temporary data directory.
//!
//! Async on purpose: the fake GitLab runs on the test's tokio runtime, so waiting for packrat
//! must never block that runtime. Call from `#[tokio::test]`.
//!
//! ```ignore
//! let fake = FakeGitlab::start(World::standard()).await;
//! let packrat = Packrat::start(&fake.url(), "[npm]\n...").await;
//! // ... packrat.url() ...
//! ```

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

/// What packrat prints on stdout once it is bound.
const LISTENING: &str = "packrat listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The operator token [`Packrat::start`] configures in `server.ops_tokens` (for `/-/pins`).
pub const OPS_TOKEN: &str = "packrat-ops-token";
/// sha256 of [`OPS_TOKEN`], hex.
const OPS_TOKEN_SHA256: &str = "5dddef15bc4c7b13395bb60a5bf686f5f4a5428b41a207fedfd56b2cae082ea3";
/// Placeholder [`Packrat::start_with_config`] replaces with the data directory path.
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

impl Packrat {
    /// Starts packrat with `[server] listen = "127.0.0.1:0"` (and [`OPS_TOKEN`] as the
    /// `ops_tokens`), `[storage] dir = <tempdir>` and
    /// `[upstream] url = <upstream_url>`, followed by `extra_toml` (which must not repeat those
    /// three sections).
    pub async fn start(upstream_url: &str, extra_toml: &str) -> Packrat {
        Packrat::start_with_log(upstream_url, extra_toml, "packrat=debug").await
    }

    /// Starts packrat with a complete config; every `@DATA_DIR@` in it is replaced by the path
    /// of a fresh temporary data directory (already escaped for a TOML basic string).
    pub async fn start_with_config(full_toml: &str) -> Packrat {
        Packrat::start_with_config_and_log(full_toml, "packrat=debug").await
    }

    /// Like [`Packrat::start`], with `RUST_LOG` set to `rust_log` (e.g. `"trace"` for the
    /// tests that read every log line for secrets).
    pub async fn start_with_log(upstream_url: &str, extra_toml: &str, rust_log: &str) -> Packrat {
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nops_tokens = [\"{OPS_TOKEN_SHA256}\"]\n\n[storage]\ndir = \"{DATA_DIR_PLACEHOLDER}\"\n\n\
             [upstream]\nurl = {}\n\n{extra_toml}\n",
            toml_string(upstream_url)
        );
        Packrat::start_with_config_and_log(&toml, rust_log).await
    }

    /// [`Packrat::start_with_config`] with `RUST_LOG` set to `rust_log`.
    pub async fn start_with_config_and_log(full_toml: &str, rust_log: &str) -> Packrat {
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
            rust_log: rust_log.to_string(),
            drains: Vec::new(),
        };
        std::fs::write(packrat.config_path(), &packrat.config_text).expect("write config");
        packrat.spawn().await;
        packrat
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
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self
                .logs()
                .lines()
                .any(|l| needles.iter().all(|n| l.contains(n)))
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        eprintln!("packrat did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it");
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops packrat and starts it again on the same config and data directory. With a
    /// config from [`Packrat::start`] it listens on the same port again, so `url()` and
    /// clients configured with it stay valid.
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.drains.iter().any(|t| !t.is_finished()) && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.drains.retain(|t| !t.is_finished());
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
        drain(
            child.stdout.take().expect("stdout"),
            self.logs.clone(),
            Some(url_tx),
        );
        drain(
            child.stderr.take().expect("stderr"),
            self.logs.clone(),
            None,
        );
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
