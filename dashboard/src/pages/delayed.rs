//! The delayed page: tasks of the delayed set (`P:scheduled`), enqueued to
//! run later or waiting for their next attempt, soonest due first.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_protocol::TaskStatus;
use redis_tasks_store::StoreError;

use super::{Flash, LIST_LIMIT, Paging, pager, store_error};
use crate::AppState;
use crate::layout::{action, flash, page, seg, status, time};

/// Pages of the delayed set one can turn to: the ids before a page are
/// read to reach it (the set is ordered by due time, not indexed), so the
/// depth is bounded; the count above the table says how many there are.
const MAX_PAGES: usize = 100;

/// `/delayed`: the tasks of the delayed set by when they are due, a page
/// at a time, each with **Cancel**.
pub(crate) async fn delayed(
    State(state): State<Arc<AppState>>,
    Query(msg): Query<Flash>,
    Query(paging): Query<Paging>,
) -> Response {
    let page_no = paging.page().min(MAX_PAGES - 1);
    let read = state
        .blocking(move |store| {
            let total = store.scheduled_count()?;
            let mut due = store.scheduled_due((page_no + 1) * LIST_LIMIT)?;
            due.drain(..(page_no * LIST_LIMIT).min(due.len()));
            let ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
            let records = super::listed(store, &ids)?;
            Ok::<_, StoreError>((total, due, records))
        })
        .await;
    let (total, due, records) = match read {
        Ok(read) => read,
        Err(e) => return store_error(&state, &e),
    };
    let now = Timestamp::now();
    let body = html! {
        h1 { "Delayed tasks" }
        (flash(msg.text()))
        p.muted {
            (total) " in the delayed set, by when they are due. "
            "A supervisor moves each to the end of its queue when it is due: tasks enqueued with a delay, "
            "and failed tasks waiting for their next attempt (retries)."
        }
        @if due.is_empty() {
            p.muted { "No task waits to be due." }
        } @else {
            div.scroll { table #delayed {
                thead { tr {
                    th { "task" } th { "status" } th { "queue" } th { "due" } th { "attempts so far" }
                    @if !state.options.read_only { th {} }
                } }
                tbody {
                    @for ((id, at), record) in due.iter().zip(&records) {
                        @match record {
                            Ok(r) => tr {
                                td { a href={ "/tasks/" (seg(id)) } { (r.description) } br; code.muted { (id) } }
                                td { (status(r.status)) }
                                td { a href={ "/queues/" (seg(&r.queue)) } { (r.queue) } }
                                td { (time(Some(*at), now)) }
                                td.num { (r.attempts.len()) }
                                @if !state.options.read_only {
                                    td {
                                        @if r.status == TaskStatus::Scheduled {
                                            (action(&state, &format!("/tasks/{}/cancel", seg(id)), "Cancel", "danger"))
                                        }
                                    }
                                }
                            },
                            Err(e) => tr {
                                td { code { (id) } }
                                td colspan="4" { "unreadable: " (e) }
                            },
                        }
                    }
                }
            } }
        }
        (pager("/delayed", page_no, total.min((MAX_PAGES * LIST_LIMIT) as u64)))
    };
    page(&state, "Delayed tasks", true, body).into_response()
}
