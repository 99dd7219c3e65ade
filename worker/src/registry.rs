//! Task functions, registered by name.
//!
//! A task function takes a [`TaskContext`] and typed arguments deserialised
//! from the JSON stored with the task, and returns `Result<(), E>` for any
//! displayable error. The registry erases the types so the supervisor and
//! the worker process can share one table.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis_tasks_config::settings::Isolation;
use redis_tasks_protocol::retry::RetryPolicy;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::TaskContext;
use crate::setup::SetupHook;

/// Why a task call did not succeed, as the `run_task` chain sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task (or a middleware) returned an error with this text.
    #[error("{0}")]
    Failed(String),
    /// The task could not be called: its arguments do not fit its type.
    #[error("invalid arguments for task {task:?}: {reason}")]
    InvalidArgs {
        /// The task name.
        task: String,
        /// What serde said.
        reason: String,
    },
}

impl TaskError {
    /// A failure with this text, written in its alternate form (`{:#}`), so
    /// an `anyhow::Error` keeps its causes: "top: cause: root". For a
    /// `String`, `&str` or most error types the alternate form is the plain
    /// one. Task functions' errors become task errors this way.
    pub fn failed(text: impl fmt::Display) -> Self {
        TaskError::Failed(format!("{text:#}"))
    }

    /// A failure whose text is `error`'s message followed by each of its
    /// `source()` causes, joined with ": ". A cause the text already ends
    /// with is left out, for errors that print their source themselves.
    /// Return it from a task whose error type has sources:
    /// `.map_err(|e| TaskError::from_chain(&e))`.
    pub fn from_chain(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut text = error.to_string();
        let mut cause = error.source();
        while let Some(e) = cause {
            let more = e.to_string();
            if !more.is_empty() && !text.ends_with(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = e.source();
        }
        TaskError::Failed(text)
    }
}

/// Options of one task function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    /// A reentrant task that is interrupted (shutdown, crash of its worker
    /// process, death of its supervisor) goes back to the front of its queue
    /// instead of failing. Default: false.
    pub reentrant: bool,
    /// How long one run may take before its process group is killed.
    /// `None`: the `default_task_timeout` setting.
    pub timeout: Option<Duration>,
    /// Restrictions its runs get, over those of the queue it was enqueued
    /// to (each field set here wins). `None`: the queue's alone.
    pub isolation: Option<Arc<Isolation>>,
    /// How failed runs are retried (see `docs/retries-and-delays.md`).
    /// `None`: a failure is final. A producer may override it per task.
    pub retry: Option<RetryPolicy>,
}

impl TaskOptions {
    /// Default options: not reentrant, the default timeout.
    pub fn new() -> Self {
        TaskOptions::default()
    }

    /// Marks the task reentrant.
    pub fn reentrant(mut self, reentrant: bool) -> Self {
        self.reentrant = reentrant;
        self
    }

    /// Sets the task's own timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries failed runs with this policy (a producer may give one task
    /// another policy with its enqueue options).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Runs the task under these restrictions (see `docs/security.md`);
    /// fields left unset come from its queue's `[queues.NAME]` table.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = Some(Arc::new(isolation));
        self
    }
}

type ErasedFn = dyn Fn(&TaskContext, serde_json::Value) -> Result<(), TaskError> + Send + Sync;
type CheckFn = dyn Fn(&serde_json::Value) -> Result<(), String> + Send + Sync;

/// One registered task function.
#[derive(Clone)]
pub struct TaskDef {
    name: String,
    options: TaskOptions,
    run: Arc<ErasedFn>,
    check: Arc<CheckFn>,
}

impl fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDef")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TaskDef {
    /// Wraps a typed task function. Its return value (any `Serialize`
    /// type; `()` for none) becomes the task's stored result.
    pub fn new<A, R, E, F>(name: impl Into<String>, options: TaskOptions, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: Fn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        let name = name.into();
        let task = name.clone();
        let run = move |ctx: &TaskContext, args: serde_json::Value| {
            let value = f(ctx, decode_args(&task, args)?).map_err(TaskError::failed)?;
            keep_result(ctx, &task, &value)
        };
        // A closure (not `check_args::<A>`) so that `A` need not be 'static.
        let check = |args: &serde_json::Value| check_args::<A>(args);
        TaskDef::from_parts(name, options, Arc::new(run), Arc::new(check))
    }

    /// A definition from an erased runner and argument check (the async
    /// task registration builds its own runner).
    pub(crate) fn from_parts(
        name: String,
        options: TaskOptions,
        run: Arc<ErasedFn>,
        check: Arc<CheckFn>,
    ) -> Self {
        TaskDef {
            name,
            options,
            run,
            check,
        }
    }

    /// Checks that `args` deserialise into the task's argument type, as a
    /// run would, without running anything; the error is serde's message.
    /// Producers that know the task functions call it before enqueueing.
    pub fn check_args(&self, args: &serde_json::Value) -> Result<(), String> {
        (self.check)(args)
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its options.
    pub fn options(&self) -> &TaskOptions {
        &self.options
    }

    /// Calls the function (without middleware).
    pub fn call(&self, ctx: &TaskContext, args: serde_json::Value) -> Result<(), TaskError> {
        (self.run)(ctx, args)
    }
}

