//! Bulk jobs: "all matching" done in the background, in batches, with a
//! progress page.
//!
//! The confirmation page gives each form a random job id; `POST /bulk/run`
//! starts the job under that id unless one already runs or ran under it
//! (the table is checked and filled under one lock), so posting the same
//! form again, or reloading, shows the same job and acts once. The job
//! first finds every match (a scan a window at a time, as the pages do),
//! then acts on them [`super::BATCH`] at a time; `GET /bulk/jobs/ID` shows
//! how far it got and reloads itself each second until it is done. Jobs
//! live in the dashboard process: a restart forgets them (what they did
//! stays done).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::html;
use redis_tasks_store::{ScanCursor, ScanLimits, Store, StoreError};
use tracing::{info, warn};

use super::source::{Source, Verb};
use super::{BATCH, act_batch, result_line};
use crate::AppState;
use crate::filter::FilterForm;
use crate::layout::page_refreshed;
use crate::pages::error_page;

/// Jobs kept for their pages; the oldest finished ones are forgotten
/// beyond this.
const KEPT: usize = 100;

/// Jobs that may run at once; a new one past this is refused (each holds a
/// blocking thread and a Redis connection while it runs).
const RUNNING_MAX: usize = 4;

/// How long `POST /bulk/run` waits for a job to end before it shows the
/// progress page (a small job's result then comes at once).
const WAIT_FOR_END: Duration = Duration::from_millis(300);

/// How long one scan of the finding phase runs before the progress is
/// updated.
const SLICE: Duration = Duration::from_millis(200);

/// What a job is asked to do.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub(super) verb: Verb,
    pub(super) source: Source,
    pub(super) form: FilterForm,
    /// The count the confirmation stated (shown while finding).
    pub(super) counted: Option<u64>,
}

/// How far a job got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Entries looked at while finding.
    looked: u64,
    /// Matches found so far.
    found: u64,
    /// Whether finding is over (acting started).
    acting: bool,
    /// Matches acted on so far.
    done: u64,
    /// Of those, moved (the rest were not there any more).
    moved: u64,
    /// Ended: `Ok` done, `Err` why it stopped.
    ended: Option<Result<(), String>>,
}

#[derive(Debug)]
struct Job {
    spec: Spec,
    started: Instant,
    progress: Mutex<Progress>,
}

/// The dashboard's bulk jobs by id.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl Jobs {
    /// The job `id`, and whether it was made now (from `spec`); none when
    /// it is new and [`RUNNING_MAX`] jobs are running.
    fn get_or_add(&self, id: &str, spec: Spec) -> Option<(Arc<Job>, bool)> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get(id) {
            return Some((Arc::clone(job), false));
        }
        let running = jobs
            .values()
            .filter(|j| j.progress().ended.is_none())
            .count();
        if running >= RUNNING_MAX {
            return None;
        }
        if jobs.len() >= KEPT {
            let oldest = jobs
                .iter()
                .filter(|(_, j)| j.progress().ended.is_some())
                .min_by_key(|(_, j)| j.started)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                jobs.remove(&oldest);
            }
        }
        let job = Arc::new(Job {
            spec,
            started: Instant::now(),
            progress: Mutex::new(Progress::default()),
        });
        jobs.insert(id.to_owned(), Arc::clone(&job));
        Some((job, true))
    }

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(id).cloned()
    }
}

