//! The redis-tasks web dashboard (`redis-tasks dashboard`): server-rendered
//! pages over the store's public API, for operators who want to watch
//! queues fill and requeue a failed task with a click.
//!
//! # Layout
//!
//! - this file: [`DashboardOptions`], [`serve`], the router and the guard
//!   every request passes (host check, credential, security headers).
//! - `auth`: sessions, the CSRF token of each credential, the login token.
//! - `pages/`: the GET pages: `mod.rs` the overview and login pages;
//!   `listing.rs` a filtered listing searched a bounded slice at a time,
//!   with a cursor to go on; `registries.rs` the failed, finished,
//!   expired and canceled lists; `queue.rs` a queue's tasks; `delayed.rs` the delayed
//!   set; `running.rs` the running tasks; `search.rs` the task id search;
//!   `task.rs` the task page; `schedule_graph.rs` the schedule and task
//!   graph pages; `supervisors.rs` the supervisors page; `history.rs` the
//!   history section (range links, charts, table) of the overview and
//!   queue pages.
//! - `charts`: the history charts as SVG written by hand.
//! - `filter`: the filter form of every listing (queue, task, texts, a
//!   time range).
//! - `bulk/`: requeue or delete many failed tasks, cancel many queued or
//!   delayed ones, through a confirmation; "all matching" as a background
//!   job with a progress page (`job.rs`).
//! - `actions`: the POST actions (requeue, cancel, delete; pause, resume
//!   and run a schedule entry; quiet, stop and scale a supervisor; login),
//!   each
//!   checked against the CSRF token.
//! - `layout`: the page frame, the style sheet, small formatting helpers.
//!
//! # Security
//!
//! - No JavaScript and no asset from elsewhere; a strict
//!   `Content-Security-Policy` says so to the browser.
//! - Every request needs a credential, on loopback too ([`auth`]): a
//!   session started by the login URL printed at start or the login form,
//!   or the token as a bearer. `--no-auth` turns this off on loopback only.
//! - Actions are POSTs carrying the CSRF token of the session that read the
//!   page; a POST whose `Origin` is not this host is refused too.
//! - On a loopback address, requests must name a loopback host (`Host:`),
//!   which defeats DNS rebinding; on any other address a token must be
//!   given (the dashboard refuses to start without one).
//! - `--read-only` serves no action at all.

#![warn(unreachable_pub)]

mod actions;
mod auth;
mod bulk;
mod charts;
mod filter;
mod layout;
mod pages;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use redis_tasks_config::Settings;
use redis_tasks_store::Store;
use tracing::info;

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Token a browser must present; required on a non-loopback address.
    /// `None` on loopback: one is made and printed as a login URL.
    pub token: Option<String>,
    /// Serve everyone who reaches the (loopback) address, without a token.
    pub no_auth: bool,
    /// Serve the pages only: no requeue, cancel or delete.
    pub read_only: bool,
    /// Seconds between automatic reloads of the live pages (0: never).
    pub refresh_secs: u32,
}

/// Why the dashboard could not be served.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve the dashboard on {0} without a token: anyone who can reach it could \
         requeue, cancel and delete tasks; set RT_DASHBOARD_TOKEN or --token-file, or bind a \
         loopback address such as 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    /// `--no-auth` on an address other hosts can reach.
    #[error(
        "refusing --no-auth on {0}: without a token only a loopback address is allowed, and \
         even there every local process and user can read task arguments and delete tasks"
    )]
    NoAuthOffLoopback(SocketAddr),
    /// `--no-auth` and a token at once.
    #[error("--no-auth and a dashboard token exclude each other; drop one")]
    NoAuthWithToken,
    /// The token is too short to resist guessing, or holds characters a
    /// cookie cannot carry.
    #[error(
        "the dashboard token must be at least 16 characters long, printable ASCII without \
         spaces, ';' or ','"
    )]
    WeakToken,
    /// The address could not be bound, or serving failed.
    #[error("cannot serve the dashboard on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<Store>,
    pub(crate) settings: Settings,
    pub(crate) options: DashboardOptions,
    /// The token in effect (given, or made at start); `None` with
    /// `--no-auth`.
    pub(crate) token: Option<String>,
    /// Signed-in browsers.
    pub(crate) sessions: auth::Sessions,
    /// The CSRF token of requests that come with the bearer token.
    pub(crate) bearer_csrf: String,
    /// Bulk actions on "all matching" running or done, by job id.
    pub(crate) jobs: bulk::Jobs,
}

