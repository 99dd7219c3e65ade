//! Middleware: code that wraps every task (`run_task`, in the worker
//! process) and sees every final outcome (`process_outcome`, in the
//! supervisor).
//!
//! The first registered middleware is the outermost: its `run_task` runs
//! first and decides if, when, how often and with which arguments the rest of
//! the chain runs, through [`Next`]. `process_outcome` runs in reverse
//! registration order for every final outcome, including crashes and
//! timeouts the task never saw; a panic there is caught and becomes the
//! failure.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use redis_tasks_config::Settings;
use redis_tasks_protocol::{FailureKind, Outcome, TaskRecord};
use serde_json::Value;

use crate::context::TaskContext;
use crate::panic::payload_text;
use crate::registry::{TaskDef, TaskError};

/// User code around tasks. Every hook has a default that passes through.
pub trait Middleware: Send + Sync + 'static {
    /// The name settings use to enable and order middleware (the
    /// `middleware` setting). Defaults to the type's name without its path.
    fn name(&self) -> &str {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// A start-up check, with the supervisor's settings (run again with the
    /// new settings at each reload); an error makes the supervisor refuse to
    /// start (or keep its old settings). A middleware that needs its own
    /// resources in the supervisor, such as a Redis connection, opens them
    /// here: this never runs in a worker process.
    fn check(&self, settings: &Settings) -> Result<(), String> {
        let _ = settings;
        Ok(())
    }

    /// Wraps the task in the worker process. Call `next.run(ctx, args)` to
    /// run the rest of the chain (and finally the task); not calling it
    /// skips the task, calling it twice runs it twice.
    fn run_task(&self, ctx: &TaskContext, args: Value, next: Next<'_>) -> Result<(), TaskError> {
        next.run(ctx, args)
    }

    /// Sees a final outcome in the supervisor and returns the outcome to
    /// record: return [`Outcome::Success`] to mark a failure as handled, or a
    /// failure to fail a task that succeeded.
    fn process_outcome(&self, task: &TaskRecord, outcome: Outcome) -> Outcome {
        let _ = task;
        outcome
    }
}

/// The rest of the `run_task` chain, handed to each middleware.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    task: &'a TaskDef,
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining_middleware", &self.rest.len())
            .field("task", &self.task.name())
            .finish()
    }
}

impl Next<'_> {
    /// Runs the remaining middleware and the task with `args`.
    pub fn run(&self, ctx: &TaskContext, args: Value) -> Result<(), TaskError> {
        match self.rest.split_first() {
            Some((first, rest)) => first.run_task(
                ctx,
                args,
                Next {
                    rest,
                    task: self.task,
                },
            ),
            None => self.task.call(ctx, args),
        }
    }
}

/// Why the middleware set cannot be used; the supervisor refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MiddlewareError {
    /// The `middleware` setting names one that is not registered.
    #[error(
        "middleware {name:?} is named in the settings but not registered (registered: {registered})"
    )]
    Unknown {
        /// The name from the settings.
        name: String,
        /// The registered names, comma-separated.
        registered: String,
    },
    /// A middleware's start-up check failed.
    #[error("middleware {name:?} failed its start-up check: {reason}")]
    CheckFailed {
        /// Its name.
        name: String,
        /// What its check said.
        reason: String,
    },
}

/// The active middleware, in chain order.
#[derive(Clone, Default)]
pub struct MiddlewareChain {
    items: Vec<Arc<dyn Middleware>>,
}

impl fmt::Debug for MiddlewareChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.items.iter().map(|m| m.name()))
            .finish()
    }
}

impl MiddlewareChain {
    /// Chooses the active middleware: with an empty `enabled` list every
    /// registered one, in registration order; otherwise exactly the named
    /// ones, in the order named.
    pub fn select(
        registered: &[Arc<dyn Middleware>],
        enabled: &[String],
    ) -> Result<Self, MiddlewareError> {
        if enabled.is_empty() {
            return Ok(MiddlewareChain {
                items: registered.to_vec(),
            });
        }
        let items = enabled
            .iter()
            .map(|name| {
                registered
                    .iter()
                    .find(|m| m.name() == name)
                    .cloned()
                    .ok_or_else(|| MiddlewareError::Unknown {
                        name: name.clone(),
                        registered: registered
                            .iter()
                            .map(|m| m.name().to_owned())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(MiddlewareChain { items })
    }

    /// Runs every start-up check, in chain order.
    pub fn check(&self, settings: &Settings) -> Result<(), MiddlewareError> {
        for m in &self.items {
            m.check(settings)
                .map_err(|reason| MiddlewareError::CheckFailed {
                    name: m.name().to_owned(),
                    reason,
                })?;
        }
        Ok(())
    }

    /// The names of the active middleware, in chain order.
    pub fn names(&self) -> Vec<String> {
        self.items.iter().map(|m| m.name().to_owned()).collect()
    }

    /// Runs `task` wrapped in every `run_task`, outermost first.
    pub fn run_task(
        &self,
        task: &TaskDef,
        ctx: &TaskContext,
        args: Value,
    ) -> Result<(), TaskError> {
        Next {
            rest: &self.items,
            task,
        }
        .run(ctx, args)
    }

    /// Passes a final outcome through every `process_outcome`, last
    /// registered first. A panicking middleware turns the outcome into a
    /// failure naming it; the remaining ones still run.
    pub fn process_outcome(&self, task: &TaskRecord, outcome: Outcome) -> Outcome {
        self.items.iter().rev().fold(outcome, |outcome, m| {
            let before = outcome.clone();
            match catch_unwind(AssertUnwindSafe(|| m.process_outcome(task, outcome))) {
                Ok(next) => next,
                Err(payload) => {
                    let text = payload_text(payload.as_ref());
                    let was = before
                        .error_text()
                        .map(|e| format!(" (the task's own outcome: {e})"))
                        .unwrap_or_default();
                    Outcome::failure(FailureKind::Middleware(format!(
                        "process_outcome of {} panicked: {text}{was}",
                        m.name()
                    )))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
