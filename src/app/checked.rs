//! Enqueueing with the application's own task functions at hand: the name
//! must be registered and the arguments must fit the task's argument type,
//! checked before anything is written (instead of failing when the task
//! runs).

use redis_tasks_store::{EnqueueOptions, Enqueued, Queue, StoreError};
use serde::Serialize;

use super::App;

/// Why [`App::enqueue_checked`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum CheckedEnqueueError {
    /// No task function is registered under this name.
    #[error("unknown task {task:?} (this binary registers: {known})")]
    UnknownTask {
        /// The name asked for.
        task: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The arguments do not deserialise into the task's argument type.
    #[error("invalid arguments for task {task:?}: {reason}")]
    InvalidArgs {
        /// The task name.
        task: String,
        /// What serde said.
        reason: String,
    },
    /// The arguments cannot be turned into JSON.
    #[error("cannot serialise the arguments of task {task:?}: {error}")]
    Serialize {
        /// The task name.
        task: String,
        /// What serde_json said.
        error: serde_json::Error,
    },
    /// The store refused or failed the enqueue.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl App {
    /// Checks a call of `task` with `args` against the registered task
    /// functions, writing nothing: the name must be registered and `args`
    /// must deserialise into its argument type.
    pub fn check_call<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
    ) -> Result<(), CheckedEnqueueError> {
        let Some(def) = self.registry.get(task) else {
            let names = self.registry.names();
            return Err(CheckedEnqueueError::UnknownTask {
                task: task.to_owned(),
                known: if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                },
            });
        };
        let value = serde_json::to_value(args).map_err(|error| CheckedEnqueueError::Serialize {
            task: task.to_owned(),
            error,
        })?;
        def.check_args(&value)
            .map_err(|reason| CheckedEnqueueError::InvalidArgs {
                task: task.to_owned(),
                reason,
            })
    }

    /// [`check_call`](App::check_call), then
    /// [`Queue::enqueue_with_outcome`]: a producer that links the task
    /// functions learns about a wrong argument type at once.
    pub fn enqueue_checked<A: Serialize + ?Sized>(
        &self,
        queue: &Queue<'_>,
        task: &str,
        args: &A,
        options: &EnqueueOptions,
    ) -> Result<Enqueued, CheckedEnqueueError> {
        self.check_call(task, args)?;
        Ok(queue.enqueue_with_outcome(task, args, options)?)
    }
}
