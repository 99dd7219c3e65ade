//! Bulk actions: requeue or delete the tasks selected on the Failed page,
//! or every task matching its filter; cancel the tasks selected on a
//! queue's page.
//!
//! Three steps, each a plain HTML form:
//!
//! 1. `POST /bulk` (the page's buttons) shows a confirmation that states
//!    the count and the filter; nothing changes yet;
//! 2. `POST /bulk/run` (the confirmation's button) acts, in batches of
//!    [`BATCH`] ids, and redirects (303) to
//! 3. `GET /bulk/done?verb=&moved=&missed=`, which says how many were
//!    moved and how many were not (gone meanwhile); reloading it does
//!    nothing.
//!
//! Both POSTs are checked like every action (CSRF token of the session,
//! `Origin`, read-only). "All matching" runs the filter again when
//! confirmed; requeue and delete only touch ids still in the failed
//! registry, so a repeated or late action changes nothing it should not.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use redis_tasks_store::{RegistryKind, Store, StoreError};
use serde::Deserialize;
use tracing::info;

use crate::AppState;
use crate::actions::refused_csrf;
use crate::filter::FilterForm;
use crate::layout::{page, seg};
use crate::pages::{error_page, store_error};

/// The `id` of the Failed page's selection form (its checkboxes name it).
pub(crate) const FORM_ID: &str = "bulk";

/// How many ids one store call takes (each requeue call is atomic).
const BATCH: usize = 500;

/// Most ids a selection may hold (a page shows 100).
const MAX_SELECTED: usize = 1000;

/// Longest id accepted in a selection.
const MAX_ID: usize = 200;

/// What a bulk action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Requeue,
    Delete,
    /// Selected tasks of a queue.
    Cancel,
}

impl Verb {
    fn parse(text: &str) -> Option<Verb> {
        match text {
            "requeue" => Some(Verb::Requeue),
            "delete" => Some(Verb::Delete),
            "cancel" => Some(Verb::Cancel),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verb::Requeue => "requeue",
            Verb::Delete => "delete",
            Verb::Cancel => "cancel",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verb::Requeue => "Requeue",
            Verb::Delete => "Delete",
            Verb::Cancel => "Cancel",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Verb::Requeue => "Requeued",
            Verb::Delete => "Deleted",
            Verb::Cancel => "Canceled",
        }
    }

    /// What the tasks it acts on are called.
    fn noun(self, n: usize) -> &'static str {
        match (self, n) {
            (Verb::Cancel, 1) => "task",
            (Verb::Cancel, _) => "tasks",
            (_, 1) => "failed task",
            _ => "failed tasks",
        }
    }
}

/// Which tasks: the ids selected, or all that match the filter.
#[derive(Debug, Clone)]
enum Scope {
    Selected(Vec<String>),
    Matching(FilterForm),
}

/// A posted bulk form, checked.
#[derive(Debug)]
struct Request {
    csrf: String,
    verb: Verb,
    scope: Scope,
    /// The Failed page's filter, to go back to.
    back: FilterForm,
    /// The queue whose page the selection came from (cancel).
    from_queue: Option<String>,
}

