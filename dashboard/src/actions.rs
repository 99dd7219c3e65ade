//! The actions (POST): requeue, cancel (queued, scheduled or running) and
//! delete a task, pause or resume a queue, pause, resume or run a schedule entry, each through the same store function as the admin
//! command line, and the login form.
//!
//! Every action needs, in its form, the CSRF token of the credential it
//! comes with (its session's, see `auth`), and a request whose `Origin`
//! (sent by browsers on every POST) names another site is refused; in read-only mode there is no action at all. After an
//! action the browser is redirected (303) to a page that says what
//! happened, so a reload does not repeat it.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use redis_tasks_store::{CancelResult, MAX_SLOTS, RegistryKind, StoreError, SupervisorCommand};
use serde::Deserialize;
use tracing::info;

use crate::AppState;
use crate::auth::{self, same_secret};
use crate::layout::seg;
use crate::pages::error_page;

/// The form every action button posts.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
}

/// Why an action is refused before it runs, if it is.
fn refused(state: &AppState, headers: &HeaderMap, form: &ActionForm) -> Option<Response> {
    refused_csrf(state, headers, &form.csrf)
}

/// Why an action whose form brought CSRF token `csrf` is refused before
/// it runs, if it is: read-only mode, a token not the credential's, or a
/// foreign `Origin`.
pub(crate) fn refused_csrf(state: &AppState, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    if state.options.read_only {
        return Some(error_page(
            state,
            StatusCode::FORBIDDEN,
            "This dashboard is read-only.",
        ));
    }
    let bound = auth::csrf().is_some_and(|expected| same_secret(csrf, &expected));
    if !bound || !same_origin(headers) {
        return Some(error_page(
            state,
            StatusCode::FORBIDDEN,
            "This form did not come from this dashboard (CSRF check failed); reload the page and try again.",
        ));
    }
    None
}

/// Whether the request's `Origin`, when there is one, is this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok();
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            bare == Some(host)
        }
        _ => false,
    }
}

/// The 404 page of a `POST /<what>/{name}/{verb}` with an unknown verb.
fn no_such_action(state: &AppState, what: &str, verb: &str) -> Response {
    error_page(
        state,
        StatusCode::NOT_FOUND,
        &format!("no {what} action {verb:?}"),
    )
}

fn conflict(state: &AppState, e: &StoreError) -> Response {
    let code = match e {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        e if e.is_connection_error() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::CONFLICT,
    };
    error_page(state, code, &e.to_string())
}

/// `POST /tasks/{id}/requeue`: a failed task back to its queue.
pub(crate) async fn requeue(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &headers, &form) {
        return refusal;
    }
    let ids = vec![id.clone()];
    match state
        .blocking(move |store| store.requeue_failed(&ids))
        .await
    {
        Ok(report) if report.requeued == 1 => {
            info!(task = %id, "dashboard: requeued");
            Redirect::to(&format!("/tasks/{}?done=requeued", seg(&id))).into_response()
        }
        Ok(report) => {
            let reason = report
                .rejected
                .first()
                .map_or_else(|| "not requeued".to_owned(), |r| r.reason.to_string());
            error_page(
                &state,
                StatusCode::CONFLICT,
                &format!("task {id} not requeued: {reason}"),
            )
        }
        Err(e) => conflict(&state, &e),
    }
}

/// `POST /tasks/{id}/cancel`: a queued task out of its queue, a scheduled
/// one out of the delayed set, a running one stopped by its supervisor
/// (the same call as `redis-tasks task cancel`).
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &headers, &form) {
        return refusal;
    }
    let task_id = id.clone();
    match state
        .blocking(move |store| store.cancel_task(&task_id))
        .await
    {
        Ok(CancelResult::Canceled) => {
            info!(task = %id, "dashboard: canceled");
            Redirect::to(&format!("/tasks/{}?done=canceled", seg(&id))).into_response()
        }
        Ok(CancelResult::Requested) => {
            info!(task = %id, "dashboard: cancel requested from its supervisor");
            Redirect::to(&format!("/tasks/{}?done=cancel-requested", seg(&id))).into_response()
        }
        Err(e) => conflict(&state, &e),
    }
}

/// `POST /tasks/{id}/delete`: a failed or canceled task and its record,
/// gone; back to the page of the registry that held it.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &headers, &form) {
        return refusal;
    }
    let task_id = id.clone();
    match state
        .blocking(move |store| {
            for kind in [RegistryKind::Failed, RegistryKind::Canceled] {
                if store.delete_ended(kind, &task_id)? {
                    return Ok(Some(kind));
                }
            }
            Ok(None)
        })
        .await
    {
        Ok(Some(kind)) => {
            info!(task = %id, "dashboard: deleted");
            Redirect::to(&format!("/{}?done=deleted", kind.name())).into_response()
        }
        Ok(None) => error_page(
            &state,
            StatusCode::CONFLICT,
            &format!(
                "task {id} is not in the failed or canceled registry (requeued or deleted meanwhile?)"
            ),
        ),
        Err(e) => conflict(&state, &e),
    }
}

