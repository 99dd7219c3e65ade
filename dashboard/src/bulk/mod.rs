//! Bulk actions: requeue or delete the failed tasks selected on the Failed
//! page, or every one matching its filter; cancel the tasks selected on a
//! queue's page or the delayed page, or every one matching their filter.
//!
//! Each step is a plain HTML form:
//!
//! 1. `POST /bulk` (the page's buttons) shows a confirmation that states
//!    the count and the filter; nothing changes yet;
//! 2. `POST /bulk/run` (the confirmation's button) acts:
//!    - on a selection (at most [`MAX_SELECTED`] ids) at once, in store
//!      calls of [`BATCH`] ids, then redirects (303) to
//!      `GET /bulk/done?verb=&moved=&missed=`, which says how many were
//!      moved and how many were not; reloading it does nothing;
//!    - on "all matching" as a job in the background (`job`): it finds
//!      the matches, then acts on them [`BATCH`] at a time, and
//!      `GET /bulk/jobs/ID` shows its progress. The job's id comes from
//!      the confirmation page, so posting that form again shows the same
//!      job instead of starting another.
//!
//! Both POSTs are checked like every action (CSRF token of the session,
//! `Origin`, read-only). Requeue and delete only touch ids still in the
//! failed registry, cancel only tasks still waiting, so a repeated or late
//! action changes nothing it should not.

mod job;
mod source;

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use redis_tasks_store::{ScanCursor, ScanLimits, Store, StoreError};
use serde::Deserialize;
use tracing::info;

pub(crate) use job::{Jobs, progress};
pub(crate) use source::Source;
use source::Verb;

use crate::AppState;
use crate::actions::refused_csrf;
use crate::filter::FilterForm;
use crate::layout::{page, seg};
use crate::pages::{error_page, store_error};

/// The `id` of a listing's selection form (its checkboxes name it).
pub(crate) const FORM_ID: &str = "bulk";

/// How many ids one store call takes (each requeue call is atomic).
const BATCH: usize = 500;

/// Most ids a selection may hold (a page shows 100).
const MAX_SELECTED: usize = 1000;

/// Longest id accepted in a selection.
const MAX_ID: usize = 200;

/// Longest the confirmation of "all matching" counts.
const COUNT_BUDGET: Duration = Duration::from_millis(300);

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
    /// The listing's filter, to go back to.
    back: FilterForm,
    source: Source,
    /// The job id the confirmation gave ("all matching").
    job: Option<String>,
}

/// Reads a posted bulk form (`csrf`, `verb`, `scope`, `id`..., filter
/// fields, `from_queue` or `from`, `job`), or says why it is not one.
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
    let source = Source::of(pairs);
    if !source.verbs().contains(&verb) {
        return Err(match source {
            Source::Failed => "cancel takes the tasks of a queue or of the delayed set".to_owned(),
            _ => "queued and delayed tasks can be canceled, not requeued or deleted".to_owned(),
        });
    }
    let job = get("job").map(str::to_owned);
    if job.as_deref().is_some_and(|j| {
        j.is_empty() || j.len() > 64 || !j.bytes().all(|b| b.is_ascii_alphanumeric())
    }) {
        return Err("not a bulk job id".to_owned());
    }
    let scope = if get("scope") == Some("matching") {
        if !back.is_set() {
            return Err("\"all matching\" needs a filter; set one on the page first".to_owned());
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
        source,
        job,
    })
}

