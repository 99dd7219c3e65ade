//! Demo tasks that return values (stored as the task's `result`).

use redis_tasks::{App, TaskContext};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Pair {
    a: i64,
    b: i64,
}

#[derive(Serialize)]
struct Sum {
    sum: i64,
    task: String,
}

#[derive(Deserialize)]
struct Len {
    len: usize,
}

/// Registers `add` (returns `{"sum": a + b, "task": id}`), `text`
/// (returns a string of `len` bytes, to try `max_result_bytes`), `echo`
/// (returns its arguments: what a graph node was given) and `traceparent`
/// (returns the trace context of its run, or null).
pub fn register(app: App) -> App {
    app.task("add", |ctx: &TaskContext, p: Pair| {
        Ok::<_, String>(Sum {
            sum: p.a + p.b,
            task: ctx.id().to_owned(),
        })
    })
    .task("text", |_: &TaskContext, l: Len| {
        Ok::<_, String>("x".repeat(l.len))
    })
    .task("echo", |_: &TaskContext, v: serde_json::Value| {
        Ok::<_, String>(v)
    })
    .task("traceparent", |ctx: &TaskContext, _: serde_json::Value| {
        Ok::<_, String>(ctx.traceparent().map(str::to_owned))
    })
}
