//! Demo tasks for retries: a task that fails a given number of times
//! before it succeeds, counting its attempts in a file (a worker process
//! keeps nothing between attempts).

use std::io::Write;
use std::time::Duration;

use redis_tasks::{App, Jitter, RetryPolicy, TaskContext, TaskOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Flaky {
    /// A file that gets one line per attempt.
    path: String,
    /// How many attempts fail before one succeeds.
    failures: u32,
    /// How a failing attempt ends: `error` (default), `panic` or `abort`.
    #[serde(default)]
    how: Option<String>,
}

/// Appends a line to `path`; fails (as `how` says) while the file has at
/// most `failures` lines.
fn flaky(_: &TaskContext, a: Flaky) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.path)
        .map_err(|e| format!("cannot open {}: {e}", a.path))?;
    file.write_all(b"attempt\n")
        .map_err(|e| format!("cannot write {}: {e}", a.path))?;
    drop(file);
    let attempts = std::fs::read_to_string(&a.path)
        .map_err(|e| format!("cannot read {}: {e}", a.path))?
        .lines()
        .count();
    if attempts > a.failures as usize {
        return Ok(());
    }
    match a.how.as_deref() {
        Some("panic") => panic!("attempt {attempts} panicked"),
        Some("abort") => std::process::abort(),
        _ => Err(format!("attempt {attempts} failed")),
    }
}

/// The demo app, starting with the tasks of this module.
pub fn app() -> App {
    register(App::new("demo"))
}

/// Registers `flaky` (no retry policy of its own) and `flaky_retry` (up to
/// 3 retries, 50 ms backoff doubling, no jitter).
pub fn register(app: App) -> App {
    app.task("flaky", flaky).task_with(
        "flaky_retry",
        TaskOptions::new().retry(
            RetryPolicy::new(3)
                .base(Duration::from_millis(50))
                .jitter(Jitter::None),
        ),
        flaky,
    )
}