/// Reads a posted bulk form (`csrf`, `verb`, `scope`, `id`..., filter
/// fields), or says why it is not one.
fn parse(pairs: &[(String, String)]) -> Result<Request, String> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let csrf = get("csrf").unwrap_or_default().to_owned();
    let verb = Verb::parse(get("verb").unwrap_or_default())
        .ok_or("no such bulk action: choose requeue, delete or cancel")?;
    let back = FilterForm::from_pairs(pairs);
    let from_queue = get("from_queue").map(str::to_owned);
    if verb == Verb::Cancel && (from_queue.is_none() || get("scope") == Some("matching")) {
        return Err("cancel takes the tasks selected on a queue's page".to_owned());
    }
    let scope = if get("scope") == Some("matching") {
        if !back.is_set() {
            return Err("\"all matching\" needs a filter; set one on the Failed page".to_owned());
        }
        Scope::Matching(back.clone())
    } else {
        // Each id once: a requeue given the same id twice in one call
        // would push it twice.
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<String> = pairs
            .iter()
            .filter(|(k, v)| k == "id" && seen.insert(v.as_str()))
            .map(|(_, v)| v.clone())
            .collect();
        if ids.is_empty() {
            return Err("no task selected: tick the tasks first".to_owned());
        }
        if ids.len() > MAX_SELECTED {
            return Err(format!(
                "at most {MAX_SELECTED} tasks can be selected at once"
            ));
        }
        if ids.iter().any(|id| id.is_empty() || id.len() > MAX_ID) {
            return Err("a selected id is empty or too long".to_owned());
        }
        Scope::Selected(ids)
    };
    Ok(Request {
        csrf,
        verb,
        scope,
        back,
        from_queue,
    })
}

/// The ids the request is for, now.
fn ids_of(
    store: &Store,
    scope: &Scope,
    now: Timestamp,
) -> Result<Result<Vec<String>, String>, StoreError> {
    match scope {
        Scope::Selected(ids) => Ok(Ok(ids.clone())),
        Scope::Matching(form) => match form.to_filter(now) {
            Ok(filter) => store.matching(RegistryKind::Failed, &filter).map(Ok),
            Err(why) => Ok(Err(why)),
        },
    }
}

/// The forms of the Failed page: the selection's buttons and, with a
/// filter, those for every matching task (`total` of them).
pub(crate) fn forms(filter: &FilterForm, total: u64) -> Markup {
    let Some(csrf) = crate::auth::csrf() else {
        return html! {};
    };
    html! {
        div.actions #bulk-actions {
            form.inline id=(FORM_ID) method="post" action="/bulk" {
                input type="hidden" name="csrf" value=(csrf);
                (filter.hidden())
                button.primary type="submit" name="verb" value="requeue" { "Requeue selected" }
                " "
                button.danger type="submit" name="verb" value="delete" { "Delete selected" }
            }
            @if filter.is_set() && total > 0 {
                form.inline #bulk-matching method="post" action="/bulk" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="scope" value="matching";
                    (filter.hidden())
                    button.primary type="submit" name="verb" value="requeue" { "Requeue all " (total) " matching" }
                    " "
                    button.danger type="submit" name="verb" value="delete" { "Delete all " (total) " matching" }
                }
            }
        }
    }
}

/// The form of a queue's page: cancel the tasks selected there.
pub(crate) fn queue_form(queue: &str) -> Markup {
    let Some(csrf) = crate::auth::csrf() else {
        return html! {};
    };
    html! {
        div.actions #bulk-actions {
            form.inline id=(FORM_ID) method="post" action="/bulk" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="from_queue" value=(queue);
                button.danger type="submit" name="verb" value="cancel" { "Cancel selected" }
            }
        }
    }
}

/// Where to go back to after a bulk action.
fn back_link(verb: Verb, back: &FilterForm, from_queue: Option<&str>) -> String {
    match (verb, from_queue) {
        (Verb::Cancel, Some(queue)) => format!("/queues/{}", seg(queue)),
        _ => failed_link(back),
    }
}

