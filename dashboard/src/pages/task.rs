//! The task page: everything about one task, each field cut to
//! [`PAGE_FIELD_CAP`] (the size in full and a link to the whole value,
//! `/tasks/{id}/raw/{field}`, capped at [`RAW_CAP`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use redis_tasks_protocol::{TaskRecord, TaskStatus};
use redis_tasks_store::{Clipped, GRAPH_META_KEY, StoreError};

use super::{Flash, error_page, progress_bar, store_error, task_actions};
use crate::AppState;
use crate::layout::{flash, page, seg, short, status, time};

/// Largest field value (bytes) the task page loads and shows.
const PAGE_FIELD_CAP: usize = 64 * 1024;

/// Largest field value served whole by `/tasks/{id}/raw/{field}`.
const RAW_CAP: usize = 32 * 1024 * 1024;

/// Longest description in the page's title and heading (characters).
const TITLE_CHARS: usize = 200;

/// The fields `/tasks/{id}/raw/{field}` serves, and their content types.
fn raw_type(field: &str) -> Option<&'static str> {
    match field {
        "args" | "result" | "meta" | "attempts" | "aborted_runs" | "progress" => {
            Some("application/json")
        }
        "description" | "error" => Some("text/plain; charset=utf-8"),
        _ => None,
    }
}

/// A note that `field` was cut, with its full size and the link to all of
/// it.
fn cut_note(id: &str, clip: &Clipped) -> Markup {
    html! {
        p.muted.cut id={ "cut-" (clip.field) } {
            "Cut: " (clip.size) " bytes in all; the first " (clip.head.len()) " below. "
            a href={ "/tasks/" (seg(id)) "/raw/" (clip.field) } { "The whole value" }
            @if usize::try_from(clip.size).unwrap_or(usize::MAX) > RAW_CAP {
                " (over the dashboard's " (RAW_CAP / (1024 * 1024)) " MiB limit: read it with redis-cli HGET)"
            }
        }
    }
}

/// A JSON field: pretty when whole, its first bytes when cut.
fn json_field(
    id: &str,
    clip: Option<&Clipped>,
    whole: &serde_json::Value,
    html_id: &str,
) -> Markup {
    let pretty = serde_json::to_string_pretty(whole).unwrap_or_default();
    html! {
        @match clip {
            Some(clip) => { (cut_note(id, clip)) pre id=(html_id) { (clip.head) } },
            None => pre id=(html_id) { (pretty) },
        }
    }
}

/// `/tasks/{id}/raw/{field}`: one field of the record, whole (up to
/// [`RAW_CAP`]), as a download.
pub(crate) async fn raw(
    State(state): State<Arc<AppState>>,
    Path((id, field)): Path<(String, String)>,
) -> Response {
    let Some(content_type) = raw_type(&field) else {
        return error_page(&state, StatusCode::NOT_FOUND, "There is no such field.");
    };
    let (task_id, name) = (id.clone(), field.clone());
    let read = state
        .blocking(move |store| store.task_field(&task_id, &name, RAW_CAP))
        .await;
    match read {
        Ok(Some((_, size))) if usize::try_from(size).unwrap_or(usize::MAX) > RAW_CAP => error_page(
            &state,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "The {field} of task {id} is {size} bytes, over the dashboard's limit of {RAW_CAP} bytes;                  read it with redis-cli HGET."
            ),
        ),
        Ok(Some((bytes, _))) => {
            let disposition = format!(
                "attachment; filename=\"{}-{field}.{}\"",
                seg(&id),
                if content_type.starts_with("application/json") {
                    "json"
                } else {
                    "txt"
                }
            );
            (
                [
                    (header::CONTENT_TYPE, content_type.to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(None) => error_page(&state, StatusCode::NOT_FOUND, "The task has no such field."),
        Err(e) => store_error(&state, &e),
    }
}

/// `/tasks/{id}`: everything about one task.
pub(crate) async fn task(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(msg): Query<Flash>,
) -> Response {
    let task_id = id.clone();
    let read = state
        .blocking(move |store| {
            let preview = store.task_preview(&task_id, PAGE_FIELD_CAP)?;
            // A progress field that does not read (or is too large) is
            // shown as none rather than hiding the whole task.
            let progress = super::progress_of(store, &task_id);
            // Like progress: output that cannot be read shows as none.
            let output = store.task_output(&task_id).ok().flatten();
            Ok::<_, StoreError>((preview, progress, output))
        })
        .await;
    let (preview, progress, output) = match read {
        Ok(read) => read,
        Err(e) => return store_error(&state, &e),
    };
    let r = &preview.record;
    let clip = |field: &str| preview.clip(field);
    let title: String =
        if r.description.chars().count() > TITLE_CHARS || clip("description").is_some() {
            r.description
                .chars()
                .take(TITLE_CHARS)
                .chain(['…'])
                .collect()
        } else {
            r.description.clone()
        };
    let now = Timestamp::now();
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
        h1 { (title) }
        (flash(msg.text()))
        div.actions { (task_actions(&state, r)) }
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
            @if let Some(at) = r.expires_at {
                dt { "expires" } dd #task-expires-at { (time(Some(at), now)) }
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
            @if let Some(c) = clip("error") { (cut_note(&r.id, c)) }
            pre #task-error { (error) }
        }
        h2 { "Result" }
        @match (&r.result, clip("result")) {
            (_, Some(c)) => { (cut_note(&r.id, c)) pre #task-result { (c.head) } },
            (Some(result), None) => (json_field(&r.id, None, result, "task-result")),
            (None, None) if r.status == TaskStatus::Finished => p.muted { "None: the task returned nothing." },
            (None, None) if r.status == TaskStatus::Failed => p.muted { "None: the task failed (see the error above)." },
            (None, None) if r.status == TaskStatus::Canceled => p.muted { "None: the task was canceled." },
            (None, None) if r.status == TaskStatus::Expired => p.muted { "None: the task expired before it started." },
            (None, None) => p.muted { "None yet: the task has not ended." },
        }
        (output_section(&r.id, output.as_deref()))
        h2 { "Arguments" }
        (json_field(&r.id, clip("args"), &r.args, "task-args"))
        h2 { "Meta" }
        (json_field(&r.id, clip("meta"), &serde_json::Value::Object(r.meta.clone()), "task-meta"))
        @if let Some(c) = clip("attempts") { (cut_note(&r.id, c)) }
        (attempts(r, now))
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
    page(&state, &title, live, body).into_response()
}

/// What the task wrote to stdout and stderr, as its supervisor kept it:
/// the last [`PAGE_FIELD_CAP`] bytes at most, control characters other
/// than line ends and tabs shown escaped (and the whole HTML-escaped).
fn output_section(id: &str, output: Option<&[u8]>) -> Markup {
    html! {
        h2 { "Output" }
        @match output {
            Some(bytes) => {
                @let from = bytes.len().saturating_sub(PAGE_FIELD_CAP);
                @if from > 0 {
                    p.muted.cut #cut-output {
                        "The last " (PAGE_FIELD_CAP) " of " (bytes.len()) " bytes kept; "
                        code { "redis-tasks task logs " (id) } " prints them all."
                    }
                }
                pre #task-output { (shown_output(&bytes[from..])) }
            },
            None => p.muted #task-output-none {
                "None kept: the task wrote nothing to stdout or stderr, has not ended yet, "
                "or its supervisor keeps no output (task_log_kib = 0)."
            },
        }
    }
}

/// `bytes` as text, with every control character but newline and tab
/// escaped (`\u{1b}`).
fn shown_output(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
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
