//! The slot's side of a run's hooks: the task's meta updates and
//! progress reports go to its record (through the lease's store), its
//! return value is kept for the outcome, the tasks it asks for are
//! enqueued or held (`children.rs`).

use redis_tasks_protocol::Progress;
use redis_tasks_protocol::ipc::ChildRequest;
use redis_tasks_store::Store;
use tracing::{debug, warn};

use crate::children::Children;
use crate::execute::RunHooks;
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

    fn update_progress(&mut self, task_id: &str, progress: Progress) {
        self.shared
            .metrics
            .slot_progress(self.slot, progress.ratio(), true);
        if let Err(e) = self.store.set_progress(task_id, &progress) {
            warn!(task = task_id, "progress report not stored: {e}");
        }
    }
}
