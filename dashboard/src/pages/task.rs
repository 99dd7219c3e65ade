//! The task page: everything about one task.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use redis_tasks_protocol::{TaskRecord, TaskStatus};
use redis_tasks_store::{GRAPH_META_KEY, StoreError};

use super::{Flash, progress_bar, store_error, task_actions};
use crate::AppState;
use crate::layout::{flash, page, seg, short, status, time};

/// `/tasks/{id}`: everything about one task.
pub(crate) async fn task(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(msg): Query<Flash>,
) -> Response {
    let task_id = id.clone();
    let read = state
        .blocking(move |store| {
            let record = store.task(&task_id)?;
            // A progress field that does not read is shown as none rather
            // than hiding the whole task.
            let progress = store.progress(&task_id).ok().flatten();
            Ok::<_, StoreError>((record, progress))
        })
        .await;
    let (r, progress) = match read {
        Ok(read) => read,
        Err(e) => return store_error(&state, &e),
    };
    let now = Timestamp::now();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let graph = r
        .meta
        .get(GRAPH_META_KEY)
        .and_then(|g| g.get("id"))
        .and_then(|g| g.as_str())
        .map(str::to_owned);
    let live = matches!(
        r.status,
        TaskStatus::Queued | TaskStatus::Running | TaskStatus::Scheduled
    );
    let body = html! {
        h1 { (r.description) }
        (flash(msg.text()))
        div.actions { (task_actions(&state, &r)) }
        @if r.status == TaskStatus::Running && !state.options.read_only {
            p.muted #cancel-note {
                "Cancel asks the supervisor running this task to stop it: it kills the task's worker process "
                "and everything it started, as at a timeout, and records the task canceled a moment later. "
                "A canceled task is not retried."
            }
        }
        dl {
            dt { "id" } dd { code #task-id { (r.id) } }
            dt { "status" } dd #task-status { (status(r.status)) }
            dt { "task" } dd { code { (r.task) } }
            dt { "queue" } dd { a href={ "/queues/" (seg(&r.queue)) } { (r.queue) } }
            dt { "enqueued" } dd { (time(Some(r.enqueued_at), now)) }
            @if let Some(at) = r.run_at {
                dt { "due" } dd #task-run-at { (time(Some(at), now)) }
            }
            dt { "started" } dd { (time(r.started_at, now)) }
            dt { "ended" } dd { (time(r.ended_at, now)) }
            dt { "run time" } dd {
                @match (r.started_at, r.ended_at) {
                    (Some(s), Some(e)) => { (format!("{:.3} s", e.duration_since(s).as_secs_f64())) },
                    (Some(s), None) => { "running for " (short(now.duration_since(s).as_secs().max(0))) },
                    _ => span.muted { "-" },
                }
            }
            dt { "timeout" } dd #task-timeout {
                @match r.timeout {
                    Some(secs) => { (secs) " s (set at enqueue)" },
                    None => span.muted { "the task's own, else default_task_timeout" },
                }
            }
            dt { "retry" } dd #task-retry {
                @match &r.retry {
                    Some(policy) => { (policy.to_string()) " (set at enqueue)" },
                    None => span.muted { "the task's own policy" },
                }
            }
            @if let Some(key) = &r.unique {
                dt { "unique key" } dd #task-unique { code { (key) } }
            }
            @if let Some(p) = &progress {
                dt { "progress" } dd #task-progress { (progress_bar(p)) }
            }
            @if let Some(g) = &graph {
                dt { "graph" } dd { a href={ "/graphs/" (seg(g)) } { (g) } }
            }
        }
        @if let Some(error) = &r.error {
            h2 { "Error" }
            pre #task-error { (error) }
        }
        h2 { "Result" }
        @match &r.result {
            Some(result) => pre #task-result { (pretty(result)) },
            None if r.status == TaskStatus::Finished => p.muted { "None: the task returned nothing." },
            None => p.muted { "None yet." },
        }
        h2 { "Arguments" }
        pre { (pretty(&r.args)) }
        h2 { "Meta" }
        pre { (pretty(&serde_json::Value::Object(r.meta.clone()))) }
        (attempts(&r, now))
        h2 { "Aborted runs" }
        @if r.aborted_runs.is_empty() {
            p.muted { "None: every run so far ended with an outcome." }
        } @else {
            div.scroll { table {
                thead { tr { th { "started" } th { "given up" } th { "reason" } } }
                tbody {
                    @for run in &r.aborted_runs {
                        tr {
                            td { (time(run.started_at, now)) }
                            td { (time(Some(run.ended_at), now)) }
                            td { (run.reason) }
                        }
                    }
                }
            } }
        }
    };
    page(&state, &r.description, live, body).into_response()
}

/// The ended attempts of a retried task, oldest first.
fn attempts(r: &TaskRecord, now: Timestamp) -> Markup {
    html! {
        h2 { "Attempts" }
        @if r.attempts.is_empty() {
            p.muted { "No earlier attempt: the task has not been retried." }
        } @else {
            div.scroll { table #task-attempts {
                thead { tr { th { "#" } th { "started" } th { "ended" } th { "status" } th { "error" } th { "next attempt" } } }
                tbody {
                    @for (n, a) in r.attempts.iter().enumerate() {
                        tr {
                            td.num { (n + 1) }
                            td { (time(a.started_at, now)) }
                            td { (time(Some(a.ended_at), now)) }
                            td { (status(a.status)) }
                            td { (a.error.as_deref().unwrap_or("")) }
                            td { (time(a.next_attempt_at, now)) }
                        }
                    }
                }
            } }
        }
    }
}