impl Job {
    fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Finds the matches, then acts on them; progress as it goes.
    fn work(&self, store: &Store) -> Result<(), String> {
        let spec = &self.spec;
        let filter = spec.form.to_filter(Timestamp::now(), spec.source.times())?;
        let listing = spec.source.listing();
        let mut ids = Vec::new();
        let mut cursor = ScanCursor::START;
        let limits = ScanLimits {
            max_found: usize::MAX,
            budget: Some(SLICE),
        };
        loop {
            let scan = store
                .scan(&listing, &filter, cursor, limits)
                .map_err(|e| e.to_string())?;
            ids.extend(scan.found.into_iter().map(|(id, _)| id));
            self.update(|p| {
                p.looked += scan.looked;
                p.found = ids.len() as u64;
            });
            match scan.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        self.update(|p| p.acting = true);
        for batch in ids.chunks(BATCH) {
            let moved =
                act_batch(store, spec.verb, batch).map_err(|e: StoreError| e.to_string())?;
            self.update(|p| {
                p.done += batch.len() as u64;
                p.moved += moved as u64;
            });
        }
        Ok(())
    }
}

/// Starts job `id` (unless it exists) and redirects to its page, after
/// waiting a moment for it to end.
pub(super) async fn start(state: &Arc<AppState>, id: String, spec: Spec) -> Response {
    let Some((job, new)) = state.jobs.get_or_add(&id, spec) else {
        warn!(job = %id, "dashboard: bulk job refused, {RUNNING_MAX} are running");
        return error_page(
            state,
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "{RUNNING_MAX} bulk jobs are running already: start this one again once one of them has ended"
            ),
        );
    };
    if new {
        let worker = Arc::clone(&job);
        info!(job = %id, "dashboard: bulk {} of all matching started", job.spec.verb.word());
        let state = Arc::clone(state);
        let log_id = id.clone();
        tokio::spawn(async move {
            let ended = state
                .blocking({
                    let worker = Arc::clone(&worker);
                    move |store| worker.work(store)
                })
                .await;
            let p = worker.progress();
            match &ended {
                Ok(()) => {
                    info!(job = %log_id, moved = p.moved, missed = p.done - p.moved, "dashboard: bulk job done")
                }
                Err(why) => warn!(job = %log_id, "dashboard: bulk job stopped: {why}"),
            }
            worker.update(|p| p.ended = Some(ended));
        });
    }
    let deadline = Instant::now() + WAIT_FOR_END;
    while job.progress().ended.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Redirect::to(&format!("/bulk/jobs/{id}")).into_response()
}

/// `GET /bulk/jobs/ID`: a job's progress line, reloaded each second until
/// it ends, then its result.
pub(crate) async fn progress(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let Some(job) = state.jobs.get(&id) else {
        return error_page(
            &state,
            StatusCode::NOT_FOUND,
            "No such bulk job here (a restarted dashboard forgets its jobs; what they did stays done).",
        );
    };
    let p = job.progress();
    let spec = &job.spec;
    let verb = spec.verb;
    let times = spec.source.times();
    let title = match p.ended {
        Some(Ok(())) => verb.done(),
        Some(Err(_)) => "Stopped",
        None => "Working",
    };
    let body = html! {
        h1 { (title) }
        p.muted { (verb.label()) " every task" (spec.source.words()) " matching " (spec.form.describe(times)) "." }
        @match &p.ended {
            Some(Ok(())) => div.flash #result role="status" { (result_line(verb, p.moved, p.done - p.moved)) },
            Some(Err(why)) => div.flash.err #result role="alert" {
                "Stopped after " (p.done) " of " (p.found) ": " (why) ". " (result_line(verb, p.moved, p.done - p.moved))
            },
            None => p #progress role="status" {
                @if p.acting {
                    progress value=(p.done) max=(p.found.max(1)) {}
                    " " (verb.done()) " " (p.moved) ", " (p.done) " of " (p.found) " done"
                } @else {
                    "Finding the matching tasks: " (p.found) " found in " (p.looked) " entries"
                    @if let Some(n) = spec.counted { " (about " (n) " counted at the confirmation)" }
                }
                " · this page reloads every second."
            },
        }
        p { a href=(spec.source.link(&spec.form)) { "Back" } }
    };
    let refresh = if p.ended.is_none() { 1 } else { 0 };
    page_refreshed(&state, title, refresh, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            verb: Verb::Requeue,
            source: Source::Failed,
            form: FilterForm::default(),
            counted: None,
        }
    }

    /// A signed-in user reposting confirmations cannot start jobs without
    /// end: past the cap a new job is refused until one ends, while the
    /// page of a job that exists still opens.
    #[test]
    fn jobs_past_the_running_cap_are_refused_until_one_ends() {
        let jobs = Jobs::default();
        let started: Vec<Arc<Job>> = (0..RUNNING_MAX)
            .map(|i| {
                let (job, new) = jobs
                    .get_or_add(&format!("j{i}"), spec())
                    .expect("under the cap");
                assert!(new);
                job
            })
            .collect();
        assert!(jobs.get_or_add("one-more", spec()).is_none());
        let (_, new) = jobs.get_or_add("j0", spec()).expect("an existing job");
        assert!(!new);
        started[1].update(|p| p.ended = Some(Ok(())));
        let (_, new) = jobs.get_or_add("one-more", spec()).expect("a slot freed");
        assert!(new);
        assert!(jobs.get_or_add("and-another", spec()).is_none());
    }
}
