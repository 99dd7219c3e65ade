//! The pages (GET): each reads through the store's public API on a
//! blocking thread and renders HTML on the server.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use redis_tasks_protocol::{Progress, TaskRecord, TaskStatus};
use redis_tasks_store::{Store, StoreError, WorkerInfo};
use serde::Deserialize;

mod delayed;
mod history;
mod listing;
mod queue;
mod registries;
mod running;
mod schedule_graph;
mod search;
mod supervisors;
mod task;

pub(crate) use delayed::delayed;
pub(crate) use queue::queue;
pub(crate) use registries::{canceled, expired, failed, finished};
pub(crate) use running::running;
pub(crate) use schedule_graph::{graph, graph_lookup, schedule};
pub(crate) use search::search;
pub(crate) use supervisors::supervisors;
pub(crate) use task::{raw, task};

use crate::AppState;
use crate::layout::{action, page, seg, short, status, time};

/// Most rows a list page shows.
const LIST_LIMIT: usize = 100;

/// Largest field value (bytes) a list row loads: a description or an
/// error longer than that is cut (a raw producer's 100 MB argument must
/// not be loaded to show one line).
const LIST_FIELD_CAP: usize = 1024;

/// `?page=N` of a list: page 0 shows the first [`LIST_LIMIT`] rows.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Paging {
    page: Option<usize>,
}

impl Paging {
    pub(super) fn page(&self) -> usize {
        self.page.unwrap_or(0).min(1_000_000)
    }
}

/// The records of `ids` for a list, each field cut to [`LIST_FIELD_CAP`]
/// (a cut description or error ends with `…`).
pub(super) fn listed(
    store: &Store,
    ids: &[String],
) -> Result<Vec<Result<TaskRecord, StoreError>>, StoreError> {
    Ok(store
        .tasks_preview(ids, LIST_FIELD_CAP)?
        .into_iter()
        .map(|read| {
            read.map(|preview| {
                let (cut_description, cut_error) = (
                    preview.clip("description").is_some(),
                    preview.clip("error").is_some(),
                );
                let mut r = preview.record;
                if cut_description {
                    r.description.push('…');
                }
                if cut_error && let Some(error) = r.error.as_mut() {
                    error.push('…');
                }
                r
            })
        })
        .collect())
}

/// Largest progress field (bytes) a page reads.
const PROGRESS_CAP: usize = 4096;

/// Task `id`'s progress report, read only when its field is small (a
/// raw writer's huge one is shown as none, like one that does not parse).
pub(super) fn progress_of(store: &Store, id: &str) -> Option<Progress> {
    let (bytes, size) = store.task_field(id, "progress", PROGRESS_CAP).ok()??;
    if size > u64::try_from(PROGRESS_CAP).unwrap_or(u64::MAX) {
        return None;
    }
    serde_json::from_slice::<Progress>(&bytes)
        .ok()
        .map(Progress::bounded)
}

/// Links to the previous and next pages of a list of `total` rows at
/// `path`, the links carrying `query` (`a=1&b=2`, encoded) too.
pub(super) fn pager(path: &str, query: &str, page: usize, total: u64) -> Markup {
    let path = if query.is_empty() {
        format!("{path}?")
    } else {
        format!("{path}?{query}&")
    };
    let pages = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .div_ceil(LIST_LIMIT)
        .max(1);
    html! {
        @if pages > 1 {
            p.pager #pager {
                @if page > 0 {
                    a href={ (path) "page=" (page - 1) } { "← previous" } " "
                }
                "page " (page + 1) " of " (pages)
                @if page + 1 < pages {
                    " " a href={ (path) "page=" (page + 1) } { "next →" }
                }
            }
        }
    }
}

/// The span of the overview's "last minutes" counts.
const RECENT_MINUTES: i64 = 5;

/// `?done=...` after an action: one of a few fixed words, so that a link
/// cannot make the dashboard say what someone else wrote.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Flash {
    done: Option<String>,
}

