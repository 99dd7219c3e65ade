//! The per-process setup hook: code that runs once in each worker process,
//! before its first task, to build what tasks share (a connection pool, a
//! cache, tracing set-up). Its value reaches tasks through
//! [`TaskContext::state`](crate::TaskContext::state).
//!
//! It runs after the process applied its isolation profile (so it runs
//! with the same restrictions as the tasks) and before the process tells
//! its supervisor it is ready; an error (or a panic) is sent to the
//! supervisor, which reports "worker failed to start: setup hook failed:
//! ..." and counts it towards its boot-loop guard.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// What the setup hook built, shared by every task of the process.
pub type SetupState = Arc<dyn Any + Send + Sync>;

type HookFn = dyn Fn() -> Result<SetupState, String> + Send + Sync;

/// A registered setup hook.
#[derive(Clone)]
pub struct SetupHook(Arc<HookFn>);

impl fmt::Debug for SetupHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupHook")
    }
}

impl SetupHook {
    /// Wraps a typed hook: its `Ok` value becomes the state tasks read with
    /// `ctx.state::<T>()`; its error text is reported with `{:#}`, so an
    /// `anyhow::Error` keeps its causes.
    pub fn new<T, E, F>(hook: F) -> Self
    where
        T: Send + Sync + 'static,
        E: fmt::Display,
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
    {
        SetupHook(Arc::new(move || {
            hook()
                .map(|state| Arc::new(state) as SetupState)
                .map_err(|e| format!("{e:#}"))
        }))
    }

    /// Runs the hook, turning a panic into an error naming it.
    pub fn run(&self) -> Result<SetupState, String> {
        crate::panic::clear_last();
        match catch_unwind(AssertUnwindSafe(|| (self.0)())) {
            Ok(result) => result,
            Err(payload) => Err(format!(
                "panicked: {}",
                crate::panic::last_or(payload.as_ref())
            )),
        }
    }
}
