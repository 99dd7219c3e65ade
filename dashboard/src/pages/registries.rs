//! The Failed, Finished, Expired and Canceled pages: a registry 100 rows a page,
//! newest first, or, with a filter (`?queue=&task=&error=&since=`), the
//! tasks that match it, a bounded search at a time (`listing`). The
//! Failed page also carries the forms of the bulk actions (`crate::bulk`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_store::{Listing, RegistryKind, StoreError};

use super::listing::{self, CursorQuery, Found};
use super::{Flash, LIST_LIMIT, Paging, error_page, listed, pager, store_error, task_table};
use crate::AppState;
use crate::filter::{FilterForm, Times};
use crate::layout::{flash, page};

/// A registry page's handler: the same for each, but for the registry.
macro_rules! registry_handler {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        pub(crate) async fn $name(
            State(state): State<Arc<AppState>>,
            Query(msg): Query<Flash>,
            Query(paging): Query<Paging>,
            Query(cursor): Query<CursorQuery>,
            Query(filter): Query<FilterForm>,
        ) -> Response {
            registry_page(state, $kind, msg, paging, cursor, filter).await
        }
    };
}

registry_handler!(
    /// `/failed`: the newest failed tasks, with their actions.
    failed,
    RegistryKind::Failed
);

registry_handler!(
    /// `/expired`: the newest expired tasks (never run).
    expired,
    RegistryKind::Expired
);

registry_handler!(
    /// `/canceled`: the newest canceled tasks, each with Delete (a canceled
    /// task is not requeued: enqueue it again instead).
    canceled,
    RegistryKind::Canceled
);

registry_handler!(
    /// `/finished`: the newest finished tasks.
    finished,
    RegistryKind::Finished
);

/// The ids of page `page_no` of registry `kind`, newest first, and how
/// many there are in all.
fn page_ids(
    store: &redis_tasks_store::Store,
    kind: RegistryKind,
    page_no: usize,
) -> Result<(u64, Vec<String>), StoreError> {
    let registry = store.registry(kind);
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

/// The rows of a registry page: a page by number, or a filtered search.
enum Rows {
    Paged { total: u64, page_no: usize },
    Found(Found),
}

async fn registry_page(
    state: Arc<AppState>,
    kind: RegistryKind,
    msg: Flash,
    paging: Paging,
    cursor: CursorQuery,
    form: FilterForm,
) -> Response {
    let now = Timestamp::now();
    let filter = match form.to_filter(now, Times::Ended) {
        Ok(filter) => form.is_set().then_some(filter),
        Err(why) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
    };
    let from = match cursor.cursor() {
        Ok(from) => from,
        Err(why) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
    };
    let page_no = paging.page();
    let read = state
        .blocking(move |store| {
            let (rows, ids) = match filter {
                Some(filter) => {
                    let found =
                        listing::search(store, &Listing::Registry(kind), &filter, from, true)?;
                    let ids = found.ids.clone();
                    (Rows::Found(found), ids)
                }
                None => {
                    let (total, ids) = page_ids(store, kind, page_no)?;
                    (Rows::Paged { total, page_no }, ids)
                }
            };
            let records = listed(store, &ids)?;
            Ok::<_, StoreError>((rows, ids, records))
        })
        .await;
    let (rows, ids, records) = match read {
        Ok(read) => read,
        Err(e) => return store_error(&state, &e),
    };
    let (title, path) = match kind {
        RegistryKind::Failed => ("Failed tasks", "/failed"),
        RegistryKind::Finished => ("Finished tasks", "/finished"),
        RegistryKind::Expired => ("Expired tasks", "/expired"),
        RegistryKind::Canceled => ("Canceled tasks", "/canceled"),
    };
    let failed = kind == RegistryKind::Failed;
    let actions = failed || kind == RegistryKind::Canceled;
    let bulk = failed && !state.options.read_only && crate::auth::csrf().is_some();
    let first = cursor.at_start();
    // "All N matching" names N when this page counted them all.
    let all = match &rows {
        Rows::Found(found) => (found.complete && first).then_some(found.count as u64),
        Rows::Paged { .. } => None,
    };
    let source = crate::bulk::Source::Failed;
    let body = html! {
        h1 { (title) }
        (flash(msg.text()))
        (form.form(path, Times::Ended))
        @match &rows {
            Rows::Found(found) => (found.summary(&form, Times::Ended, first)),
            Rows::Paged { total, .. } => p.muted { (total) " in the registry, newest first." },
        }
        @if bulk && !ids.is_empty() {
            (crate::bulk::forms(&source, &form, all))
        }
        (task_table(&state, &ids, &records, now, actions, bulk.then_some(crate::bulk::FORM_ID)))
        @match &rows {
            Rows::Found(found) => (found.pager(path, &form.query(), first)),
            Rows::Paged { total, page_no } => (pager(path, "", *page_no, *total)),
        }
    };
    // A filtered page runs the filter again on each load: no auto-reload.
    page(&state, title, !form.is_set(), body).into_response()
}
