//! A filtered listing page, searched a bounded slice at a time: the
//! store's [`Store::scan`] from the page's `?cursor=` for at most
//! [`PAGE_BUDGET`] of Redis time, then the first [`LIST_LIMIT`] matches
//! shown, a count of what the slice found, and a link that goes on from
//! where the page stopped (the next page, or "continue search" when the
//! budget ran out first). Shared by the registries, the delayed set and
//! the queues.

use std::time::Duration;

use maud::{Markup, html};
use redis_tasks_store::{Listing, ScanCursor, ScanLimits, Store, StoreError, TaskFilter};
use serde::Deserialize;

use super::LIST_LIMIT;
use crate::filter::{FilterForm, Times};

/// Longest a page searches (between windows of 1,000 entries, each a few
/// milliseconds of Redis time).
pub(crate) const PAGE_BUDGET: Duration = Duration::from_millis(200);

/// Most matches a page counts (it shows [`LIST_LIMIT`] of them).
const MAX_COUNTED: usize = 10_000;

/// `?cursor=` of a listing: where its page starts.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CursorQuery {
    cursor: Option<String>,
}

impl CursorQuery {
    /// The cursor given (the start when none), or why it is not one.
    pub(crate) fn cursor(&self) -> Result<ScanCursor, String> {
        match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => Ok(ScanCursor::START),
            Some(text) if text.len() <= 40 => text.parse().map_err(|e| format!("cursor: {e}")),
            Some(_) => Err("cursor: too long".to_owned()),
        }
    }

    /// Whether the page is the listing's first.
    pub(crate) fn at_start(&self) -> bool {
        self.cursor.as_deref().is_none_or(str::is_empty)
    }
}

/// What one page's search found.
#[derive(Debug)]
pub(crate) struct Found {
    /// The ids to show, at most [`LIST_LIMIT`].
    pub(crate) ids: Vec<String>,
    /// Matches the slice found from the page's start (shown or not).
    pub(crate) count: usize,
    /// Whether the slice reached the end of the listing.
    pub(crate) complete: bool,
    /// Entries looked at.
    pub(crate) looked: u64,
    /// Where the next page starts, and whether it goes on with a search
    /// the budget stopped (rather than after the last row shown).
    pub(crate) next: Option<(ScanCursor, bool)>,
}

/// Searches `listing` for `filter` from `from`, within the page budget;
/// with `count` false it stops after one page of matches (a listing shown
/// whole, where counting would only cost time).
pub(crate) fn search(
    store: &Store,
    listing: &Listing,
    filter: &TaskFilter,
    from: ScanCursor,
    count: bool,
) -> Result<Found, StoreError> {
    let limits = ScanLimits {
        max_found: if count { MAX_COUNTED } else { LIST_LIMIT + 1 },
        budget: Some(PAGE_BUDGET),
    };
    let scan = store.scan(listing, filter, from, limits)?;
    let next = match scan.found.get(LIST_LIMIT) {
        Some(_) => Some((scan.found[LIST_LIMIT - 1].1, false)),
        None => scan.next.map(|c| (c, scan.found.len() < LIST_LIMIT)),
    };
    Ok(Found {
        count: scan.found.len(),
        complete: scan.next.is_none(),
        looked: scan.looked,
        ids: scan
            .found
            .into_iter()
            .take(LIST_LIMIT)
            .map(|(id, _)| id)
            .collect(),
        next,
    })
}

impl Found {
    /// The count line above a filtered table (`#matching`).
    pub(crate) fn summary(&self, form: &FilterForm, times: Times, first: bool) -> Markup {
        let words = form.describe(times);
        html! {
            p #matching {
                @if self.complete {
                    strong { (self.count) " matching" }
                    @if !first { " from this page on" }
                } @else {
                    strong { "at least " (self.count) " matching" }
                    " in the " (self.looked) " entries looked at"
                    @if self.count < MAX_COUNTED { " (a page searches for at most " (PAGE_BUDGET.as_millis()) " ms)" }
                }
                @if !words.is_empty() { " (" (words) ")" }
                "."
            }
        }
    }

    /// The links to the listing's first page and on from this one, for
    /// `path` with `query` (the filter, encoded).
    pub(crate) fn pager(&self, path: &str, query: &str, first: bool) -> Markup {
        let sep = if query.is_empty() { "" } else { "&" };
        html! {
            @if !first || self.next.is_some() {
                p.pager #pager {
                    @if !first {
                        a href={ (path) "?" (query) } { "← first page" } " "
                    }
                    @if let Some((cursor, searching)) = self.next {
                        a #next href={ (path) "?" (query) (sep) "cursor=" (cursor) } {
                            @if searching { "continue search →" } @else { "next →" }
                        }
                    }
                }
            }
        }
    }
}
