//! One `[schedule.ID]` entry of the settings file: which task to enqueue, on
//! which schedule, with which arguments, into which queue.
//!
//! Reading entries from TOML (and the errors naming the file and key) lives in
//! the settings module; this is the checked result.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::Schedule;

/// A task the scheduler enqueues on a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEntry {
    /// Name of the registered task function to enqueue.
    pub task: String,
    /// When to enqueue it.
    pub schedule: Schedule,
    /// Arguments passed to the task (from any TOML value, as JSON); `null`
    /// when the entry gives none.
    pub args: serde_json::Value,
    /// Queue to enqueue into; the settings' `scheduler_queue` unless the
    /// entry names one.
    pub queue: String,
    /// Skip a run while this entry's previous task is still queued or running
    /// (default true).
    pub singleton: bool,
}

impl ScheduleEntry {
    /// The first run strictly after `after` in time zone `tz`.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        self.schedule.next_after(after, tz)
    }
}
