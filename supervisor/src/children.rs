//! Tasks a running task asks its supervisor to enqueue
//! (`TaskContext::enqueue`): each request is checked against the task's
//! profile and limits, then written at once or held until the task's end
//! (docs/middleware.md, "Tasks that enqueue tasks").
//!
//! The worker process never sees Redis: this is the only way a task
//! writes a task, and a profile with isolation keys may write none unless
//! its table says which queues and task functions (`enqueue_queues`,
//! `enqueue_tasks`).

use std::time::Duration;

use redis_tasks_config::settings::Isolation;
use redis_tasks_protocol::RetryPolicy;
use redis_tasks_protocol::ipc::{ChildMode, ChildRequest};
use redis_tasks_store::{EnqueueOptions, Enqueued, HeldChild, Store};

/// The most bytes of arguments one run may hold for its end, over all its
/// on-success children (they wait in the supervisor's memory).
pub const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// What one run of a task may enqueue, and the tasks it holds for its end.
#[derive(Debug)]
pub struct Children {
    profile: Isolation,
    /// The queue of the asking task: a request's default.
    queue: String,
    /// `max_children_per_task`.
    max: u32,
    /// The trace context of the asking run's span: the children's spans
    /// join the asking task's trace.
    traceparent: Option<String>,
    asked: u32,
    held_bytes: usize,
    held: Vec<HeldChild>,
}

impl Children {
    /// For a run of a task from `queue` under `profile`.
    /// `traceparent` is the context of the run's span, if it is traced.
    pub fn new(profile: Isolation, queue: &str, max: u32, traceparent: Option<String>) -> Self {
        Children {
            profile,
            queue: queue.to_owned(),
            max,
            traceparent,
            asked: 0,
            held_bytes: 0,
            held: Vec::new(),
        }
    }

    /// Answers one request: the new task's id, or why it was not enqueued
    /// (the text the task sees). A task written at once is written through
    /// `store`, as any producer's.
    pub fn ask(&mut self, store: &Store, request: ChildRequest) -> Result<String, String> {
        if self.asked >= self.max {
            return Err(format!(
                "this run already asked for {} task(s), the most max_children_per_task allows",
                self.max
            ));
        }
        self.asked += 1;
        let queue = request.queue.clone().unwrap_or_else(|| self.queue.clone());
        if !self.profile.may_enqueue(&queue, &request.task) {
            return Err(format!(
                "this task's profile may not enqueue {:?} on queue {queue:?} (enqueue_queues, enqueue_tasks)",
                request.task
            ));
        }
        let args: serde_json::Value = serde_json::from_str(&request.args_json)
            .map_err(|e| format!("the arguments are not JSON: {e}"))?;
        let mut options = options_of(&request)?;
        if let Some(traceparent) = &self.traceparent {
            options = options.traceparent(traceparent.as_str());
        }
        match request.mode {
            ChildMode::Now => {
                match store.queue(queue.as_str()).enqueue_with_outcome(
                    &request.task,
                    &args,
                    &options,
                ) {
                    Ok(Enqueued::New(id) | Enqueued::Existing(id)) => Ok(id),
                    Err(e) => Err(e.to_string()),
                }
            }
            ChildMode::OnSuccess => {
                let size = request.args_json.len();
                if self.held_bytes + size > MAX_HELD_BYTES {
                    return Err(format!(
                        "the tasks held for this run's end would weigh over {MAX_HELD_BYTES} bytes of arguments"
                    ));
                }
                let child = store
                    .hold_child(&queue, &request.task, &args, options)
                    .map_err(|e| e.to_string())?;
                self.held_bytes += size;
                let id = child.id().to_owned();
                self.held.push(child);
                Ok(id)
            }
        }
    }

    /// The tasks held for the run's end: written if it finished, dropped
    /// otherwise.
    pub fn into_held(self) -> Vec<HeldChild> {
        self.held
    }
}

/// The producer API's options of a request.
fn options_of(request: &ChildRequest) -> Result<EnqueueOptions, String> {
    let mut options = EnqueueOptions::new();
    if let Some(ms) = request.delay_ms {
        options = options.delay(Duration::from_millis(ms));
    }
    if let Some(secs) = request.timeout_secs {
        options = options.timeout(Duration::from_secs(secs));
    }
    if let Some(json) = &request.retry_json {
        let policy: RetryPolicy = serde_json::from_str(json)
            .map_err(|e| format!("the retry policy is not valid: {e}"))?;
        options = options.retry(policy);
    }
    if let Some(key) = &request.unique_key {
        options = options.unique(key.clone());
    }
    if let Some(ms) = request.expires_in_ms {
        options = options.expires_in(Duration::from_millis(ms));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restricted_profile_enqueues_nothing_unless_listed() {
        let open = Isolation::default();
        assert!(open.may_enqueue("any", "thing"));
        let closed = Isolation::default().memory_limit(1 << 30);
        assert!(!closed.may_enqueue("default", "noop"));
        let listed = closed.enqueue_queues(["thumbs"]).enqueue_tasks(["*"]);
        assert!(listed.may_enqueue("thumbs", "resize"));
        assert!(!listed.may_enqueue("default", "resize"));
        let narrowed = Isolation::default().enqueue_tasks(["noop"]);
        assert!(narrowed.is_unrestricted());
        assert!(narrowed.may_enqueue("any", "noop"));
        assert!(!narrowed.may_enqueue("any", "other"));
    }

    #[test]
    fn options_are_read_and_a_bad_retry_policy_is_refused() {
        let request = ChildRequest {
            task: "noop".into(),
            args_json: "{}".into(),
            retry_json: Some("{\"max_retries\": \"many\"}".into()),
            ..ChildRequest::default()
        };
        assert!(options_of(&request).is_err());
        let request = ChildRequest {
            retry_json: Some("{\"max_retries\": 2}".into()),
            delay_ms: Some(1000),
            ..request
        };
        assert!(options_of(&request).is_ok());
    }
}