/// Stores a task function's return value in its context, as JSON.
pub(crate) fn keep_result<R: Serialize>(
    ctx: &TaskContext,
    task: &str,
    value: &R,
) -> Result<(), TaskError> {
    let value = serde_json::to_value(value).map_err(|e| {
        TaskError::Failed(format!("cannot serialise the result of task {task:?}: {e}"))
    })?;
    ctx.set_result(value);
    Ok(())
}

/// `args` as the task's argument type `A`, or the error that names `task`.
pub(crate) fn decode_args<A: DeserializeOwned>(
    task: &str,
    args: serde_json::Value,
) -> Result<A, TaskError> {
    serde_json::from_value(args).map_err(|e| TaskError::InvalidArgs {
        task: task.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether `args` deserialise into `A`.
pub(crate) fn check_args<A: DeserializeOwned>(args: &serde_json::Value) -> Result<(), String> {
    A::deserialize(args).map(|_| ()).map_err(|e| e.to_string())
}

/// The table of task functions, by name, and the per-process setup hook.
#[derive(Debug, Clone, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<String, TaskDef>,
    setup: Option<SetupHook>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        TaskRegistry::default()
    }

    /// Adds (or replaces) a task function.
    pub fn insert(&mut self, def: TaskDef) {
        self.tasks.insert(def.name.clone(), def);
    }

    /// The task registered under `name`.
    pub fn get(&self, name: &str) -> Option<&TaskDef> {
        self.tasks.get(name)
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// Sets the hook each worker process runs once before its first task.
    pub fn set_setup(&mut self, hook: SetupHook) {
        self.setup = Some(hook);
    }

    /// The setup hook, if one is set.
    pub fn setup(&self) -> Option<&SetupHook> {
        self.setup.as_ref()
    }

    /// Whether no task is registered.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Map, Value, json};

    use super::*;
    use crate::context::MetaSink;
    use crate::shutdown::ShutdownState;

    struct NoMeta;
    impl MetaSink for NoMeta {
        fn send_meta(&self, _: &str, _: &Map<String, Value>) -> Result<(), String> {
            Ok(())
        }
    }

    /// An error with a source, as `thiserror` makes them.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot load the report")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_task_returning_anyhow_keeps_the_cause_chain() {
        let def = TaskDef::new("t", TaskOptions::new(), |_ctx, _: Value| {
            Err::<(), _>(anyhow::anyhow!("root").context("cause").context("top"))
        });
        let ctx = TaskContext::new(
            "id",
            "t",
            Map::new(),
            Arc::new(NoMeta),
            ShutdownState::passive(),
        );
        let err = def.call(&ctx, json!(null)).expect_err("fails");
        assert_eq!(err, TaskError::Failed("top: cause: root".into()));
    }

    #[test]
    fn plain_texts_stay_as_they_are() {
        assert_eq!(TaskError::failed("no"), TaskError::Failed("no".into()));
        assert_eq!(
            TaskError::failed(String::from("no: really")),
            TaskError::Failed("no: really".into())
        );
    }

    #[test]
    fn from_chain_walks_the_sources_once() {
        let io = std::io::Error::other("disk gone");
        let err = TaskError::from_chain(&Outer(io));
        assert_eq!(
            err,
            TaskError::Failed("cannot load the report: disk gone".into())
        );
        // An error that prints its own source does not get it twice.
        let e = anyhow::anyhow!("root").context("top: root");
        let boxed: Box<dyn std::error::Error + 'static> = e.into();
        assert_eq!(
            TaskError::from_chain(boxed.as_ref()),
            TaskError::Failed("top: root".into())
        );
    }
}