/// `POST /schedule/{name}/{pause|resume|run}`: the same calls as
/// `redis-tasks schedule pause|resume|run NAME`, for an entry of this
/// dashboard's settings or one the active scheduler registered.
pub(crate) async fn schedule(
    State(state): State<Arc<AppState>>,
    Path((name, verb)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &headers, &form) {
        return refusal;
    }
    if !matches!(verb.as_str(), "pause" | "resume" | "run") {
        return no_such_action(&state, "schedule", &verb);
    }
    let configured = state.settings.schedule.contains_key(&name);
    let entry = name.clone();
    let what = verb.clone();
    let result = state
        .blocking(move |store| {
            if !configured && !store.schedule_entries()?.contains(&entry) {
                return Ok(None);
            }
            match what.as_str() {
                "pause" => store
                    .set_schedule_paused(&entry, true)
                    .map(|_| Some("paused")),
                "resume" => store
                    .set_schedule_paused(&entry, false)
                    .map(|_| Some("resumed")),
                _ => store.request_schedule_run(&entry).map(|_| Some("run")),
            }
        })
        .await;
    match result {
        Ok(Some(done)) => {
            info!(entry = %name, "dashboard: schedule entry {name}: {verb}");
            Redirect::to(&format!("/schedule?done={done}")).into_response()
        }
        Ok(None) => error_page(
            &state,
            StatusCode::NOT_FOUND,
            &format!("unknown schedule entry {name:?}"),
        ),
        Err(e) => conflict(&state, &e),
    }
}

/// `POST /queues/{name}/{pause|resume}`: the same calls as
/// `redis-tasks queue pause|resume NAME`.
pub(crate) async fn queue(
    State(state): State<Arc<AppState>>,
    Path((name, verb)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refusal) = refused(&state, &headers, &form) {
        return refusal;
    }
    let pause = match verb.as_str() {
        "pause" => true,
        "resume" => false,
        _ => {
            return no_such_action(&state, "queue", &verb);
        }
    };
    let queue = name.clone();
    let result = state
        .blocking(move |store| {
            if pause {
                store.pause_queue(&queue)
            } else {
                store.resume_queue(&queue)
            }
        })
        .await;
    match result {
        Ok(()) => {
            let done = if pause { "paused" } else { "resumed" };
            info!(queue = %name, "dashboard: queue {name} {done}");
            Redirect::to(&format!("/queues/{}?done={done}", seg(&name))).into_response()
        }
        Err(e) => conflict(&state, &e),
    }
}

/// The form of a supervisor action: the CSRF token, and the slot count of
/// `scale`.
#[derive(Debug, Deserialize)]
pub(crate) struct SupervisorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    slots: Option<String>,
}

/// `POST /supervisors/{id}/{quiet|stop|scale}`: the same call as
/// `redis-tasks supervisor quiet|stop|scale ID [N]`.
pub(crate) async fn supervisor(
    State(state): State<Arc<AppState>>,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<SupervisorForm>,
) -> Response {
    let check = ActionForm {
        csrf: form.csrf.clone(),
    };
    if let Some(refusal) = refused(&state, &headers, &check) {
        return refusal;
    }
    let command = match verb.as_str() {
        "quiet" => SupervisorCommand::Quiet,
        "stop" => SupervisorCommand::Stop,
        "scale" => {
            let text = form.slots.as_deref().unwrap_or_default().trim();
            match format!("scale {text}").parse::<SupervisorCommand>() {
                Ok(command) => command,
                Err(_) => {
                    return error_page(
                        &state,
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "{text:?} is not a slot count: give a whole number from 1 to {MAX_SLOTS}"
                        ),
                    );
                }
            }
        }
        _ => {
            return no_such_action(&state, "supervisor", &verb);
        }
    };
    let target = id.clone();
    let sent = state
        .blocking(move |store| {
            let running = store.supervisors()?;
            if !running.iter().any(|s| s.id == target) {
                return Ok(false);
            }
            store
                .send_supervisor_command(&target, command)
                .map(|()| true)
        })
        .await;
    match sent {
        Ok(true) => {
            info!(supervisor = %id, "dashboard: sent {command} to supervisor {id}");
            Redirect::to(&format!("/supervisors?done={verb}")).into_response()
        }
        Ok(false) => error_page(
            &state,
            StatusCode::NOT_FOUND,
            &format!("no running supervisor has id {id:?} (stopped meanwhile?)"),
        ),
        Err(e) => conflict(&state, &e),
    }
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /login`: the token typed in the form.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return Redirect::to("/login?error=1").into_response();
    }
    sign_in(&state, &form.token)
}

/// Starts a session (a cookie for 12 hours) if `token` is the dashboard's,
/// else back to the login form.
pub(crate) fn sign_in(state: &AppState, token: &str) -> Response {
    let Some(expected) = &state.token else {
        return Redirect::to("/").into_response();
    };
    if !same_secret(token, expected) {
        return Redirect::to("/login?error=1").into_response();
    }
    let (id, _) = state.sessions.start(std::time::Instant::now());
    let mut response = Redirect::to("/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth::session_cookie(&id)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_be_this_host_when_sent() {
        assert!(same_origin(&headers(&[(header::HOST, "127.0.0.1:9181")])));
        assert!(same_origin(&headers(&[
            (header::HOST, "127.0.0.1:9181"),
            (header::ORIGIN, "http://127.0.0.1:9181"),
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "127.0.0.1:9181"),
            (header::ORIGIN, "http://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "127.0.0.1:9181"),
            (header::ORIGIN, "null"),
        ])));
    }
}
