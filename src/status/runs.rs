//! The last run of each maintenance command (`sync`, `import`, `gc`, `verify`), kept in the
//! index's `ops` tree so that the status page still shows them after a restart. The `ops`
//! tree never goes into a bundle: a mirror's runs are its own.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::{now_ms, Store, Tree};

/// Which command ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Sync,
    Import,
    Gc,
    Verify,
}

impl RunKind {
    pub const ALL: [RunKind; 4] = [RunKind::Sync, RunKind::Import, RunKind::Gc, RunKind::Verify];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Sync => "sync",
            RunKind::Import => "import",
            RunKind::Gc => "gc",
            RunKind::Verify => "verify",
        }
    }

    fn key(self) -> String {
        format!("run/{}", self.as_str())
    }
}

/// One finished run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub kind: RunKind,
    /// Unix milliseconds.
    pub started_at: u64,
    pub finished_at: u64,
    /// Finished without faults or failures.
    pub ok: bool,
    /// The line the command printed.
    pub summary: String,
    /// Who ran it: `command` (the CLI) or `serve` (background eviction).
    pub by: String,
    /// Command-specific numbers (for an import: the bundle's manifest summary).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Run {
    /// A run that started at `started_at` and finishes now.
    pub fn finished(kind: RunKind, started_at: u64, ok: bool, summary: String) -> Self {
        Run {
            kind,
            started_at,
            finished_at: now_ms(),
            ok,
            summary,
            by: "command".into(),
            details: serde_json::Value::Null,
        }
    }
}

/// The line `packrat gc` prints (and the summary of a background eviction).
pub fn gc_summary(r: &crate::gc::Report, max: u64) -> String {
    format!(
        "gc: {} bytes before, {} after (target {max}); evicted {} blobs; kept {} pinned",
        r.before,
        r.after,
        r.evicted.len(),
        r.kept_pinned
    )
}

pub fn gc_details(r: &crate::gc::Report, max: u64) -> serde_json::Value {
    serde_json::json!({
        "before": r.before,
        "after": r.after,
        "target": max,
        "evicted": r.evicted.len(),
        "kept_pinned": r.kept_pinned,
    })
}

/// Record `run` as the last of its kind (flushed: the command exits next).
pub fn record(store: &Store, run: &Run) -> Result<(), StoreError> {
    store.index.put(Tree::Ops, &run.kind.key(), run)?;
    store.index.flush_sync()
}

/// The last run of `kind`, if any.
pub fn last(store: &Store, kind: RunKind) -> Result<Option<Run>, StoreError> {
    store.index.get(Tree::Ops, &kind.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut run = Run::finished(RunKind::Gc, 1, true, "gc: fine".into());
            run.details = serde_json::json!({ "evicted": 3 });
            record(&store, &run).unwrap();
            assert!(last(&store, RunKind::Sync).unwrap().is_none());
        }
        // sled lets go of its file lock from its own flusher thread, a moment after the drop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let store = loop {
            match Store::open(dir.path()) {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("reopening the store: {e}"),
            }
        };
        let run = last(&store, RunKind::Gc).unwrap().unwrap();
        assert_eq!(run.summary, "gc: fine");
        assert_eq!(run.details["evicted"], 3);
    }
}
