//! `/search?q=`: a task by its id, or the ids of the failed, finished,
//! expired and canceled registries that start with a prefix.
//!
//! Bounded: the prefix search walks each registry with `ZSCAN MATCH
//! prefix*` and stops at [`MAX_FOUND`] ids or about [`SCAN_BUDGET`]
//! entries looked at per registry, and says so when it stopped early.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use redis_tasks_store::{IdSearch, RegistryKind, StoreError};
use serde::Deserialize;

use super::store_error;
use crate::AppState;
use crate::layout::{page, seg};

/// Shortest prefix searched for.
const MIN_PREFIX: usize = 4;

/// Longest text accepted.
const MAX_QUERY: usize = 128;

/// Most ids a search lists.
pub(crate) const MAX_FOUND: usize = 100;

/// About how many entries of each registry a search looks at.
pub(crate) const SCAN_BUDGET: usize = 3000;

/// `?q=...`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
}

/// Why `q` cannot be searched for, if it cannot.
fn invalid(q: &str) -> Option<String> {
    if q.len() > MAX_QUERY {
        return Some(format!("A task id is at most {MAX_QUERY} characters long."));
    }
    if !q
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Some(
            "A task id holds only letters, digits and the characters - _ . : (nothing else is searched for)."
                .to_owned(),
        );
    }
    if q.len() < MIN_PREFIX {
        return Some(format!(
            "Give a task id or at least {MIN_PREFIX} of its first characters."
        ));
    }
    None
}

/// What a search found.
enum Found {
    /// A task with exactly that id.
    Task,
    /// Ids that start with it.
    Prefix(IdSearch),
}

/// `/search`: an exact id goes to its page; a prefix lists the matching ids.
pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let q = query
        .q
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let form = html! {
        form #search-page method="get" action="/search" {
            input type="text" name="q" value=(q) maxlength=(MAX_QUERY) aria-label="task id or prefix";
            " " button type="submit" { "Search" }
        }
    };
    if q.is_empty() {
        let body = html! {
            h1 { "Search" }
            (form)
            p.muted { "A task id, or at least " (MIN_PREFIX) " of its first characters (failed, finished, expired and canceled tasks)." }
        };
        return page(&state, "Search", false, body).into_response();
    }
    if let Some(why) = invalid(&q) {
        let body = html! {
            h1 { "Search" }
            div.flash.err #search-error role="alert" { (why) }
            (form)
        };
        return (StatusCode::BAD_REQUEST, page(&state, "Search", false, body)).into_response();
    }
    let wanted = q.clone();
    let found = state
        .blocking(move |store| match store.task_preview(&wanted, 64) {
            // Unreadable but there: its page says why.
            Ok(_) => Ok(Found::Task),
            Err(e) if e.is_connection_error() => Err(e),
            Err(StoreError::NotFound { .. }) => store
                .ids_with_prefix(&RegistryKind::ALL, &wanted, MAX_FOUND, SCAN_BUDGET)
                .map(Found::Prefix),
            Err(_) => Ok(Found::Task),
        })
        .await;
    let search = match found {
        Ok(Found::Task) => return Redirect::to(&format!("/tasks/{}", seg(&q))).into_response(),
        Ok(Found::Prefix(search)) => search,
        Err(e) => return store_error(&state, &e),
    };
    let body = html! {
        h1 { "Search" }
        (form)
        p #search-count {
            (search.found.len()) " task id" @if search.found.len() != 1 { "s" } " starting with " code { (q) } " in the failed, finished, expired and canceled registries."
        }
        @if !search.complete {
            div.flash.err #search-capped role="status" {
                "The search stopped early (at " (MAX_FOUND) " ids, or about " (SCAN_BUDGET)
                " entries looked at in each registry): there may be more. Give a longer prefix."
            }
        }
        @if !search.found.is_empty() {
            div.scroll { table #search-results {
                thead { tr { th { "task id" } th { "registry" } } }
                tbody {
                    @for (kind, id) in &search.found {
                        tr {
                            td { a href={ "/tasks/" (seg(id)) } { code { (id) } } }
                            td { a href={ "/" (kind.name()) } { (kind.name()) } }
                        }
                    }
                }
            } }
        }
    };
    page(&state, "Search", false, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        assert!(invalid("3f2a").is_none());
        assert!(invalid("3f2a-9b_x.y:z").is_none());
        assert!(invalid("3f2").is_some());
        assert!(invalid("<script>").is_some());
        assert!(invalid("abcd*").is_some());
        assert!(invalid("abcd efgh").is_some());
        assert!(invalid(&"a".repeat(MAX_QUERY + 1)).is_some());
    }
}
