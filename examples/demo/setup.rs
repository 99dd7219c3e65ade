//! The demo's per-process setup hook and a task that reads its state.
//!
//! Worker processes get a scrubbed environment, so the hook is steered by a
//! file in the working directory, `redis-tasks-demo-setup` (tests start
//! the supervisor in a directory of their own): absent, the hook just
//! builds its state; `fail: <text>` makes it fail with `<text>`; `log`
//! makes it append the process id to `redis-tasks-demo-setup.log`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_tasks::{App, TaskContext};
use serde_json::{Value, json};

/// What the hook builds once per worker process (a stand-in for a pool).
pub struct ProcessState {
    pid: u32,
    calls: AtomicU64,
}

impl ProcessState {
    /// The process that built it.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

fn setup() -> Result<ProcessState, String> {
    let control = std::fs::read_to_string("redis-tasks-demo-setup").unwrap_or_default();
    if let Some(text) = control.trim().strip_prefix("fail:") {
        return Err(text.trim().to_owned());
    }
    let pid = crate::host_ids::pid();
    if control.trim() == "log" {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("redis-tasks-demo-setup.log")
            .map_err(|e| format!("cannot open the setup log: {e}"))?;
        writeln!(log, "{pid}").map_err(|e| format!("cannot write the setup log: {e}"))?;
    }
    Ok(ProcessState {
        pid,
        calls: AtomicU64::new(0),
    })
}

/// Registers the hook and `setup_state`, which returns `{"pid", "calls"}`:
/// the process that built the state and how many tasks used it so far.
pub fn register(app: App) -> App {
    app.setup(setup)
        .task("setup_state", |ctx: &TaskContext, _: Value| {
            let state = ctx
                .state::<ProcessState>()
                .ok_or("no setup state in this process")?;
            let calls = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, String>(json!({"pid": state.pid, "calls": calls}))
        })
}