/// `/failed` with the filter of `back`.
fn failed_link(back: &FilterForm) -> String {
    let query = back.query();
    if query.is_empty() {
        "/failed".to_owned()
    } else {
        format!("/failed?{query}")
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `POST /bulk`: the confirmation, with the count.
pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let request = match parse(&pairs) {
        Ok(r) => r,
        Err(why) => {
            let csrf = pairs
                .iter()
                .find(|(k, _)| k == "csrf")
                .map_or("", |p| p.1.as_str());
            return refused_csrf(&state, &headers, csrf)
                .unwrap_or_else(|| error_page(&state, StatusCode::BAD_REQUEST, &why));
        }
    };
    if let Some(refusal) = refused_csrf(&state, &headers, &request.csrf) {
        return refusal;
    }
    let scope = request.scope.clone();
    let ids = match state
        .blocking(move |store| ids_of(store, &scope, Timestamp::now()))
        .await
    {
        Ok(Ok(ids)) => ids,
        Ok(Err(why)) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
        Err(e) => return store_error(&state, &e),
    };
    let n = ids.len();
    let verb = request.verb;
    let question = match &request.scope {
        Scope::Selected(_) => match &request.from_queue {
            Some(queue) if verb == Verb::Cancel => format!(
                "{} {n} selected {} of queue {queue}?",
                verb.label(),
                verb.noun(n)
            ),
            _ => format!("{} {n} selected {}?", verb.label(), verb.noun(n)),
        },
        Scope::Matching(form) => format!(
            "{} {n} {} matching {}?",
            verb.label(),
            verb.noun(n),
            form.describe()
        ),
    };
    let back = back_link(verb, &request.back, request.from_queue.as_deref());
    let body = html! {
        h1 { "Confirm" }
        @if n == 0 {
            div.flash.err #confirm role="alert" { "No failed task matches " (request.back.describe()) ": nothing to do." }
        } @else {
            p #confirm { strong { (question) } }
            @if verb == Verb::Delete {
                p.muted { "Their records are deleted for good." }
            }
            @if let Scope::Selected(ids) = &request.scope {
                ul.selected { @for id in ids { li { a href={ "/tasks/" (seg(id)) } { code { (id) } } } } }
            }
            form method="post" action="/bulk/run" {
                input type="hidden" name="csrf" value=(request.csrf);
                input type="hidden" name="verb" value=(verb.word());
                @if let Some(queue) = &request.from_queue {
                    input type="hidden" name="from_queue" value=(queue);
                }
                @match &request.scope {
                    Scope::Selected(ids) => {
                        @for id in ids { input type="hidden" name="id" value=(id); }
                    }
                    Scope::Matching(_) => { input type="hidden" name="scope" value="matching"; }
                }
                (request.back.hidden())
                div.actions {
                    button class=(if verb == Verb::Requeue { "primary" } else { "danger" }) type="submit" {
                        (verb.label()) " " (n) " task" (plural(n))
                    }
                    a href=(back) { "Back, do nothing" }
                }
            }
        }
    };
    page(&state, "Confirm", false, body).into_response()
}

/// `POST /bulk/run`: acts, then redirects to the result.
pub(crate) async fn run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |p| p.1.as_str());
    if let Some(refusal) = refused_csrf(&state, &headers, csrf) {
        return refusal;
    }
    let request = match parse(&pairs) {
        Ok(r) => r,
        Err(why) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
    };
    let verb = request.verb;
    let scope = request.scope.clone();
    let done = state
        .blocking(move |store| {
            let ids = match ids_of(store, &scope, Timestamp::now())? {
                Ok(ids) => ids,
                Err(why) => return Ok(Err(why)),
            };
            let mut moved = 0usize;
            for batch in ids.chunks(BATCH) {
                moved += match verb {
                    Verb::Requeue => store.requeue_failed(batch)?.requeued,
                    Verb::Delete => {
                        usize::try_from(store.delete_failed_many(batch)?).unwrap_or(usize::MAX)
                    }
                    Verb::Cancel => cancel_each(store, batch)?,
                };
            }
            Ok::<_, StoreError>(Ok((moved, ids.len().saturating_sub(moved))))
        })
        .await;
    let (moved, missed) = match done {
        Ok(Ok(counts)) => counts,
        Ok(Err(why)) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
        Err(e) => return store_error(&state, &e),
    };
    info!(moved, missed, "dashboard: bulk {}", verb.word());
    let mut query = request.back.query();
    if let (Verb::Cancel, Some(queue)) = (verb, &request.from_queue) {
        query = format!("from_queue={}", seg(queue));
    }
    let sep = if query.is_empty() { "" } else { "&" };
    Redirect::to(&format!(
        "/bulk/done?verb={}&moved={moved}&missed={missed}{sep}{query}",
        verb.word()
    ))
    .into_response()
}