/// The bulk forms of a listing page: buttons for the ticked rows and,
/// with a filter, for every matching task (`all` of them when the page
/// counted them).
pub(crate) fn forms(source: &Source, filter: &FilterForm, all: Option<u64>) -> Markup {
    let Some(csrf) = crate::auth::csrf() else {
        return html! {};
    };
    html! {
        div.actions #bulk-actions {
            form.inline id=(FORM_ID) method="post" action="/bulk" {
                input type="hidden" name="csrf" value=(csrf);
                (source.hidden())
                (filter.hidden())
                @for verb in source.verbs() {
                    button class=(verb.class()) type="submit" name="verb" value=(verb.word()) { (verb.label()) " selected" }
                    " "
                }
            }
            @if filter.is_set() && all != Some(0) {
                form.inline #bulk-matching method="post" action="/bulk" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="scope" value="matching";
                    (source.hidden())
                    (filter.hidden())
                    @for verb in source.verbs() {
                        button class=(verb.class()) type="submit" name="verb" value=(verb.word()) {
                            (verb.label()) " all "
                            @if let Some(n) = all { (n) " " }
                            "matching"
                        }
                        " "
                    }
                }
            }
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// How many tasks `form` matches in `source`, and whether that is all of
/// them (the count stops after [`COUNT_BUDGET`]).
fn count_matching(
    store: &Store,
    source: &Source,
    form: &FilterForm,
) -> Result<Result<(u64, bool), String>, StoreError> {
    let filter = match form.to_filter(Timestamp::now(), source.times()) {
        Ok(filter) => filter,
        Err(why) => return Ok(Err(why)),
    };
    let limits = ScanLimits {
        max_found: usize::MAX,
        budget: Some(COUNT_BUDGET),
    };
    let scan = store.scan(&source.listing(), &filter, ScanCursor::START, limits)?;
    Ok(Ok((scan.found.len() as u64, scan.next.is_none())))
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
    let (n, exact) = match &request.scope {
        Scope::Selected(ids) => (ids.len() as u64, true),
        Scope::Matching(form) => {
            let (source, form) = (request.source.clone(), form.clone());
            match state
                .blocking(move |store| count_matching(store, &source, &form))
                .await
            {
                Ok(Ok(count)) => count,
                Ok(Err(why)) => return error_page(&state, StatusCode::BAD_REQUEST, &why),
                Err(e) => return store_error(&state, &e),
            }
        }
    };
    let verb = request.verb;
    let source = &request.source;
    let times = source.times();
    let about = if exact { "" } else { "at least " };
    let question = match &request.scope {
        Scope::Selected(_) => format!(
            "{} {n} selected {}{}?",
            verb.label(),
            verb.noun(n),
            source.words()
        ),
        Scope::Matching(form) => format!(
            "{} {about}{n} {}{} matching {}?",
            verb.label(),
            verb.noun(n),
            source.words(),
            form.describe(times)
        ),
    };
    let back = source.link(&request.back);
    let body = html! {
        h1 { "Confirm" }
        @if n == 0 && exact {
            div.flash.err #confirm role="alert" { "No task" (source.words()) " matches " (request.back.describe(times)) ": nothing to do." }
        } @else {
            p #confirm { strong { (question) } }
            @if !exact {
                p.muted { "Counting stopped after " (COUNT_BUDGET.as_millis()) " ms; the action finds every match first and shows its progress." }
            }
            @if verb == Verb::Delete {
                p.muted { "Their records are deleted for good." }
            }
            @if let Scope::Selected(ids) = &request.scope {
                ul.selected { @for id in ids { li { a href={ "/tasks/" (seg(id)) } { code { (id) } } } } }
            }
            form method="post" action="/bulk/run" {
                input type="hidden" name="csrf" value=(request.csrf);
                input type="hidden" name="verb" value=(verb.word());
                (source.hidden())
                @match &request.scope {
                    Scope::Selected(ids) => {
                        @for id in ids { input type="hidden" name="id" value=(id); }
                    }
                    Scope::Matching(_) => {
                        input type="hidden" name="scope" value="matching";
                        input type="hidden" name="job" value=(crate::auth::random_token());
                        input type="hidden" name="counted" value=(n);
                    }
                }
                (request.back.hidden())
                div.actions {
                    button class=(verb.class()) type="submit" {
                        (verb.label()) " " (about) (n) " task" (plural(n))
                    }
                    a href=(back) { "Back, do nothing" }
                }
            }
        }
    };
    page(&state, "Confirm", false, body).into_response()
}

/// `POST /bulk/run`: acts on a selection and redirects to the result, or
/// starts the job of "all matching" (once per confirmation) and
/// redirects to its progress.
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
    let ids = match request.scope {
        Scope::Selected(ids) => ids,
        Scope::Matching(form) => {
            let Some(id) = request.job else {
                return error_page(
                    &state,
                    StatusCode::BAD_REQUEST,
                    "\"all matching\" runs from its confirmation page: start again from the list",
                );
            };
            let counted = pairs
                .iter()
                .find(|(k, _)| k == "counted")
                .and_then(|(_, v)| v.parse().ok());
            let spec = job::Spec {
                verb,
                source: request.source,
                form,
                counted,
            };
            return job::start(&state, id, spec).await;
        }
    };
    let done = state
        .blocking(move |store| act(store, verb, &ids).map(|moved| (moved, ids.len() - moved)))
        .await;
    let (moved, missed) = match done {
        Ok(counts) => counts,
        Err(e) => return store_error(&state, &e),
    };
    info!(moved, missed, "dashboard: bulk {}", verb.word());
    let query = [request.source.query(), request.back.query()]
        .into_iter()
        .filter(|q| !q.is_empty())
        .map(|q| format!("&{q}"))
        .collect::<String>();
    Redirect::to(&format!(
        "/bulk/done?verb={}&moved={moved}&missed={missed}{query}",
        verb.word()
    ))
    .into_response()
}

