//! Async task functions (feature `async`): an `async fn(&TaskContext, A)`
//! runs on a Tokio current-thread runtime that each worker process creates
//! once, at its first async task, and keeps for every later one.
//!
//! The runtime's `block_on` runs the task's future on the thread that runs
//! the middleware chain, so an async task is, seen from outside, exactly a
//! synchronous one: the same `run_task` chain around it, the same
//! `catch_unwind` (a panic in the future unwinds out of `block_on`), the
//! same process-group kill at its timeout, the same crash reports and
//! isolation. Work the task spawns with `tokio::spawn` runs only while a
//! task of the process is being awaited, and whatever is left of it when
//! the task returns may run during a later task of the same process (or
//! never): await it before returning.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::TaskContext;
use crate::registry::{TaskDef, TaskError, TaskOptions, check_args, decode_args, keep_result};

/// The process's runtime, created at its first async task.
static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// The process's current-thread runtime (time and, when the application
/// enables Tokio's `net` feature, I/O drivers on).
fn runtime() -> Result<&'static tokio::runtime::Runtime, TaskError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| TaskError::Failed(format!("cannot start the Tokio runtime: {e}")))
}

impl TaskDef {
    /// Wraps an async task function: `async fn(&TaskContext, A) ->
    /// Result<R, E>` (or an async closure). See the module docs for how it
    /// runs.
    pub fn new_async<A, R, E, F>(name: impl Into<String>, options: TaskOptions, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: AsyncFn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        let name = name.into();
        let task = name.clone();
        let run = move |ctx: &TaskContext, args: serde_json::Value| {
            let args: A = decode_args(&task, args)?;
            let value = runtime()?
                .block_on(f(ctx, args))
                .map_err(TaskError::failed)?;
            keep_result(ctx, &task, &value)
        };
        let check = |args: &serde_json::Value| check_args::<A>(args);
        TaskDef::from_parts(name, options, Arc::new(run), Arc::new(check))
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

    async fn double(ctx: &TaskContext, n: u64) -> Result<Value, String> {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        Ok(json!({"n": n * 2, "id": ctx.id()}))
    }

    #[test]
    fn an_async_function_runs_and_keeps_its_result_and_the_runtime_is_reused() {
        let def = TaskDef::new_async("double", TaskOptions::new(), double);
        for n in [1, 2] {
            let ctx = TaskContext::new(
                "id",
                "double",
                Map::new(),
                Arc::new(NoMeta),
                ShutdownState::passive(),
            );
            def.call(&ctx, json!(n)).expect("runs");
            assert_eq!(ctx.take_result(), Some(json!({"n": n * 2, "id": "id"})));
        }
        let first = runtime().expect("runtime") as *const _;
        assert_eq!(first, runtime().expect("runtime") as *const _);
        assert!(def.check_args(&json!("x")).is_err());
    }

    /// Adds one to the argument and runs the rest of the chain twice.
    struct Twice;
    impl crate::Middleware for Twice {
        fn run_task(
            &self,
            ctx: &TaskContext,
            args: Value,
            next: crate::Next<'_>,
        ) -> Result<(), TaskError> {
            let n = args.as_u64().unwrap_or(0) + 1;
            next.run(ctx, json!(n))?;
            next.run(ctx, json!(n + 1))
        }
    }

    #[test]
    fn run_task_middleware_wraps_an_async_task_like_a_sync_one() {
        let def = TaskDef::new_async("double", TaskOptions::new(), double);
        let registered: Vec<Arc<dyn crate::Middleware>> = vec![Arc::new(Twice)];
        let chain = crate::MiddlewareChain::select(&registered, &[]).expect("chain");
        let ctx = TaskContext::new(
            "id",
            "double",
            Map::new(),
            Arc::new(NoMeta),
            ShutdownState::passive(),
        );
        chain.run_task(&def, &ctx, json!(1)).expect("runs");
        // The last call's result is the one kept: (1 + 1 + 1) * 2.
        assert_eq!(ctx.take_result(), Some(json!({"n": 6, "id": "id"})));
    }
}
