//! What a running task can see and do.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis_tasks_protocol::Progress;
use redis_tasks_protocol::ipc::ChildRequest;

use serde_json::{Map, Value};

use crate::child::{Child, EnqueueError};
use crate::setup::SetupState;
use crate::shutdown::{PostponeShutdown, ShutdownState};

/// Where meta updates go: to the supervisor over IPC in a worker process, to
/// Redis directly when tasks run in-process.
pub trait MetaSink: Send + Sync {
    /// Stores the task's whole meta object.
    fn send_meta(&self, task_id: &str, meta: &Map<String, Value>) -> Result<(), String>;

    /// Stores the task's progress report (by default it is dropped).
    fn send_progress(&self, task_id: &str, progress: &Progress) -> Result<(), String> {
        let _ = (task_id, progress);
        Ok(())
    }

    /// Asks for `request` to be enqueued; the new task's id, or why not
    /// (by default: not available where this task runs).
    fn enqueue(&self, task_id: &str, request: &ChildRequest) -> Result<String, String> {
        let _ = (task_id, request);
        Err("enqueueing tasks from a task is not available here".to_owned())
    }
}

/// The shortest time between two progress reports a task sends on; those in
/// between are dropped, except the one that reaches the total.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// What a task function receives besides its arguments.
pub struct TaskContext {
    id: String,
    task: String,
    meta: Mutex<Map<String, Value>>,
    sink: Arc<dyn MetaSink>,
    shutdown: Arc<ShutdownState>,
    /// The return value of the last call of the task function in this run
    /// (a middleware may call it more than once); `None` for `()`.
    result: Mutex<Option<Value>>,
    /// What the process's setup hook built, if it has one.
    state: Option<SetupState>,
    /// When the last progress report was sent (rate limit).
    progress_sent: Mutex<Option<Instant>>,
    /// The W3C trace context of the supervisor's span of this run.
    traceparent: Option<String>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.id)
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// A context for one run of task `task` with id `id`.
    pub fn new(
        id: impl Into<String>,
        task: impl Into<String>,
        meta: Map<String, Value>,
        sink: Arc<dyn MetaSink>,
        shutdown: Arc<ShutdownState>,
    ) -> Self {
        TaskContext {
            id: id.into(),
            task: task.into(),
            meta: Mutex::new(meta),
            sink,
            shutdown,
            result: Mutex::new(None),
            state: None,
            progress_sent: Mutex::new(None),
            traceparent: None,
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The registered name of the task function.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// A copy of the task's meta object.
    pub fn meta(&self) -> Map<String, Value> {
        self.meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the meta object and stores it (the supervisor writes it to
    /// Redis while the task keeps running).
    pub fn update_meta(&self, change: impl FnOnce(&mut Map<String, Value>)) -> Result<(), String> {
        let snapshot = {
            let mut meta = self.meta.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut meta);
            meta.clone()
        };
        self.sink.send_meta(&self.id, &snapshot)
    }

    /// Sets one key of the meta object and stores it.
    pub fn set_meta(&self, key: &str, value: impl Into<Value>) -> Result<(), String> {
        let value = value.into();
        self.update_meta(|meta| {
            meta.insert(key.to_owned(), value);
        })
    }

    /// Reports how far the task is: `done` units of `total` (when known)
    /// and a short message (cut to 200 characters). Cheap to call in a
    /// loop: at most one report per [`PROGRESS_INTERVAL`] is sent to the
    /// supervisor, which keeps the latest in the task's record (`task show`,
    /// the dashboard, the `redis_tasks_task_progress_ratio` metric); the
    /// others are dropped, except a report with `done >= total`, which is
    /// always sent. Returns whether this one was sent.
    pub fn progress(&self, done: u64, total: Option<u64>, message: &str) -> bool {
        let now = Instant::now();
        let complete = total.is_some_and(|t| done >= t);
        {
            let mut last = self
                .progress_sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|at| now.duration_since(at) >= PROGRESS_INTERVAL);
            if !due && !complete {
                return false;
            }
            *last = Some(now);
        }
        self.sink
            .send_progress(&self.id, &Progress::new(done, total, message))
            .is_ok()
    }

    /// Enqueues another task through the supervisor (a worker process has
    /// no Redis connection) and returns its id. The supervisor checks the
    /// request against this task's profile and limits; a child written
    /// [`on_success`](Child::on_success) is held until this task finishes
    /// and never exists if it does not. See docs/middleware.md, "Tasks
    /// that enqueue tasks".
    pub fn enqueue(&self, child: Child) -> Result<String, EnqueueError> {
        self.sink
            .enqueue(&self.id, child.request())
            .map_err(EnqueueError::Refused)
    }

    /// Whether a shutdown was requested. Only a task holding a
    /// [`PostponeShutdown`] guard gets to see `true`: without one, the
    /// request ends the worker process at once.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// Postpones any shutdown until the returned guard is dropped, so a
    /// section that must not be cut in half (a payment, a file rename) runs
    /// to its end.
    pub fn postpone_shutdown(&self) -> PostponeShutdown {
        self.shutdown.postpone()
    }

    /// The W3C trace context (`traceparent`) of the supervisor's span of
    /// this run, when the task was enqueued with one: pass it on to what
    /// the task calls (an HTTP header, a message) to continue the trace.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Gives the context the trace context of its run.
    pub(crate) fn set_traceparent(&mut self, traceparent: Option<String>) {
        self.traceparent = traceparent;
    }

    /// Gives the context the process's setup state.
    pub(crate) fn set_state(&mut self, state: Option<SetupState>) {
        self.state = state;
    }

    /// What the application's setup hook (`App::setup`) built in this
    /// worker process, if its type is `T`; `None` without a hook or with a
    /// hook of another type. Built once per process, shared by its tasks.
    pub fn state<T: std::any::Any>(&self) -> Option<&T> {
        self.state.as_deref()?.downcast_ref::<T>()
    }

    /// Keeps the task function's return value (JSON `null` means none).
    pub(crate) fn set_result(&self, value: Value) {
        let value = (!value.is_null()).then_some(value);
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }

    /// The value the task function returned in this run so far (`None`
    /// before it returned, or when it returned `()`): a `run_task`
    /// middleware may look at it after `next.run(...)`.
    pub fn result(&self) -> Option<Value> {
        self.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The task function's return value, taken out of the context.
    pub(crate) fn take_result(&self) -> Option<Value> {
        self.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    /// Keeps every progress report it is given.
    #[derive(Default)]
    struct Reports(Mutex<Vec<Progress>>);

    impl MetaSink for Reports {
        fn send_meta(&self, _: &str, _: &Map<String, Value>) -> Result<(), String> {
            Ok(())
        }

        fn send_progress(&self, _: &str, progress: &Progress) -> Result<(), String> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(progress.clone());
            Ok(())
        }
    }

    #[test]
    fn progress_is_rate_limited_but_the_last_step_always_goes() {
        let sink = Arc::new(Reports::default());
        let sink_dyn: Arc<dyn MetaSink> = sink.clone();
        let ctx = TaskContext::new("id", "t", Map::new(), sink_dyn, ShutdownState::passive());
        assert!(ctx.progress(0, Some(1000), "start"));
        // A tight loop far inside the interval: dropped.
        let sent = (1..999)
            .filter(|i| ctx.progress(*i, Some(1000), "row"))
            .count();
        assert!(sent <= 1, "{sent} reports within one interval");
        assert!(ctx.progress(1000, Some(1000), "done"));
        let reports = sink.0.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(reports.first().map(|p| p.done), Some(0));
        assert_eq!(
            reports.last(),
            Some(&Progress::new(1000, Some(1000), "done"))
        );
    }
}
