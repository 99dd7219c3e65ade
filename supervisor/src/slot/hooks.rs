//! The slot's side of a run's hooks: the task's meta updates and
//! progress reports go to its record (through the lease's store), its
//! return value is kept for the outcome, the tasks it asks for are
//! enqueued or held (`children.rs`). The task read ahead waits beside
//! the run: handed back to its queue if the run goes on too long, ended
//! unstarted if its cancel comes meanwhile.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis_tasks_protocol::Progress;
use redis_tasks_protocol::ipc::ChildRequest;
use redis_tasks_store::{Fetched, Store};
use tracing::{debug, info, warn};

use crate::children::Children;
use crate::execute::RunHooks;
use crate::metrics::Ended;
use crate::shared::Shared;

/// Hooks that write a running task's updates to Redis.
pub(super) struct MetaToRedis<'a> {
    pub(super) store: &'a Store,
    /// The task's return value, if it sent one.
    pub(super) result: Option<String>,
    pub(super) shared: &'a Shared,
    /// The slot's number (the `slot` label of the progress metric).
    pub(super) slot: usize,
    /// Where the tasks it asks for are written (every partition, as a
    /// producer's).
    pub(super) producer: &'a Store,
    /// What it may enqueue, and what it holds for its end.
    pub(super) children: Children,
    /// The slot's id (the fence of the waiting task's writes).
    pub(super) slot_id: &'a str,
    /// The slot's next task, read ahead, waiting for this run to end.
    pub(super) waiting: Option<Fetched>,
    /// When the waiting task goes back to its queue if this run still
    /// goes on (`None` once tried).
    pub(super) hand_back_at: Option<Instant>,
}

/// How long a task read ahead waits for the run before it: past that it
/// goes back to the front of its queue, for any slot to take (a slow task
/// must not hold up the one behind it while another slot is idle). Short
/// tasks, where reading ahead pays, end well within it.
const READ_AHEAD_WAIT: Duration = Duration::from_millis(5);

/// How long a task read ahead waits: [`READ_AHEAD_WAIT`]; in debug builds
/// `REDIS_TASKS_TEST_READ_AHEAD_WAIT_MS` sets it, so the tests can cancel a
/// task while it waits.
pub(super) fn read_ahead_wait() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("REDIS_TASKS_TEST_READ_AHEAD_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    READ_AHEAD_WAIT
}

impl RunHooks for MetaToRedis<'_> {
    fn set_result(&mut self, result_json: String) {
        self.result = Some(result_json);
    }

    fn update_meta(&mut self, task_id: &str, meta_json: &str) {
        let meta = match serde_json::from_str::<serde_json::Value>(meta_json) {
            Ok(serde_json::Value::Object(meta)) => meta,
            _ => {
                warn!(
                    task = task_id,
                    "ignoring a meta update that is not a JSON object"
                );
                return;
            }
        };
        if let Err(e) = self.store.update_meta(task_id, &meta) {
            warn!(task = task_id, "meta update not stored: {e}");
        }
    }

    fn enqueue(&mut self, task_id: &str, request: ChildRequest) -> Result<String, String> {
        let (task, mode) = (request.task.clone(), request.mode);
        let answer = self.children.ask(self.producer, request);
        match &answer {
            Ok(id) => {
                debug!(task = task_id, child = %id, name = %task, ?mode, "task enqueued a task")
            }
            Err(why) => warn!(task = task_id, name = %task, ?mode, "enqueue refused: {why}"),
        }
        answer
    }

    fn waiting_until(&self) -> Option<Instant> {
        self.waiting.as_ref().and(self.hand_back_at)
    }

    fn hand_back_waiting(&mut self) {
        self.hand_back_at = None;
        let Some(waiting) = self.waiting.take() else {
            return;
        };
        let lease = &waiting.lease;
        let store = self.producer.leased(lease);
        match store.release_unstarted(self.slot_id, &lease.id, Timestamp::now()) {
            // Handed back, canceled meanwhile, or (false) no longer this
            // slot's: in every case not to be run here.
            Ok(_) => {
                debug!(task = %lease.id, "task read ahead handed back to the front of {:?}: the run before it goes on", lease.queue);
            }
            Err(e) => {
                // It runs after this run, then.
                warn!(task = %lease.id, "cannot hand back a task read ahead ({e}); it runs after the current task");
                self.waiting = Some(waiting);
            }
        }
    }

    fn cancel_waiting(&mut self, id: &str) {
        let Some(waiting) = self.waiting.take_if(|w| w.lease.id == id) else {
            return;
        };
        let lease = &waiting.lease;
        let store = self.producer.leased(lease);
        let why = "canceled before it started";
        match store.finish_canceled(self.slot_id, id, why, Timestamp::now()) {
            Ok(true) => {
                info!(task = id, queue = %lease.queue, outcome = "canceled", "task read ahead {why}");
                self.shared
                    .counters
                    .canceled
                    .fetch_add(1, Ordering::Relaxed);
                let known = waiting
                    .record
                    .as_ref()
                    .ok()
                    .map(|r| r.task.as_str())
                    .filter(|name| self.shared.registry.get(name).is_some());
                self.shared.metrics.task_ended(
                    &lease.queue,
                    known,
                    Ended::Canceled,
                    Duration::ZERO,
                );
            }
            // Recovered elsewhere: not this slot's to run.
            Ok(false) => debug!(task = id, "task read ahead is no longer this slot's"),
            // Still waiting: the request is asked again, and met by its
            // own run if it starts.
            Err(e) => {
                warn!(task = id, "cannot cancel a task read ahead ({e})");
                self.waiting = Some(waiting);
            }
        }
    }

    fn update_progress(&mut self, task_id: &str, progress: Progress) {
        self.shared
            .metrics
            .slot_progress(self.slot, progress.ratio(), true);
        if let Err(e) = self.store.set_progress(task_id, &progress) {
            warn!(task = task_id, "progress report not stored: {e}");
        }
    }
}
