//! How a shutdown request reaches a running task.
//!
//! Rust cannot raise an exception inside running code, so a shutdown is
//! enforced from outside: when the supervisor asks a worker process to shut
//! down, the process ends at once, interrupting its task, unless the task
//! holds a [`PostponeShutdown`] guard. Then the request is remembered and
//! takes effect when the last guard is dropped. A task that wants to stop
//! early on its own can hold a guard and poll
//! [`TaskContext::shutdown_requested`](crate::TaskContext::shutdown_requested).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

type Effect = Box<dyn Fn(Trigger) + Send + Sync>;

/// What made a shutdown request take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The request arrived while no guard was held.
    Request,
    /// The last guard was dropped while a request was pending. This often
    /// happens as the task returns (a guard held for the whole task), so
    /// the worker process gives the task a moment to report its result.
    GuardReleased,
}

#[derive(Debug, Default)]
struct Inner {
    requested: bool,
    guards: usize,
}

/// The shutdown state of one worker process (or of an in-process test run).
pub struct ShutdownState {
    inner: Mutex<Inner>,
    effect: Option<Effect>,
}

impl fmt::Debug for ShutdownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ShutdownState")
            .field("requested", &inner.requested)
            .field("guards", &inner.guards)
            .finish_non_exhaustive()
    }
}

impl ShutdownState {
    /// A state whose requests take effect by calling `effect` (the worker
    /// process passes a function that ends the process).
    pub fn with_effect(effect: impl Fn(Trigger) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(ShutdownState {
            inner: Mutex::new(Inner::default()),
            effect: Some(Box::new(effect)),
        })
    }

    /// A state that only records requests (for running tasks in-process).
    pub fn passive() -> Arc<Self> {
        Arc::new(ShutdownState {
            inner: Mutex::new(Inner::default()),
            effect: None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a shutdown request; it takes effect now unless a guard is held.
    pub fn request(&self) {
        let act = {
            let mut inner = self.lock();
            inner.requested = true;
            inner.guards == 0
        };
        if act {
            self.take_effect(Trigger::Request);
        }
    }

    /// Whether a shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.lock().requested
    }

    /// Takes a guard that postpones the effect of a shutdown request.
    pub fn postpone(self: &Arc<Self>) -> PostponeShutdown {
        self.lock().guards += 1;
        PostponeShutdown {
            state: Arc::clone(self),
        }
    }

    fn release(&self) {
        let act = {
            let mut inner = self.lock();
            inner.guards = inner.guards.saturating_sub(1);
            inner.guards == 0 && inner.requested
        };
        if act {
            self.take_effect(Trigger::GuardReleased);
        }
    }

    fn take_effect(&self, trigger: Trigger) {
        if let Some(effect) = &self.effect {
            effect(trigger);
        }
    }
}

/// While held, a shutdown request does not interrupt the task; it takes
/// effect when the last guard is dropped.
#[must_use = "the shutdown is only postponed while the guard is held"]
#[derive(Debug)]
pub struct PostponeShutdown {
    state: Arc<ShutdownState>,
}

impl Drop for PostponeShutdown {
    fn drop(&mut self) {
        self.state.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting() -> (Arc<ShutdownState>, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&hits);
        let state = ShutdownState::with_effect(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        (state, hits)
    }

    #[test]
    fn a_request_without_guard_takes_effect_at_once() {
        let (state, hits) = counting();
        state.request();
        assert!(state.is_requested());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_guard_postpones_the_effect_until_the_last_one_drops() {
        let (state, hits) = counting();
        let outer = state.postpone();
        let inner = state.postpone();
        state.request();
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        drop(inner);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        drop(outer);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dropping_a_guard_without_a_request_does_nothing() {
        let (state, hits) = counting();
        drop(state.postpone());
        assert!(!state.is_requested());
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }
}