impl Flash {
    fn text(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "requeued" => Some("Requeued: the task is back at the end of its queue."),
            "canceled" => {
                Some("Canceled: the task left its queue or the delayed set and will not run.")
            }
            "cancel-requested" => Some(
                "Cancel requested: the supervisor running the task stops it in a moment (reload to see it canceled).",
            ),
            "deleted" => Some("Deleted: the task and its record are gone."),
            "paused" => Some(
                "Paused: no supervisor starts this queue's tasks until it is resumed; running ones finish.",
            ),
            "resumed" => Some("Resumed: idle supervisors start this queue's tasks again."),
            _ => None,
        }
    }
}

/// A page saying what went wrong, with its status code.
pub(crate) fn error_page(state: &AppState, code: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (code.as_u16()) " " (code.canonical_reason().unwrap_or("")) }
        div.flash.err role="alert" { (message) }
        p { a href="/" { "Back to the overview" } }
    };
    (code, page(state, "Error", false, body)).into_response()
}

pub(super) fn store_error(state: &AppState, e: &StoreError) -> Response {
    let code = match e {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        e if e.is_connection_error() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_page(state, code, &e.to_string())
}

struct Overview {
    queues: Vec<(String, u64)>,
    /// Tasks in the delayed set.
    scheduled: u64,
    /// Tasks canceled so far (a counter: it outlives the registry's trimming).
    canceled: u64,
    failed: u64,
    finished: u64,
    /// Tasks in the expired registry.
    expired: u64,
    /// The endings of the chosen range, every queue.
    history: history::History,
    workers: Vec<(WorkerInfo, Option<TaskRecord>, Option<Progress>)>,
}

fn read_overview(
    store: &Store,
    range: history::Range,
    now: Timestamp,
) -> Result<Overview, StoreError> {
    let mut queues = Vec::new();
    for name in store.queues()? {
        let len = store.queue(name.as_str()).count()?;
        queues.push((name, len));
    }
    let history = history::read(store, None, range, now)?;
    let infos = store.worker_infos()?;
    let current: Vec<String> = infos
        .iter()
        .filter_map(|w| w.current_task.clone())
        .collect();
    let mut records = listed(store, &current)?.into_iter();
    let mut workers = Vec::new();
    for w in infos {
        let (record, progress) = match &w.current_task {
            Some(id) => (records.next().and_then(Result::ok), progress_of(store, id)),
            None => (None, None),
        };
        workers.push((w, record, progress));
    }
    Ok(Overview {
        queues,
        scheduled: store.scheduled_count()?,
        canceled: store.canceled_count()?,
        failed: store.failed().count()?,
        finished: store.finished().count()?,
        expired: store.expired().count()?,
        history,
        workers,
    })
}

/// `/`: queues, throughput, workers.
pub(crate) async fn overview(
    State(state): State<Arc<AppState>>,
    Query(rq): Query<history::RangeQuery>,
) -> Response {
    let now = Timestamp::now();
    let range = rq.range();
    let read = state
        .blocking(move |store| read_overview(store, range, now))
        .await;
    let o = match read {
        Ok(o) => o,
        Err(e) => return store_error(&state, &e),
    };
    let recent = o.history.recent(RECENT_MINUTES);
    let waiting: u64 = o.queues.iter().map(|q| q.1).sum();
    let busy = o
        .workers
        .iter()
        .filter(|w| w.0.current_task.is_some())
        .count();
    let body = html! {
        h1 { "Overview" }
        div.cards {
            div.card { div.n #waiting { (waiting) } div.l { "waiting in queues" } }
            div.card { a href="/delayed" { div.n #scheduled-count { (o.scheduled) } } div.l { "scheduled for later" } }
            div.card { div.n { (busy) " / " (o.workers.len()) } div.l { "slots busy" } }
            div.card { div.n #recent-finished { (recent.finished) } div.l { "finished, last " (RECENT_MINUTES) " min" } }
            div.card { div.n #recent-failed { (recent.failed) } div.l { "failed, last " (RECENT_MINUTES) " min" } }
            div.card { a href="/failed" { div.n #failed-count { (o.failed) } } div.l { "in the failed registry" } }
            div.card { a href="/canceled" { div.n #canceled-count { (o.canceled) } } div.l { "canceled" } }
            div.card { a href="/finished" { div.n { (o.finished) } } div.l { "in the finished registry" } }
            div.card { a href="/expired" { div.n #expired-count { (o.expired) } } div.l { "expired, never run" } }
        }
        (history::section("/", &o.history))
        h2 { "Queues" }
        @if o.queues.is_empty() {
            p.muted { "No queue in use." }
        } @else {
            div.scroll { table #queues {
                thead { tr { th { "queue" } th { "waiting" } th { "slots listening" } } }
                tbody {
                    @for (name, len) in &o.queues {
                        tr {
                            td { a href={ "/queues/" (seg(name)) } { (name) } }
                            td.num { (len) }
                            td.muted { (listeners(&o.workers, name)) }
                        }
                    }
                }
            } }
        }
        p.muted #scheduled-line {
            a href="/delayed" { (o.scheduled) " scheduled" }
            " for later (delayed enqueues and retries waiting for their backoff): not in a queue until due."
        }
        h2 { "Workers" }
        @if o.workers.is_empty() {
            p.muted { "No supervisor is running." }
        } @else {
            div.scroll { table #workers {
                thead { tr { th { "slot" } th { "host" } th { "queues" } th { "task" } th { "for" } th { "progress" } } }
                tbody {
                    @for (w, record, progress) in &o.workers {
                        tr {
                            td { code { (w.id) } }
                            td { (w.host) }
                            td { (w.queues.join(", ")) }
                            td {
                                @match (&w.current_task, record) {
                                    (Some(id), Some(r)) => a href={ "/tasks/" (seg(id)) } { (r.description) },
                                    (Some(id), None) => a href={ "/tasks/" (seg(id)) } { code { (id) } },
                                    (None, _) => span.muted { "idle" },
                                }
                            }
                            td {
                                @if let Some(started) = record.as_ref().and_then(|r| r.started_at) {
                                    (short(now.duration_since(started).as_secs().max(0)))
                                }
                            }
                            td {
                                @if let Some(p) = progress {
                                    (progress_bar(p))
                                }
                            }
                        }
                    }
                }
            } }
        }
        (graph_form())
    };
    page(&state, "Overview", true, body).into_response()
}

/// How many slots listen on `queue` (its throughput is on its page).
fn listeners(
    workers: &[(WorkerInfo, Option<TaskRecord>, Option<Progress>)],
    queue: &str,
) -> String {
    let listening = workers
        .iter()
        .filter(|w| w.0.queues.iter().any(|q| q == queue))
        .count();
    match listening {
        0 => "no slot listens".to_owned(),
        1 => "1 slot listens".to_owned(),
        n => format!("{n} slots listen"),
    }
}

/// A progress report: a bar when the total is known, and the words.
pub(super) fn progress_bar(p: &Progress) -> Markup {
    html! {
        @if let (Some(ratio), Some(total)) = (p.ratio(), p.total) {
            progress value=(p.done.min(total)) max=(total) title=(format!("{:.0}%", ratio * 100.0)) {}
            " "
        }
        (p.to_string())
    }
}

fn graph_form() -> Markup {
    html! {
        h2 { "Find a task graph" }
        form method="get" action="/graphs" {
            input type="text" name="id" placeholder="graph id" aria-label="graph id";
            " "
            button type="submit" { "Show" }
        }
    }
}

/// A table of task records (`ids` in display order); with `select`, each
/// row has a checkbox of the form whose id that is (`name="id"`).
pub(super) fn task_table(
    state: &AppState,
    ids: &[String],
    records: &[Result<TaskRecord, StoreError>],
    now: Timestamp,
    actions: bool,
    select: Option<&str>,
) -> Markup {
    html! {
        div.scroll { table.tasks {
            thead { tr { @if select.is_some() { th { "select" } } th { "task" } th { "status" } th { "enqueued" } th { "ended" } th { "error" } @if actions && !state.options.read_only { th {} } } }
            tbody {
                @for (id, record) in ids.iter().zip(records) {
                    @match record {
                        Ok(r) => tr {
                            @if let Some(form) = select {
                                td { input type="checkbox" name="id" value=(id) form=(form) aria-label={ "select " (id) }; }
                            }
                            td { a href={ "/tasks/" (seg(id)) } { (r.description) } }
                            td { (status(r.status)) }
                            td { (time(Some(r.enqueued_at), now)) }
                            td { (time(r.ended_at, now)) }
                            td { (r.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("")) }
                            @if actions && !state.options.read_only {
                                td { (task_actions(state, r)) }
                            }
                        },
                        Err(e) => tr {
                            @if let Some(form) = select {
                                td { input type="checkbox" name="id" value=(id) form=(form) aria-label={ "select " (id) }; }
                            }
                            td { code { (id) } }
                            td colspan="4" { "unreadable: " (e) }
                        },
                    }
                }
            }
        } }
    }
}

/// The actions a task's status allows.
pub(super) fn task_actions(state: &AppState, r: &TaskRecord) -> Markup {
    let base = format!("/tasks/{}", seg(&r.id));
    html! {
        @if r.status == TaskStatus::Failed {
            (action(state, &format!("{base}/requeue"), "Requeue", "primary"))
            " "
            (action(state, &format!("{base}/delete"), "Delete", "danger"))
        }
        @if r.status == TaskStatus::Canceled {
            (action(state, &format!("{base}/delete"), "Delete", "danger"))
        }
        @if matches!(r.status, TaskStatus::Queued | TaskStatus::Scheduled | TaskStatus::Running) {
            (action(state, &format!("{base}/cancel"), "Cancel", "danger"))
        }
    }
}

/// A queue's flow control (docs/flow-control.md): paused or not, its
/// limits and the tasks running under them, with Pause or Resume.
pub(super) fn queue_flow(state: &AppState, q: &redis_tasks_store::QueueState) -> Markup {
    let base = format!("/queues/{}", seg(&q.name));
    html! {
        dl.flow #flow {
            dt { "state" }
            dd #flow-state { @if q.flow.paused { "paused" } @else { "serving" } }
            dt { "running" }
            dd #flow-running {
                (q.running)
                @if let Some(n) = q.flow.concurrency { " of at most " (n) " (concurrency limit, fleet-wide)" }
            }
            dt { "rate limit" }
            dd #flow-rate {
                @if let Some(rate) = q.flow.rate { "at most " (rate) " starts" } @else { "none" }
            }
        }
        @if q.flow.paused {
            (action(state, &format!("{base}/resume"), "Resume", "primary"))
        } @else {
            (action(state, &format!("{base}/pause"), "Pause", "danger"))
        }
    }
}

/// `?error=...` of the login page.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    error: Option<String>,
    /// The token, from the login URL printed at start.
    token: Option<String>,
}

/// `/login`: signs in with `?token=` (the login URL printed at start), else
/// shows the token form.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    if let Some(token) = &q.token {
        return crate::actions::sign_in(&state, token);
    }
    let body = html! {
        h1 { "Sign in" }
        @if q.error.is_some() {
            div.flash.err role="alert" { "That token is not the dashboard's." }
        }
        form method="post" action="/login" {
            p { label { "Token " input type="password" name="token" autocomplete="current-password"; } }
            button.primary type="submit" { "Sign in" }
        }
    };
    page(&state, "Sign in", false, body).into_response()
}

/// Anything else.
pub(crate) async fn not_found(State(state): State<Arc<AppState>>) -> Response {
    error_page(&state, StatusCode::NOT_FOUND, "There is no such page.")
}
