//! Tasks a running task enqueues: [`Child`], the request built with the
//! producer API's options, and why one was not written ([`EnqueueError`]).
//!
//! A worker process has no Redis connection: [`TaskContext::enqueue`]
//! sends the request to the supervisor, which checks it against the task's
//! profile (docs/middleware.md, "Tasks that enqueue tasks") and writes it,
//! at once or, with [`Child::on_success`], in the same Redis transition
//! that records the asking task finished.
//!
//! [`TaskContext::enqueue`]: crate::TaskContext::enqueue

use std::time::Duration;

use redis_tasks_protocol::RetryPolicy;
use redis_tasks_protocol::ipc::{ChildMode, ChildRequest};
use serde::Serialize;

/// A task to enqueue from inside a task (builder style).
///
/// ```
/// use std::time::Duration;
/// use redis_tasks_worker::Child;
///
/// let child = Child::new("send_receipt", &serde_json::json!({"order": 42}))
///     .expect("arguments are JSON")
///     .queue("mail")
///     .delay(Duration::from_secs(60))
///     .on_success();
/// # let _ = child;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    request: ChildRequest,
}

impl Child {
    /// A call of task function `task` with `args`, on the asking task's
    /// queue, written at once, with the function's own timeout and retries.
    pub fn new<A: Serialize + ?Sized>(task: &str, args: &A) -> Result<Child, EnqueueError> {
        let args_json =
            serde_json::to_string(args).map_err(|e| EnqueueError::Args(e.to_string()))?;
        Ok(Child {
            request: ChildRequest {
                task: task.to_owned(),
                args_json,
                ..ChildRequest::default()
            },
        })
    }

    /// Enqueues it on `queue` instead of the asking task's queue.
    pub fn queue(mut self, queue: &str) -> Self {
        self.request.queue = Some(queue.to_owned());
        self
    }

    /// Runs it no earlier than `delay` after it is written (for an
    /// on-success child: after the asking task finished).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.request.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Its own timeout (whole seconds, rounded up).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        self.request.timeout_secs = Some(secs);
        self
    }

    /// Its own retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.request.retry_json = serde_json::to_string(&policy).ok();
        self
    }

    /// Expires `ttl` after it is written: not started by then, it never
    /// runs and ends `expired`.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.request.expires_in_ms = Some(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// A uniqueness key: while a task with this key is queued, scheduled or
    /// running, the call returns that task's id instead of writing another.
    /// Only for children written at once.
    pub fn unique(mut self, key: &str) -> Self {
        self.request.unique_key = Some(key.to_owned());
        self
    }

    /// Writes it only when the asking task finishes, in the same Redis
    /// transition that records it finished: if the task fails, crashes,
    /// times out, is canceled or retried, the child never exists. The
    /// returned id is the one it will have.
    pub fn on_success(mut self) -> Self {
        self.request.mode = ChildMode::OnSuccess;
        self
    }

    /// The request sent to the supervisor.
    pub fn request(&self) -> &ChildRequest {
        &self.request
    }
}

/// Why a child task was not enqueued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// The arguments do not serialize to JSON.
    #[error("the child's arguments are not JSON: {0}")]
    Args(String),
    /// The supervisor refused the request (the profile does not allow the
    /// queue or task, a limit was reached, bad options) or could not write it.
    #[error("enqueue refused: {0}")]
    Refused(String),
}