impl AppState {
    /// Runs blocking store calls off the async threads.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> T + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(value) => value,
            // Only a panic in `f` gets here: let it go on.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Serves the dashboard until SIGINT or SIGTERM.
pub fn serve(
    store: Store,
    settings: Settings,
    options: DashboardOptions,
) -> Result<(), DashboardError> {
    let addr = options.bind;
    if let Some(token) = &options.token {
        if options.no_auth {
            return Err(DashboardError::NoAuthWithToken);
        }
        let cookie_safe = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\');
        if token.len() < 16 || !token.chars().all(cookie_safe) {
            return Err(DashboardError::WeakToken);
        }
    } else if !addr.ip().is_loopback() {
        return Err(if options.no_auth {
            DashboardError::NoAuthOffLoopback(addr)
        } else {
            DashboardError::TokenRequired(addr)
        });
    }
    // Made here, shown once in the login URL printed below.
    let made_token = options.token.is_none() && !options.no_auth;
    let token = match (&options.token, options.no_auth) {
        (Some(token), _) => Some(token.clone()),
        (None, false) => Some(auth::random_token()),
        (None, true) => None,
    };
    let io = |source| DashboardError::Io { addr, source };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let state = Arc::new(AppState {
        store: Arc::new(store),
        settings,
        options,
        token,
        sessions: auth::Sessions::default(),
        bearer_csrf: auth::random_token(),
        jobs: bulk::Jobs::default(),
    });
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
        let local = listener.local_addr().map_err(io)?;
        let read_only = if state.options.read_only {
            " (read-only)"
        } else {
            ""
        };
        match (&state.token, made_token) {
            (Some(token), true) => {
                info!(
                    "dashboard on http://{local}/{read_only}; sign in with the login URL on stderr"
                );
                // On stderr whatever the log level: the only way in.
                let _ = writeln!(
                    std::io::stderr(),
                    "To sign in to the dashboard, open this URL (it holds this run's token; \
                     keep it to yourself):\n    http://{local}/login?token={token}"
                );
            }
            (Some(_), false) => info!("dashboard on http://{local}/{read_only}"),
            (None, _) => tracing::warn!(
                "dashboard on http://{local}/{read_only} WITHOUT authentication (--no-auth): \
                 every local user and process can read task arguments and act on tasks"
            ),
        }
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(io)
    })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/queues/{name}", get(pages::queue))
        .route("/queues/{name}/{verb}", post(actions::queue))
        .route("/failed", get(pages::failed))
        .route("/bulk", post(bulk::confirm))
        .route("/bulk/run", post(bulk::run))
        .route("/bulk/done", get(bulk::done))
        .route("/bulk/jobs/{id}", get(bulk::progress))
        .route("/search", get(pages::search))
        .route("/finished", get(pages::finished))
        .route("/expired", get(pages::expired))
        .route("/canceled", get(pages::canceled))
        .route("/tasks/{id}", get(pages::task))
        .route("/tasks/{id}/raw/{field}", get(pages::raw))
        .route("/tasks/{id}/requeue", post(actions::requeue))
        .route("/tasks/{id}/cancel", post(actions::cancel))
        .route("/tasks/{id}/delete", post(actions::delete))
        .route("/delayed", get(pages::delayed))
        .route("/running", get(pages::running))
        .route("/supervisors", get(pages::supervisors))
        .route("/supervisors/{id}/{verb}", post(actions::supervisor))
        .route("/schedule", get(pages::schedule))
        .route("/schedule/{name}/{verb}", post(actions::schedule))
        .route("/graphs", get(pages::graph_lookup))
        .route("/graphs/{id}", get(pages::graph))
        .route("/login", get(pages::login).post(actions::login))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            guard,
        ))
        .with_state(state)
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    info!("dashboard stopping");
}

pub(crate) use auth::same_secret;

/// The value of cookie `name` in the request's headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Whether `host` (a `Host:` header) names a loopback address or
/// `localhost`, with any port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Every request: the host check, the token, and the security headers on
/// the answer.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if state.options.bind.ip().is_loopback() && !loopback_host(host) {
        // A page of another site whose name resolves to 127.0.0.1 (DNS
        // rebinding) must not read ours.
        return with_security_headers(
            (StatusCode::MISDIRECTED_REQUEST, "unknown host\n").into_response(),
        );
    }
    let now = Instant::now();
    let session = cookie(headers, auth::SESSION_COOKIE).and_then(|id| state.sessions.csrf(id, now));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let bearer_ok = match (&state.token, bearer) {
        (Some(token), Some(bearer)) => same_secret(bearer, token),
        _ => false,
    };
    let mut new_session = None;
    let csrf = match (session, bearer_ok, &state.token) {
        (Some(csrf), _, _) => Some(csrf),
        (None, true, _) => Some(state.bearer_csrf.clone()),
        // --no-auth: an anonymous session, so that forms still carry a
        // token bound to this browser's cookie.
        (None, false, None) => {
            let (id, csrf) = state.sessions.start(now);
            new_session = Some(id);
            Some(csrf)
        }
        (None, false, Some(_)) => None,
    };
    let response = match csrf {
        Some(csrf) => auth::with_csrf(csrf, next.run(request)).await,
        None if request.uri().path() == "/login" => next.run(request).await,
        None => Redirect::to("/login").into_response(),
    };
    let mut response = with_security_headers(response);
    if let Some(id) = new_session
        && let Ok(value) = HeaderValue::from_str(&auth::session_cookie(&id))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let pairs = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it, browsers send `Origin: null` on the
        // dashboard's own POSTs, which the CSRF check must refuse.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "127.0.0.1:9181",
            "localhost:9181",
            "LOCALHOST",
            "[::1]:9181",
            "127.0.0.2",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in ["evil.example:9181", "10.0.0.1:9181", "", "[::2]:1"] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rt_dashboard_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, auth::SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
