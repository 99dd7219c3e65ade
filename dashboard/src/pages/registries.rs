//! The Failed, Finished and Expired pages: a registry 100 rows a page,
//! newest first, or, with a filter (`?queue=&task=&error=&since=`), the
//! ids that match it (found inside Redis by `Store::matching`). The
//! Failed page also carries the forms of the bulk actions (`crate::bulk`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_store::{RegistryKind, StoreError};

use super::{Flash, LIST_LIMIT, Paging, error_page, listed, pager_with, store_error, task_table};
use crate::AppState;
use crate::filter::FilterForm;
use crate::layout::{flash, page};

/// `/failed`: the newest failed tasks, with their actions.
pub(crate) async fn failed(
    State(state): State<Arc<AppState>>,
    Query(msg): Query<Flash>,
    Query(paging): Query<Paging>,
    Query(filter): Query<FilterForm>,
) -> Response {
    registry_page(state, RegistryKind::Failed, msg, paging.page(), filter).await
}

/// `/expired`: the newest expired tasks (never run).
pub(crate) async fn expired(
    State(state): State<Arc<AppState>>,
    Query(msg): Query<Flash>,
    Query(paging): Query<Paging>,
    Query(filter): Query<FilterForm>,
) -> Response {
    registry_page(state, RegistryKind::Expired, msg, paging.page(), filter).await
}

/// `/finished`: the newest finished tasks.
pub(crate) async fn finished(
    State(state): State<Arc<AppState>>,
    Query(msg): Query<Flash>,
    Query(paging): Query<Paging>,
    Query(filter): Query<FilterForm>,
) -> Response {
    registry_page(state, RegistryKind::Finished, msg, paging.page(), filter).await
}

/// The ids of page `page_no` of registry `kind` (all of it, or what
/// matches `filter`), newest first, and how many there are in all.
fn page_ids(
    store: &redis_tasks_store::Store,
    kind: RegistryKind,
    filter: Option<&redis_tasks_store::TaskFilter>,
    page_no: usize,
) -> Result<(u64, Vec<String>), StoreError> {
    if let Some(filter) = filter {
        let mut ids = store.matching(kind, filter)?;
        ids.reverse();
        let total = ids.len() as u64;
        let shown = ids
            .into_iter()
            .skip(page_no.saturating_mul(LIST_LIMIT))
            .take(LIST_LIMIT)
            .collect();
        return Ok((total, shown));
    }
    let registry = match kind {
        RegistryKind::Failed => store.failed(),
        RegistryKind::Finished => store.finished(),
        RegistryKind::Expired => store.expired(),
    };
    let total = registry.count()?;
    // Newest first: page 0 is the end of the registry.
    let end = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .saturating_sub(page_no * LIST_LIMIT);
    let from = end.saturating_sub(LIST_LIMIT);
    let mut ids = if end > 0 {
        registry.ids(from, end - from)?
    } else {
        Vec::new()
    };
    ids.reverse();
    Ok((total, ids))
}

async fn registry_page(
    state: Arc<AppState>,
    kind: RegistryKind,
    msg: Flash,
    page_no: usize,
    form: FilterForm,
) -> Response {
    let now = Timestamp::now();
    let filter = match form.to_filter(now) {
        Ok(filter) => form.is_set().then_some(filter),
        Err(why) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
    };
    let read = state
        .blocking(move |store| {
            let (total, ids) = page_ids(store, kind, filter.as_ref(), page_no)?;
            let records = listed(store, &ids)?;
            Ok::<_, StoreError>((total, ids, records))
        })
        .await;
    let (total, ids, records) = match read {
        Ok(read) => read,
        Err(e) => return store_error(&state, &e),
    };
    let (title, path) = match kind {
        RegistryKind::Failed => ("Failed tasks", "/failed"),
        RegistryKind::Finished => ("Finished tasks", "/finished"),
        RegistryKind::Expired => ("Expired tasks", "/expired"),
    };
    let failed = kind == RegistryKind::Failed;
    let bulk = failed && !state.options.read_only && crate::auth::csrf().is_some();
    let body = html! {
        h1 { (title) }
        (flash(msg.text()))
        (form.form(path))
        @if form.is_set() {
            p #matching { strong { (total) " matching" } " (" (form.describe()) "), newest first." }
        } @else {
            p.muted { (total) " in the registry, newest first." }
        }
        @if bulk && !ids.is_empty() {
            (crate::bulk::forms(&form, total))
        }
        (task_table(&state, &ids, &records, now, failed, bulk.then_some(crate::bulk::FORM_ID)))
        (pager_with(path, &form.query(), page_no, total))
    };
    // A filtered page runs the filter again on each load: no auto-reload.
    page(&state, title, !form.is_set(), body).into_response()
}
