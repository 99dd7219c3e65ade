//! Who may use the dashboard: a token for everyone, loopback included, and
//! a CSRF token that only a signed-in browser ever sees.
//!
//! Any process on the host can connect to a loopback port: another user, a
//! task whose isolation profile keeps the network. So every request needs a
//! credential, the way Jupyter does it:
//!
//! - the token: given (`--token-file`, `RT_DASHBOARD_TOKEN`), or made at
//!   start and printed once as a login URL (`/login?token=...`);
//! - a session: signing in (the login URL, or the token typed in the login
//!   form) starts a server-side session whose random id is kept in an
//!   `HttpOnly`, `SameSite=Strict` cookie; the token itself never travels in
//!   a cookie;
//! - `Authorization: Bearer <token>` for scripts.
//!
//! The CSRF token in a page's forms belongs to the credential that read the
//! page: each session has its own, and bearer requests share one; an action
//! posts it back and must come with the same credential. A process that
//! cannot sign in can read no page, so it never learns a CSRF token.
//!
//! `--no-auth` (loopback only) gives every client without a session an
//! anonymous one: browsers of other sites are still kept out by the
//! session-bound CSRF token, the `Origin` check and `SameSite`, but any
//! local process can read and act (docs/dashboard.md says so).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Name of the cookie that holds a session id.
pub(crate) const SESSION_COOKIE: &str = "rt_dashboard_session";

/// How long a session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most sessions kept at once; a new one beyond that ends the oldest (a
/// client that never keeps cookies cannot grow the table).
const MAX_SESSIONS: usize = 1024;

tokio::task_local! {
    /// The CSRF token of the credential the request being answered came
    /// with (set by the guard for the request's whole future).
    static CSRF: String;
}

/// Runs `future` with `csrf` as the request's CSRF token.
pub(crate) async fn with_csrf<F: Future>(csrf: String, future: F) -> F::Output {
    CSRF.scope(csrf, future).await
}

/// The CSRF token of the request being answered, if it has a credential.
pub(crate) fn csrf() -> Option<String> {
    CSRF.try_with(Clone::clone).ok()
}

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session: its id (for the cookie) and its CSRF token.
    pub(crate) fn start(&self, now: Instant) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of session `id`, if it is one and has not expired.
    pub(crate) fn csrf(&self, id: &str, now: Instant) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(id)
            .filter(|s| s.expires > now)
            .map(|s| s.csrf.clone())
    }
}

/// 64 random hex digits (two v4 UUIDs' worth of randomness, from the OS).
pub(crate) fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Equal strings, compared in time that does not depend on where they
/// differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Set-Cookie` value of session `id`.
pub(crate) fn session_cookie(id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_have_their_own_csrf_and_expire() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (a, csrf_a) = sessions.start(now);
        let (b, csrf_b) = sessions.start(now);
        assert_ne!(csrf_a, csrf_b);
        assert_eq!(sessions.csrf(&a, now), Some(csrf_a));
        assert_eq!(sessions.csrf(&b, now), Some(csrf_b));
        assert_eq!(sessions.csrf("made-up", now), None);
        assert_eq!(sessions.csrf(&a, now + SESSION_TTL), None);
    }

    #[test]
    fn the_session_table_is_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (first, _) = sessions.start(now);
        for i in 0..MAX_SESSIONS {
            sessions.start(now + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(sessions.csrf(&first, now), None);
        assert!(sessions.map.lock().expect("lock").len() <= MAX_SESSIONS);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
