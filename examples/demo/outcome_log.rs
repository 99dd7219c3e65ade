//! A `process_outcome` middleware that appends one JSON line per final
//! outcome to the file named by `DEMO_OUTCOME_LOG`.

use std::io::Write;
use std::path::PathBuf;

use redis_tasks::{Middleware, Outcome, TaskRecord};

/// Logs outcomes when a path is set.
pub struct OutcomeLog {
    path: Option<PathBuf>,
}

impl OutcomeLog {
    /// Reads `DEMO_OUTCOME_LOG` (the supervisor has it; worker processes,
    /// whose environment is scrubbed, do not, and do not need it).
    pub fn from_env() -> Self {
        OutcomeLog {
            path: std::env::var_os("DEMO_OUTCOME_LOG").map(PathBuf::from),
        }
    }
}

impl Middleware for OutcomeLog {
    /// The log's directory must exist: better to refuse to start than to
    /// lose every line.
    fn check(&self, _settings: &redis_tasks::Settings) -> Result<(), String> {
        match self.path.as_ref().and_then(|p| p.parent()) {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(format!(
                "DEMO_OUTCOME_LOG: directory {} does not exist",
                dir.display()
            )),
            _ => Ok(()),
        }
    }

    fn process_outcome(&self, task: &TaskRecord, outcome: Outcome) -> Outcome {
        if let Some(path) = &self.path {
            let line = serde_json::json!({
                "id": task.id,
                "task": task.task,
                "outcome": if outcome.is_success() { "success" } else { "failure" },
                "error": outcome.error_text(),
                "status": outcome.status().as_str(),
                "next_attempt": outcome.next_attempt().map(|t| t.to_string()),
            });
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                // One write per line: with O_APPEND, lines from several
                // slots (or supervisors) never interleave.
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
            if let Err(e) = written {
                eprintln!("demo outcome log {}: {e}", path.display());
            }
        }
        outcome
    }
}
