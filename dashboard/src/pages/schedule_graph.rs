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
use crate::layout::{ago, page, seg, time};

/// `/schedule`: the settings' schedule entries, their last and next runs.
pub(crate) async fn schedule(State(state): State<Arc<AppState>>) -> Response {
    let entries: Vec<String> = state.settings.schedule.keys().cloned().collect();
    let read = state
        .blocking(move |store| {
            entries
                .into_iter()
                .map(|id| {
                    let last = store.schedule_last_run(&id)?;
                    Ok((id, last))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await;
    let last_runs = match read {
        Ok(runs) => runs,
        Err(e) => return store_error(&state, &e),
    };
    let now = Timestamp::now();
    let tz = state.settings.timezone();
    let body = html! {
        h1 { "Schedule" }
        p.muted {
            "Entries of the settings file this dashboard read, in time zone " (state.settings.timezone)
            ". The scheduler (" code { "scheduler" } " or " code { "worker --scheduler" } ") enqueues them."
        }
        @if last_runs.is_empty() {
            p.muted { "No schedule entry in the settings." }
        } @else {
            div.scroll { table #schedule {
                thead { tr { th { "entry" } th { "task" } th { "when" } th { "queue" } th { "last run" } th { "next run" } } }
                tbody {
                    @for (id, last) in &last_runs {
                        @if let Some(entry) = state.settings.schedule.get(id) {
                            tr {
                                td { code { (id) } }
                                td { (entry.task) }
                                td { (entry.schedule.to_string()) }
                                td { a href={ "/queues/" (seg(&entry.queue)) } { (entry.queue) } }
                                td { (time(*last, now)) }
                                td {
                                    @match entry.next_after(now, &tz) {
                                        Some(next) => span title=(next.to_string()) { (ago(now.duration_since(next))) },
                                        None => span.muted { "never" },
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    page(&state, "Schedule", true, body).into_response()
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
