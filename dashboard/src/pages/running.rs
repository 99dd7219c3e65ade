//! The running page: the task each busy slot of the fleet runs, filtered
//! by queue, task name, text and start time, 100 a page.
//!
//! No listing in Redis holds the running tasks: each slot names its own.
//! Their number is bounded by the fleet's slots, so the page reads them
//! all (1 KiB a field, like every list) and filters them here with the
//! same rules as the filter script (`TaskFilter::matches`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_store::StoreError;

use super::{Flash, LIST_LIMIT, Paging, error_page, listed, pager, store_error, task_table};
use crate::AppState;
use crate::filter::{FilterForm, Times};
use crate::layout::{flash, page};

/// `/running`: the tasks running now.
pub(crate) async fn running(
    State(state): State<Arc<AppState>>,
    Query(msg): Query<Flash>,
    Query(paging): Query<Paging>,
    Query(form): Query<FilterForm>,
) -> Response {
    let now = Timestamp::now();
    let filter = match form.to_filter(now, Times::Started) {
        Ok(filter) => filter,
        Err(why) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
    };
    let read = state
        .blocking(move |store| {
            let ids: Vec<String> = store
                .worker_infos()?
                .into_iter()
                .filter_map(|w| w.current_task)
                .collect();
            let records = listed(store, &ids)?;
            Ok::<_, StoreError>(
                ids.into_iter()
                    .zip(records)
                    .filter(|(_, r)| match r {
                        Ok(r) => filter.matches(r, r.started_at),
                        Err(_) => true,
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await;
    let rows = match read {
        Ok(rows) => rows,
        Err(e) => return store_error(&state, &e),
    };
    let page_no = paging.page();
    let total = rows.len() as u64;
    let (ids, records): (Vec<String>, Vec<_>) = rows
        .into_iter()
        .skip(page_no.saturating_mul(LIST_LIMIT))
        .take(LIST_LIMIT)
        .unzip();
    let body = html! {
        h1 { "Running tasks" }
        (flash(msg.text()))
        (form.form("/running", Times::Started))
        p #matching {
            strong { (total) @if form.is_set() { " matching" } @else { " running" } }
            @if form.is_set() { " (" (form.describe(Times::Started)) ")" }
            ", in the order of their slots."
        }
        (task_table(&state, &ids, &records, now, true, None))
        (pager("/running", &form.query(), page_no, total))
    };
    page(&state, "Running tasks", !form.is_set(), body).into_response()
}
