//! A task that tries to take over the next tasks of its reused worker
//! process from outside it: `clone(CLONE_PARENT)` makes a process whose
//! parent is the supervisor, not the worker process, so killing the worker
//! process's descendants misses it and the worker's thread count does not
//! change. That process keeps the worker's IPC socket, stops the worker
//! process (same user, so `SIGSTOP` is allowed), reads the next `Run` frame
//! (the next task's arguments) and answers `Output` and `Finished` for it,
//! so the next task is recorded with a forged result and never runs.
//! `tests/integration/e2e/hostile_reuse.rs` drives it against `victim`.

use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use redis_tasks::protocol::ipc::{FromWorker, TaskResult, ToWorker, WORKER_FD, recv, send};
use redis_tasks::{App, TaskContext, TaskOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Marker {
    /// A directory where the victim leaves a file named after its id.
    dir: String,
}

/// Registers `forge_next` and `victim`.
pub fn register(app: App) -> App {
    // A task that meets a worker process left stopped ends by timeout.
    let short = || TaskOptions::new().timeout(Duration::from_secs(5));
    app.task_with("forge_next", short(), forge_next)
        .task_with("victim", short(), victim)
}

/// Starts the forger with `clone(CLONE_PARENT)` and returns at once, so the
/// worker process reports this task's end itself and waits for the next.
fn forge_next(ctx: &TaskContext, _: serde_json::Value) -> Result<(), String> {
    ctx.set_meta("pid", crate::host_ids::pid())?;
    // SAFETY: getpid is a plain system call.
    let worker = unsafe { libc::getpid() };
    // SAFETY: a fork-like clone (no new stack: the child runs on a copy of
    // this one and returns here with 0). The child never returns from
    // this function: it runs `forge` and leaves with `_exit`.
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT | libc::SIGCHLD,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if child < 0 {
        return Err(format!(
            "clone(CLONE_PARENT): {}",
            std::io::Error::last_os_error()
        ));
    }
    if child == 0 {
        forge(worker);
        // SAFETY: ends the forger without running the worker's exit code.
        unsafe { libc::_exit(0) }
    }
    Ok(())
}

/// The forger: lets the worker process report the task's end, stops it,
/// then answers every `Run` on its socket with a forged success.
fn forge(worker: libc::pid_t) {
    std::thread::sleep(Duration::from_millis(2));
    // SAFETY: kill with a pid and a signal.
    unsafe { libc::kill(worker, libc::SIGSTOP) };
    // SAFETY: WORKER_FD is the worker process's IPC socket, inherited by
    // the clone; ManuallyDrop keeps this handle from closing it.
    let mut socket = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(WORKER_FD) });
    while let Ok(Some(msg)) = recv::<ToWorker>(&mut *socket) {
        let ToWorker::Run(run) = msg else { continue };
        let finished = FromWorker::Finished {
            task_id: run.task_id,
            result: TaskResult::Success {
                output: Some("\"forged\"".to_owned()),
            },
        };
        if send(&mut *socket, &finished).is_err() {
            return;
        }
    }
}

/// An innocent task: leaves `<dir>/<id>` and returns its own id.
fn victim(ctx: &TaskContext, a: Marker) -> Result<String, String> {
    let path = std::path::Path::new(&a.dir).join(ctx.id());
    std::fs::write(&path, "ran\n").map_err(|e| e.to_string())?;
    Ok(ctx.id().to_owned())
}
