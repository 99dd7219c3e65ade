//! The delayed page: tasks of the delayed set (`P:scheduled`), enqueued to
//! run later or waiting for their next attempt, soonest due first in each
//! partition, a bounded search at a time (`listing`) with a cursor to the
//! end; filtered by queue, task name, text and when they are due, with
//! bulk cancel.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_protocol::TaskStatus;
use redis_tasks_store::{Listing, StoreError};

use super::listing::{self, CursorQuery};
use super::{Flash, error_page, store_error};
use crate::AppState;
use crate::bulk::Source;
use crate::filter::{FilterForm, Times};
use crate::layout::{action, flash, page, seg, status, time};

/// `/delayed`: the tasks of the delayed set by when they are due, a page
/// at a time, each with **Cancel**.
pub(crate) async fn delayed(
    State(state): State<Arc<AppState>>,
    Query(msg): Query<Flash>,
    Query(cursor): Query<CursorQuery>,
    Query(form): Query<FilterForm>,
) -> Response {
    let now = Timestamp::now();
    let (filter, from) = match (form.to_filter(now, Times::Due), cursor.cursor()) {
        (Ok(filter), Ok(from)) => (filter, from),
        (Err(why), _) | (_, Err(why)) => {
            return error_page(&state, StatusCode::BAD_REQUEST, &why);
        }
    };
    let filtered = form.is_set();
    let read = state
        .blocking(move |store| {
            let total = store.scheduled_count()?;
            let found = listing::search(store, &Listing::Delayed, &filter, from, filtered)?;
            let records = super::listed(store, &found.ids)?;
            Ok::<_, StoreError>((total, found, records))
        })
        .await;
    let (total, found, records) = match read {
        Ok(read) => read,
        Err(e) => return store_error(&state, &e),
    };
    let select = !state.options.read_only && crate::auth::csrf().is_some();
    let first = cursor.at_start();
    let all = (filtered && found.complete && first).then_some(found.count as u64);
    let body = html! {
        h1 { "Delayed tasks" }
        (flash(msg.text()))
        p.muted {
            (total) " in the delayed set, by when they are due. "
            "A supervisor moves each to the end of its queue when it is due: tasks enqueued with a delay, "
            "and failed tasks waiting for their next attempt (retries)."
        }
        (form.form("/delayed", Times::Due))
        @if filtered {
            (found.summary(&form, Times::Due, first))
        }
        @if found.ids.is_empty() && !filtered {
            p.muted { "No task waits to be due." }
        } @else if found.ids.is_empty() {
        } @else {
            @if select {
                (crate::bulk::forms(&Source::Delayed, &form, all))
            }
            div.scroll { table #delayed {
                thead { tr {
                    @if select { th { "select" } }
                    th { "task" } th { "status" } th { "queue" } th { "due" } th { "attempts so far" }
                    @if !state.options.read_only { th {} }
                } }
                tbody {
                    @for (id, record) in found.ids.iter().zip(&records) {
                        tr {
                            @if select {
                                td { input type="checkbox" name="id" value=(id) form=(crate::bulk::FORM_ID) aria-label={ "select " (id) }; }
                            }
                            @match record {
                                Ok(r) => {
                                    td { a href={ "/tasks/" (seg(id)) } { (r.description) } br; code.muted { (id) } }
                                    td { (status(r.status)) }
                                    td { a href={ "/queues/" (seg(&r.queue)) } { (r.queue) } }
                                    td { (time(r.run_at, now)) }
                                    td.num { (r.attempts.len()) }
                                    @if !state.options.read_only {
                                        td {
                                            @if r.status == TaskStatus::Scheduled {
                                                (action(&state, &format!("/tasks/{}/cancel", seg(id)), "Cancel", "danger"))
                                            }
                                        }
                                    }
                                },
                                Err(e) => {
                                    td { code { (id) } }
                                    td colspan="4" { "unreadable: " (e) }
                                },
                            }
                        }
                    }
                }
            } }
        }
        (found.pager("/delayed", &form.query(), first))
    };
    page(&state, "Delayed tasks", !filtered, body).into_response()
}