/// Does `verb` to `ids`, [`BATCH`] at a time; returns how many it moved.
fn act(store: &Store, verb: Verb, ids: &[String]) -> Result<usize, StoreError> {
    let mut moved = 0;
    for batch in ids.chunks(BATCH) {
        moved += act_batch(store, verb, batch)?;
    }
    Ok(moved)
}

/// Does `verb` to at most [`BATCH`] ids in one store call (one per id for
/// cancel); returns how many it moved.
fn act_batch(store: &Store, verb: Verb, batch: &[String]) -> Result<usize, StoreError> {
    Ok(match verb {
        Verb::Requeue => store.requeue_failed(batch)?.requeued,
        Verb::Delete => usize::try_from(store.delete_failed_many(batch)?).unwrap_or(usize::MAX),
        Verb::Cancel => cancel_each(store, batch)?,
    })
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

/// What happened, in words: `Requeued 3 failed tasks: ... 1 was not (...)`.
fn result_line(verb: Verb, moved: u64, missed: u64) -> Markup {
    html! {
        (verb.done()) " " (moved) " " (verb.noun(moved))
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
}

/// `?verb=&moved=&missed=` of the result page: numbers and one of three
/// words, so a link cannot make the page say anything else (the queue
/// name only goes into the link back, escaped).
#[derive(Debug, Deserialize)]
pub(crate) struct Outcome {
    verb: String,
    moved: u64,
    missed: u64,
}

/// `GET /bulk/done`: what a bulk action on a selection did.
pub(crate) async fn done(
    State(state): State<Arc<AppState>>,
    Query(outcome): Query<Outcome>,
    Query(back): Query<FilterForm>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Some(verb) = Verb::parse(&outcome.verb) else {
        return error_page(&state, StatusCode::BAD_REQUEST, "no such bulk action");
    };
    let source = Source::of(&pairs);
    let body = html! {
        h1 { (verb.done()) }
        div.flash #result role="status" { (result_line(verb, outcome.moved, outcome.missed)) }
        p { a href=(source.link(&back)) { "Back" } }
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
        assert!(
            matches!(r.scope, Scope::Matching(ref f) if f.describe(r.source.times()) == "queue=mail")
        );
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
        assert!(
            parse(&pairs(&[
                ("verb", "requeue"),
                ("id", "a"),
                ("from", "delayed")
            ]))
            .is_err()
        );
        assert!(
            parse(&pairs(&[
                ("verb", "cancel"),
                ("id", "a"),
                ("from", "delayed")
            ]))
            .is_ok()
        );
        assert!(
            parse(&pairs(&[
                ("verb", "cancel"),
                ("id", "a"),
                ("from_queue", "q"),
                ("job", "a b")
            ]))
            .is_err()
        );
        let many: Vec<(String, String)> = std::iter::once(("verb".to_owned(), "delete".to_owned()))
            .chain((0..=MAX_SELECTED).map(|i| ("id".to_owned(), i.to_string())))
            .collect();
        assert!(parse(&many).is_err());
    }
}
