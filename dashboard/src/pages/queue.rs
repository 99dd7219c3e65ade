//! A queue's page (`/queues/NAME`): its flow control, then its tasks in
//! the order they will run, 100 a page (`?page=N`), or, with a filter
//! (task name, text, enqueue time), the matching ones a bounded search at
//! a time (`listing`); checkboxes and "all matching" for bulk cancel;
//! below them the queue's history charts.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_store::{Listing, StoreError};

use super::history;
use super::listing::{self, CursorQuery};
use super::{
    Flash, LIST_LIMIT, Paging, error_page, listed, pager, queue_flow, store_error, task_table,
};
use crate::AppState;
use crate::bulk::Source;
use crate::filter::{FilterForm, Times};
use crate::layout::{flash, page, seg};

/// `/queues/{name}`: the tasks waiting in a queue.
pub(crate) async fn queue(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(msg): Query<Flash>,
    Query(paging): Query<Paging>,
    Query(cursor): Query<CursorQuery>,
    Query(mut form): Query<FilterForm>,
    Query(rq): Query<history::RangeQuery>,
) -> Response {
    // The page is the queue's: a queue field would only confuse.
    form.queue = None;
    let now = Timestamp::now();
    let filter = match (form.to_filter(now, Times::Enqueued), cursor.cursor()) {
        (Ok(filter), Ok(from)) => form.is_set().then_some((filter, from)),
        (Err(why), _) | (_, Err(why)) => {
            return error_page(&state, StatusCode::BAD_REQUEST, &why);
        }
    };
    let queue_name = name.clone();
    let page_no = paging.page();
    let range = rq.range();
    let read = state
        .blocking(move |store| {
            let queue = store.queue(queue_name.as_str());
            let total = queue.count()?;
            let (found, ids) = match filter {
                Some((filter, from)) => {
                    let listing = Listing::Queue(queue_name.clone());
                    let found = listing::search(store, &listing, &filter, from, true)?;
                    let ids = found.ids.clone();
                    (Some(found), ids)
                }
                None => (None, queue.ids(page_no * LIST_LIMIT, LIST_LIMIT)?),
            };
            let records = listed(store, &ids)?;
            let flow = store.queue_state(&queue_name)?;
            let history = history::read(store, Some(&queue_name), range, Timestamp::now())?;
            Ok::<_, StoreError>((total, found, ids, records, flow, history))
        })
        .await;
    let (total, found, ids, records, flow, history) = match read {
        Ok(read) => read,
        Err(e) => return store_error(&state, &e),
    };
    let select = !state.options.read_only && crate::auth::csrf().is_some();
    let path = format!("/queues/{}", seg(&name));
    let first = cursor.at_start();
    let all = found
        .as_ref()
        .and_then(|f| (f.complete && first).then_some(f.count as u64));
    let body = html! {
        h1 { "Queue " (name) }
        (flash(msg.text()))
        (queue_flow(&state, &flow))
        (form.form(&path, Times::Enqueued))
        @match &found {
            Some(found) => (found.summary(&form, Times::Enqueued, first)),
            None => p.muted { (total) " waiting; " (ids.len()) " from number " (page_no * LIST_LIMIT + 1) " in the order they will run." },
        }
        @if select && !ids.is_empty() {
            (crate::bulk::forms(&Source::Queue(name.clone()), &form, all))
        }
        (task_table(&state, &ids, &records, now, true, select.then_some(crate::bulk::FORM_ID)))
        @match &found {
            Some(found) => (found.pager(&path, &form.query(), first)),
            None => (pager(&path, "", page_no, total)),
        }
        (history::section(&history::queue_path(&name), &history))
    };
    page(&state, &format!("Queue {name}"), !form.is_set(), body).into_response()
}
