//! A running task's progress report: how far it is (`done` of `total`)
//! and a short message, sent by the task through its `TaskContext`, kept in
//! the task's record by the supervisor, shown by `task show`, the dashboard
//! and a metric.

use serde::{Deserialize, Serialize};

/// Longest message kept, in characters; longer ones are cut (a task, or a
/// hostile worker process, cannot grow the record without end).
pub const MAX_PROGRESS_MESSAGE_CHARS: usize = 200;

/// How far a task is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units of work done.
    pub done: u64,
    /// Units of work in all, when known.
    pub total: Option<u64>,
    /// What it is doing now (at most [`MAX_PROGRESS_MESSAGE_CHARS`]).
    pub message: String,
}

impl Progress {
    /// A report, its message cut to [`MAX_PROGRESS_MESSAGE_CHARS`].
    pub fn new(done: u64, total: Option<u64>, message: &str) -> Progress {
        Progress {
            done,
            total,
            message: message.chars().take(MAX_PROGRESS_MESSAGE_CHARS).collect(),
        }
    }

    /// `done / total` between 0 and 1, when the total is known and not 0.
    pub fn ratio(&self) -> Option<f64> {
        let total = self.total.filter(|t| *t > 0)?;
        // Precision beyond 2^53 units does not matter for a ratio.
        #[allow(clippy::cast_precision_loss)]
        let ratio = self.done as f64 / total as f64;
        Some(ratio.clamp(0.0, 1.0))
    }

    /// The same report with its message cut again (for reports read from
    /// a worker process or from Redis).
    pub fn bounded(self) -> Progress {
        Progress::new(self.done, self.total, &self.message)
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.total, self.ratio()) {
            (Some(total), Some(ratio)) => {
                write!(f, "{}/{total} ({:.0}%)", self.done, ratio * 100.0)?;
            }
            (Some(total), None) => write!(f, "{}/{total}", self.done)?,
            (None, _) => write!(f, "{}", self.done)?,
        }
        if !self.message.is_empty() {
            write!(f, " {}", self.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_and_ratios_bounded() {
        let long = "é".repeat(500);
        assert_eq!(
            Progress::new(1, Some(2), &long).message.chars().count(),
            MAX_PROGRESS_MESSAGE_CHARS
        );
        assert_eq!(Progress::new(5, Some(4), "").ratio(), Some(1.0));
        assert_eq!(Progress::new(5, Some(0), "").ratio(), None);
        assert_eq!(Progress::new(5, None, "").ratio(), None);
        assert_eq!(
            Progress::new(3, Some(10), "rows").to_string(),
            "3/10 (30%) rows"
        );
        assert_eq!(Progress::new(3, None, "").to_string(), "3");
    }
}
