//! A demo task that enqueues tasks from inside: `fan_out` with
//! `{"n": N, "queue": "Q", "mode": "now" | "on_success", "then": "finish" | "fail"}`
//! asks its supervisor for N `noop` tasks on queue Q (each with
//! `{"parent": <its id>, "i": <index>}` as arguments), then finishes or
//! fails. With `on_success`, the children exist only if it finished.

use redis_tasks::{App, Child, TaskContext};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Now,
    OnSuccess,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Then {
    Finish,
    Fail,
}

#[derive(Deserialize)]
struct FanOut {
    n: u32,
    queue: String,
    mode: Mode,
    then: Then,
}

/// Registers `fan_out`; it returns the children's ids.
pub fn register(app: App) -> App {
    app.task("fan_out", |ctx: &TaskContext, a: FanOut| {
        let mut ids = Vec::new();
        for i in 0..a.n {
            let child = Child::new("noop", &json!({"parent": ctx.id(), "i": i}))
                .map_err(|e| e.to_string())?
                .queue(&a.queue);
            let child = match a.mode {
                Mode::Now => child,
                Mode::OnSuccess => child.on_success(),
            };
            ids.push(ctx.enqueue(child).map_err(|e| e.to_string())?);
        }
        match a.then {
            Then::Finish => Ok(ids),
            Then::Fail => Err(format!("failing after enqueueing {} task(s)", ids.len())),
        }
    })
}