/// Cancels each of `ids` (`Store::cancel_task`); returns how many were
/// canceled or asked to stop. One that cannot be canceled any more
/// (started and ended, canceled already, gone) is passed over.
fn cancel_each(store: &Store, ids: &[String]) -> Result<usize, StoreError> {
    let mut canceled = 0;
    for id in ids {
        match store.cancel_task(id) {
            Ok(_) => canceled += 1,
            Err(e) if e.is_connection_error() => return Err(e),
            Err(_) => {}
        }
    }
    Ok(canceled)
}

/// `?verb=&moved=&missed=` of the result page: numbers and one of three
/// words, so a link cannot make the page say anything else (the queue
/// name only goes into the link back, escaped).
#[derive(Debug, Deserialize)]
pub(crate) struct Outcome {
    verb: String,
    moved: u64,
    missed: u64,
    #[serde(default)]
    from_queue: Option<String>,
}

/// `GET /bulk/done`: what a bulk action did.
pub(crate) async fn done(
    State(state): State<Arc<AppState>>,
    Query(outcome): Query<Outcome>,
    Query(back): Query<FilterForm>,
) -> Response {
    let Some(verb) = Verb::parse(&outcome.verb) else {
        return error_page(&state, StatusCode::BAD_REQUEST, "no such bulk action");
    };
    let (moved, missed) = (outcome.moved, outcome.missed);
    let body = html! {
        h1 { (verb.done()) }
        div.flash #result role="status" {
            (verb.done()) " " (moved) " " (verb.noun(usize::try_from(moved).unwrap_or(2)))
            @if verb == Verb::Requeue { ": they are back at the end of their queues" }
            "."
            @if missed > 0 {
                " " (missed) " " @if missed == 1 { "was" } @else { "were" } " not "
                @if verb == Verb::Cancel {
                    "(no longer waiting: started, ended or canceled meanwhile)."
                } @else {
                    "(no longer in the failed registry: requeued or deleted meanwhile)."
                }
            }
        }
        p { a href=(back_link(verb, &back, outcome.from_queue.as_deref())) { "Back" } }
    };
    page(&state, verb.done(), false, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_selection_and_a_filter_are_read() {
        let r = parse(&pairs(&[
            ("csrf", "t"),
            ("verb", "delete"),
            ("id", "a"),
            ("id", "b"),
            ("id", "a"),
        ]))
        .expect("selection");
        assert_eq!(r.verb, Verb::Delete);
        assert!(matches!(r.scope, Scope::Selected(ref ids) if ids == &["a", "b"]));
        let r = parse(&pairs(&[
            ("verb", "requeue"),
            ("scope", "matching"),
            ("queue", "mail"),
        ]))
        .expect("matching");
        assert!(matches!(r.scope, Scope::Matching(ref f) if f.describe() == "queue=mail"));
    }

    #[test]
    fn bad_forms_are_refused() {
        assert!(parse(&pairs(&[("verb", "explode"), ("id", "a")])).is_err());
        assert!(parse(&pairs(&[("verb", "requeue")])).is_err());
        assert!(parse(&pairs(&[("verb", "requeue"), ("scope", "matching")])).is_err());
        assert!(parse(&pairs(&[("verb", "cancel"), ("id", "a")])).is_err());
        assert!(
            parse(&pairs(&[
                ("verb", "cancel"),
                ("id", "a"),
                ("from_queue", "q")
            ]))
            .is_ok()
        );
        let many: Vec<(String, String)> = std::iter::once(("verb".to_owned(), "delete".to_owned()))
            .chain((0..=MAX_SELECTED).map(|i| ("id".to_owned(), i.to_string())))
            .collect();
        assert!(parse(&many).is_err());
    }
}
