//! The schedule page and the task graph pages.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_store::{GraphError, GraphState, StoreError};
use serde::Deserialize;

use super::{error_page, graph_form, store_error};
use crate::AppState;
use crate::layout::{action, ago, flash, page, seg, time};

/// How many coming runs the schedule page shows per entry.
const NEXT_RUNS: usize = 5;

/// `/schedule`: the schedule entries (this dashboard's settings, and those
/// the active scheduler registered), their state, last and next runs, and
/// the pause, resume and run-now buttons.
pub(crate) async fn schedule(
    State(state): State<Arc<AppState>>,
    Query(flash_q): Query<ScheduleFlash>,
) -> Response {
    let configured: Vec<String> = state.settings.schedule.keys().cloned().collect();
    let read = state
        .blocking(move |store| {
            let mut ids = store.schedule_entries()?;
            ids.extend(configured);
            ids.sort();
            ids.dedup();
            ids.into_iter()
                .map(|id| {
                    let last = store.schedule_last_run(&id)?;
                    let control = store.schedule_control(&id)?;
                    Ok((id, last, control))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await;
    let rows = match read {
        Ok(rows) => rows,
        Err(e) => return store_error(&state, &e),
    };
    let now = Timestamp::now();
    let tz = state.settings.timezone();
    let body = html! {
        h1 { "Schedule" }
        (flash(flash_q.text()))
        p.muted {
            "Entries of the settings file this dashboard read, and those the active scheduler registered; times in "
            (state.settings.timezone)
            ". The scheduler (" code { "scheduler" } " or " code { "worker --scheduler" } ") enqueues them. "
            "A paused entry's runs are skipped, not caught up later; " em { "Run now" }
            " enqueues one run at once, paused or not."
        }
        @if rows.is_empty() {
            p.muted { "No schedule entry in the settings, and no scheduler has registered any." }
        } @else {
            div.scroll { table #schedule {
                thead { tr {
                    th { "entry" } th { "task" } th { "when" } th { "queue" } th { "state" }
                    th { "last run" } th { "next runs (" (state.settings.timezone) ")" } th { "actions" }
                } }
                tbody {
                    @for (id, last, control) in &rows {
                        @let entry = state.settings.schedule.get(id);
                        tr id={ "entry-" (id) } {
                            td { code { (id) } }
                            @if let Some(entry) = entry {
                                td { (entry.task) }
                                td { (entry.schedule.to_string()) }
                                td { a href={ "/queues/" (seg(&entry.queue)) } { (entry.queue) } }
                            } @else {
                                td.muted colspan="3" { "not in this dashboard's settings" }
                            }
                            td.state {
                                @if control.paused {
                                    span.status.s-paused title=(control.paused_at.clone().unwrap_or_default()) { "paused" }
                                } @else {
                                    span.status.s-active { "active" }
                                }
                                @if control.run_requests > 0 {
                                    " " span.muted { (control.run_requests) " run(s) asked for" }
                                }
                            }
                            td { (time(*last, now)) }
                            td.next {
                                @match entry {
                                    Some(entry) => {
                                        @let runs: Vec<_> = entry.schedule.runs_after(now, &tz).take(NEXT_RUNS).collect();
                                        @if runs.is_empty() {
                                            span.muted { "never" }
                                        } @else {
                                            ol.runs {
                                                @for (i, run) in runs.iter().enumerate() {
                                                    li title=(run.at.to_string()) {
                                                        (run.local.strftime("%Y-%m-%d %H:%M:%S").to_string())
                                                        @if i == 0 { " " span.muted { "(" (ago(now.duration_since(run.at))) ")" } }
                                                        @if control.paused { " " span.muted { "(skipped)" } }
                                                    }
                                                }
                                            }
                                        }
                                    },
                                    None => span.muted { "unknown here" },
                                }
                            }
                            td.actions {
                                @if control.paused {
                                    (action(&state, &format!("/schedule/{}/resume", seg(id)), "Resume", ""))
                                } @else {
                                    (action(&state, &format!("/schedule/{}/pause", seg(id)), "Pause", ""))
                                }
                                (action(&state, &format!("/schedule/{}/run", seg(id)), "Run now", ""))
                            }
                        }
                    }
                }
            } }
        }
    };
    page(&state, "Schedule", true, body).into_response()
}

/// `?done=...` after a schedule action: one of a few fixed words.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ScheduleFlash {
    done: Option<String>,
}

impl ScheduleFlash {
    fn text(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "paused" => Some("Paused: the scheduler skips this entry's runs until it is resumed."),
            "resumed" => Some("Resumed: the entry runs again from its next run."),
            "run" => Some(
                "Run asked for: the active scheduler enqueues it within a second (reload to see the last run's task).",
            ),
            _ => None,
        }
    }
}

/// `?id=...` of the graph search form.
#[derive(Debug, Deserialize)]
pub(crate) struct GraphQuery {
    id: Option<String>,
}

/// `/graphs`: the search form, or a redirect to the graph asked for.
pub(crate) async fn graph_lookup(
    State(state): State<Arc<AppState>>,
    Query(q): Query<GraphQuery>,
) -> Response {
    if let Some(id) = q.id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        return Redirect::to(&format!("/graphs/{}", seg(id))).into_response();
    }
    let body = html! {
        h1 { "Task graphs" }
        p.muted { "A graph's id is printed when it is enqueued, and linked from the page of each of its tasks." }
        (graph_form())
    };
    page(&state, "Task graphs", false, body).into_response()
}

/// `/graphs/{id}`: a graph's nodes and where each is.
pub(crate) async fn graph(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let graph_id = id.clone();
    let g: GraphState = match state.blocking(move |store| store.graph(&graph_id)).await {
        Ok(g) => g,
        Err(GraphError::NotFound(_)) => {
            return error_page(
                &state,
                StatusCode::NOT_FOUND,
                &format!("task graph {id} not found (graphs expire after their ttl)"),
            );
        }
        Err(e) => {
            return error_page(&state, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
    };
    let now = Timestamp::now();
    let body = html! {
        h1 { "Graph " (g.id) }
        dl {
            dt { "status" } dd { span class={ "status s-" (g.status) } { (g.status) } }
            dt { "on failure" } dd { (g.on_failure) }
            dt { "created" } dd { (time(g.created_at, now)) }
            dt { "ended" } dd { (time(g.ended_at, now)) }
        }
        h2 { "Nodes" }
        div.scroll { table #graph-nodes {
            thead { tr { th { "node" } th { "task" } th { "after" } th { "status" } th { "ended" } } }
            tbody {
                @for node in &g.nodes {
                    tr {
                        td { (node.name) }
                        td { a href={ "/tasks/" (seg(&node.task_id)) } { (node.description) } }
                        td { (node.after.join(", ")) }
                        td { span class={ "status s-" (node.status.as_str()) } { (node.status.as_str()) } }
                        td { (time(node.ended_at, now)) }
                    }
                }
            }
        } }
    };
    page(
        &state,
        &format!("Graph {}", g.id),
        g.ended_at.is_none(),
        body,
    )
    .into_response()
}
