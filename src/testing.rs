//! Running queued tasks in-process, for users' own test suites.
//!
//! [`run_queued`] takes every task waiting in the given queues and runs it
//! right here, through the same `run_task` chain, `process_outcome` pass and
//! Redis transitions as a supervisor, and reports what succeeded and what
//! failed. There is no worker process, so a task that crashes or calls
//! `exit` takes the test down with it, timeouts are not enforced, and a
//! panic is reported without its location (the test harness owns the panic
//! hook): use a real `worker --burst` for those. The application's setup
//! hook runs once per call, before the first task; its failure is returned
//! as an error. Tasks may enqueue tasks (`TaskContext::enqueue`) under the
//! default profile's rules: written at once, or on success with the
//! task's end; those on the queues served run in the same call.

use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;
use redis_tasks_config::settings::Isolation;
use redis_tasks_protocol::Outcome;
use redis_tasks_protocol::ipc::{ChildRequest, RunTask};
use redis_tasks_store::SlotInfo;
use redis_tasks_store::{HeldChild, Store, StoreError};
use redis_tasks_supervisor::children::Children;
use redis_tasks_supervisor::outcome::{Conclusion, Policy, conclude, report_expired};
use redis_tasks_supervisor::results::checked;
use redis_tasks_worker::process::run_one_with_result;
use redis_tasks_worker::{MetaSink, MiddlewareChain, ShutdownState};
use serde_json::{Map, Value};

use crate::App;

/// What [`run_queued`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    /// Ids of the tasks recorded as finished, in the order they ran.
    pub succeeded: Vec<String>,
    /// Ids and error texts of the tasks recorded as failed.
    pub failed: Vec<(String, String)>,
    /// Ids of the tasks found expired: never run (`process_outcome` saw
    /// each, as a supervisor's would).
    pub expired: Vec<String>,
}

/// Meta, progress and enqueue requests of the task running in-process,
/// written straight to Redis; the tasks it holds for its end wait in
/// `children` (set for each run).
struct StoreMeta {
    store: Store,
    children: Mutex<Option<Children>>,
}

impl StoreMeta {
    /// Starts a run of a task from `queue`: it may enqueue what the
    /// default profile allows, up to `max` tasks, in its trace.
    fn begin(&self, queue: &str, max: u32, traceparent: Option<String>) {
        *self.children.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Children::new(Isolation::default(), queue, max, traceparent));
    }

    /// The tasks the run held for its end.
    fn held(&self) -> Vec<HeldChild> {
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(Children::into_held)
            .unwrap_or_default()
    }
}

impl MetaSink for StoreMeta {
    fn send_meta(&self, task_id: &str, meta: &Map<String, Value>) -> Result<(), String> {
        self.store
            .update_meta(task_id, meta)
            .map_err(|e| e.to_string())
    }

    fn enqueue(&self, _task_id: &str, request: &ChildRequest) -> Result<String, String> {
        match self
            .children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(children) => children.ask(&self.store, request.clone()),
            None => Err("no task is running".to_owned()),
        }
    }

    fn send_progress(
        &self,
        task_id: &str,
        progress: &redis_tasks_protocol::Progress,
    ) -> Result<(), String> {
        self.store
            .set_progress(task_id, progress)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Runs every task queued in `queues` (highest priority first) in this
/// process until the queues are empty, and reports the outcomes.
pub fn run_queued(app: &App, store: &Store, queues: &[&str]) -> Result<TestReport, StoreError> {
    let chain = MiddlewareChain::select(app.registered_middleware(), &[]).map_err(|e| {
        StoreError::UnexpectedReply {
            what: "middleware",
            detail: e.to_string(),
        }
    })?;
    let settings = redis_tasks_config::Settings::default();
    let slot = SlotInfo {
        id: format!("testing-{}", uuid_like()),
        description: "in-process test runner".to_owned(),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        supervisor: "testing".to_owned(),
        host: "localhost".to_owned(),
        pid: std::process::id(),
        started_at: Timestamp::now(),
    };
    // The setup hook runs once for the whole run, as in a worker process.
    let state = match app.registry().setup() {
        None => None,
        Some(hook) => Some(hook.run().map_err(|e| StoreError::UnexpectedReply {
            what: "setup hook",
            detail: e,
        })?),
    };
    store.register_slot(&slot)?;
    let meta = Arc::new(StoreMeta {
        store: store.independent()?,
        children: Mutex::new(None),
    });
    let sink: Arc<dyn MetaSink> = Arc::clone(&meta) as Arc<dyn MetaSink>;
    let mut report = TestReport::default();
    while let Some(fetched) = store.fetch(&slot.id, &slot.queues, std::time::Duration::ZERO)? {
        expired_seen(store, &chain, &mut report);
        let (mut result, mut children) = (None, Vec::new());
        let conclusion = match &fetched.record {
            Ok(record) => {
                meta.begin(
                    &fetched.lease.queue,
                    settings.max_children_per_task,
                    record.traceparent.clone(),
                );
                let run = RunTask {
                    task_id: record.id.clone(),
                    task: record.task.clone(),
                    args_json: record.args.to_string(),
                    meta_json: Value::Object(record.meta.clone()).to_string(),
                    // No supervisor span here: the task sees the producer's.
                    traceparent: record.traceparent.clone(),
                };
                let (ended, output) = run_one_with_result(
                    app.registry(),
                    &chain,
                    &run,
                    Arc::clone(&sink),
                    ShutdownState::passive(),
                    state.clone(),
                )
                .into_parts();
                let (ended, output) = checked(ended, output, settings.max_result_bytes);
                result = output;
                let held = meta.held();
                if ended.is_success() {
                    children = held;
                }
                let policy =
                    Policy::for_task(app.registry(), &record.task, settings.max_aborted_runs);
                conclude(record, ended, policy, &chain)
            }
            Err(e) => Conclusion::unreadable(format!("corrupt task record: {e}")),
        };
        conclusion.write_with_result(
            store,
            &slot.id,
            &fetched.id,
            (result.as_deref(), &children),
            Timestamp::now(),
        )?;
        match conclusion {
            Conclusion::Record(Outcome::Success) => report.succeeded.push(fetched.id),
            Conclusion::Record(Outcome::Failure(failure)) => {
                report.failed.push((fetched.id, failure.message()));
            }
            // Nothing is interrupted in-process.
            Conclusion::Requeue { .. } => {}
            // A retried task waits in the delayed set; this runner does
            // not wait for it (a supervisor would run it when due).
            Conclusion::Retry { .. } => {}
        }
    }
    expired_seen(store, &chain, &mut report);
    store.deregister_slot(&slot.id)?;
    Ok(report)
}

/// The tasks the fetches found expired: shown to `process_outcome` and
/// listed in the report.
fn expired_seen(store: &Store, chain: &MiddlewareChain, report: &mut TestReport) {
    for task in store.take_expired() {
        if let Ok(record) = &task.record {
            report_expired(record, chain);
        }
        report.expired.push(task.id);
    }
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Timestamp::now().as_nanosecond()
    )
}
