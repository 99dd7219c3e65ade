//! Async demo tasks (`App::task_async`), mirroring synchronous ones so
//! tests can show they end the same way.

use std::time::Duration;

use redis_tasks::{App, TaskContext, TaskOptions};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Secs {
    secs: f64,
}

#[derive(Deserialize)]
struct Message {
    message: String,
}

/// Sleeps on the runtime's timer, then returns how long it asked for and
/// whether the process's setup state was reachable.
async fn async_sleep(ctx: &TaskContext, a: Secs) -> Result<Value, String> {
    tokio::time::sleep(Duration::from_secs_f64(a.secs.max(0.0))).await;
    let pid = ctx
        .state::<crate::setup::ProcessState>()
        .map(crate::setup::ProcessState::pid);
    Ok(json!({"slept": a.secs, "setup_pid": pid}))
}

/// Registers `async_noop`, `async_sleep`, `async_fail`, `async_panic`,
/// `async_abort` and `async_quick_timeout` (a 1 s timeout).
pub fn register(app: App) -> App {
    app.task_async("async_noop", async |_: &TaskContext, _: Value| {
        Ok::<(), String>(())
    })
    .task_async("async_sleep", async_sleep)
    .task_async("async_fail", async |_: &TaskContext, a: Message| {
        tokio::task::yield_now().await;
        Err::<(), _>(a.message)
    })
    .task_async("async_panic", async |_: &TaskContext, a: Message| {
        tokio::task::yield_now().await;
        if !a.message.is_empty() {
            panic!("{}", a.message);
        }
        Ok::<(), String>(())
    })
    .task_async("async_abort", async |_: &TaskContext, _: Value| {
        tokio::task::yield_now().await;
        std::process::abort();
        #[allow(unreachable_code)]
        Ok::<(), String>(())
    })
    .task_async_with(
        "async_quick_timeout",
        TaskOptions::new().timeout(Duration::from_secs(1)),
        async_sleep,
    )
}
