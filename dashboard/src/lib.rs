//! The redis-tasks web dashboard (`redis-tasks dashboard`): server-rendered
//! pages over the store's public API, for operators who want to watch
//! queues fill and requeue a failed task with a click.
//!
//! # Layout
//!
//! - this file: [`DashboardOptions`], [`serve`], the router and the guard
//!   every request passes (host check, token, security headers).
//! - `pages/`: the GET pages: `mod.rs` the overview, queue, failed and
//!   finished lists and login pages; `task.rs` the task page; `delayed.rs`
//!   the delayed set; `schedule_graph.rs` the schedule and task graph pages.
//! - `actions`: the POST actions (requeue, cancel, delete; login), each
//!   checked against the CSRF token.
//! - `layout`: the page frame, the style sheet, small formatting helpers.
//!
//! # Security
//!
//! - No JavaScript and no asset from elsewhere; a strict
//!   `Content-Security-Policy` says so to the browser.
//! - Actions are POSTs carrying a per-process CSRF token that only a page
//!   of this dashboard shows; a POST whose `Origin` is not this host is
//!   refused too.
//! - On a loopback address, requests must name a loopback host (`Host:`),
//!   which defeats DNS rebinding; on any other address a token is required
//!   (the dashboard refuses to start without one), given once on a login
//!   form and then kept in an `HttpOnly`, `SameSite=Strict` cookie.
//! - `--read-only` serves no action at all.

#![warn(unreachable_pub)]

mod actions;
mod layout;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

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
    pub token: Option<String>,
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
    /// The CSRF token of this process: random, shown only in this
    /// dashboard's forms.
    pub(crate) csrf: String,
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
        let cookie_safe = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\');
        if token.len() < 16 || !token.chars().all(cookie_safe) {
            return Err(DashboardError::WeakToken);
        }
    } else if !addr.ip().is_loopback() {
        return Err(DashboardError::TokenRequired(addr));
    }
    let io = |source| DashboardError::Io { addr, source };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let state = Arc::new(AppState {
        store: Arc::new(store),
        settings,
        options,
        csrf: random_token(),
    });
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
        let local = listener.local_addr().map_err(io)?;
        info!(
            "dashboard on http://{local}/{}",
            if state.options.read_only {
                " (read-only)"
            } else {
                ""
            }
        );
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
        .route("/failed", get(pages::failed))
        .route("/finished", get(pages::finished))
        .route("/tasks/{id}", get(pages::task))
        .route("/tasks/{id}/requeue", post(actions::requeue))
        .route("/tasks/{id}/cancel", post(actions::cancel))
        .route("/tasks/{id}/delete", post(actions::delete))
        .route("/delayed", get(pages::delayed))
        .route("/schedule", get(pages::schedule))
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

/// 32 random hex digits (two v4 UUIDs' worth of randomness, from the OS).
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Name of the cookie that holds the token after a login.
pub(crate) const TOKEN_COOKIE: &str = "rt_dashboard_token";

/// Equal strings, compared in time that does not depend on where they
/// differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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
    if let Some(token) = &state.options.token {
        let path = request.uri().path();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let presented = cookie(headers, TOKEN_COOKIE).or(bearer);
        let allowed = presented.is_some_and(|p| same_secret(p, token));
        if !allowed && path != "/login" {
            return with_security_headers(Redirect::to("/login").into_response());
        }
    }
    let response = next.run(request).await;
    with_security_headers(response)
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
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rt_dashboard_token=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, TOKEN_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
