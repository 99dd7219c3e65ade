//! Tasks that attack containment on purpose: processes that try to outlive
//! their task (double fork and `setsid`), a crash hidden behind a child that
//! keeps the IPC socket open, a flood of meta frames, a frame sent after the
//! task's end, a channel closed by a process that will not exit. The
//! end-to-end tests in `tests/integration/e2e/hostile_*.rs` drive them.
//!
//! The children here are forked from a multi-threaded worker process, so
//! they only make async-signal-safe calls (`setsid`, `fork`, `open`,
//! `write`, `pause`, `_exit`); paths are turned into C strings before the
//! fork.

use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use redis_tasks::protocol::ipc::{FromWorker, TaskResult, WORKER_FD, send};
use redis_tasks::{App, Isolation, TaskContext, TaskOptions};
use serde::Deserialize;

type Result = std::result::Result<(), String>;

#[derive(Deserialize)]
struct Escape {
    /// Where the escaped grandchild writes its pid.
    path: String,
    /// How long the task itself sleeps after the escape.
    secs: f64,
}

#[derive(Deserialize)]
struct Flood {
    frames: u32,
    kib: usize,
}

#[derive(Deserialize)]
struct PathArg {
    path: String,
}

#[derive(Deserialize)]
struct Relay {
    /// Created by the next task when it starts.
    go: String,
    /// Written once the stray frame went out.
    sent: String,
}

/// Registers every hostile task on `app`.
pub fn register(app: App) -> App {
    app.task("orphan", orphan)
        .task_with(
            "orphan_timeout",
            TaskOptions::new().timeout(Duration::from_secs(1)),
            orphan,
        )
        .task("fork_holder_abort", fork_holder_abort)
        .task("meta_flood", meta_flood)
        .task("stray_finished", stray_finished)
        .task("stray_later", stray_later)
        .task("go_and_wait", go_and_wait)
        .task_with(
            "close_ipc_and_hang",
            TaskOptions::new().isolation(Isolation::new().memory_limit(512 << 20)),
            close_ipc_and_hang,
        )
}

fn c_path(path: &str) -> std::result::Result<CString, String> {
    CString::new(path).map_err(|e| e.to_string())
}

/// In a forked child: writes this process's pid, as the supervisor and
/// the tests see it, and a newline to `path`. That is the pid in the
/// namespace `/proc` was mounted for, read from the `/proc/self` link:
/// `getpid` answers in the worker processes' PID namespace.
///
/// # Safety
///
/// Async-signal-safe calls only, on a local buffer.
unsafe fn write_own_pid(path: &CString) {
    let mut buf = [0u8; 24];
    // SAFETY: readlink writes at most the length given into our buffer.
    let len = unsafe { libc::readlink(c"/proc/self".as_ptr(), buf.as_mut_ptr().cast(), 23) };
    let Ok(len) = usize::try_from(len) else {
        return;
    };
    buf[len] = b'\n';
    let (at, end) = (0, len + 1);
    // SAFETY: open/write/close on a C string and a local buffer we own.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        );
        if fd >= 0 {
            libc::write(fd, buf[at..end].as_ptr().cast(), end - at);
            libc::close(fd);
        }
    }
}

/// Double fork with `setsid`: the grandchild leaves the worker's process
/// group and session, closes the IPC socket (so only containment, not the
/// channel, can find it), writes its pid to `path` and sleeps forever. The
/// task waits for the pid to be written, then sleeps `secs` and succeeds.
fn orphan(_: &TaskContext, a: Escape) -> Result {
    let path = c_path(&a.path)?;
    // SAFETY: the children only make async-signal-safe calls and end with
    // `_exit` (or are killed); the parent reaps the intermediate child.
    unsafe {
        let child = libc::fork();
        if child < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        if child == 0 {
            libc::setsid();
            if libc::fork() == 0 {
                libc::close(WORKER_FD);
                write_own_pid(&path);
                loop {
                    libc::pause();
                }
            }
            libc::_exit(0);
        }
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    // The grandchild has escaped once it has written its pid.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&a.path).map_or(true, |m| m.len() == 0)
        && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_secs_f64(a.secs.max(0.0)));
    Ok(())
}

/// Forks a child that keeps the IPC socket open (a fork copies every
/// descriptor, close-on-exec or not) and writes its pid to `path`; then the
/// worker process aborts. The socket stays open in the child. The worker
/// process waits for the pid on a pipe first: once it has aborted, the
/// child is an orphan that containment kills within milliseconds, and the
/// test must learn its pid.
fn fork_holder_abort(_: &TaskContext, a: PathArg) -> Result {
    let path = c_path(&a.path)?;
    let mut ends = [0; 2];
    // SAFETY: the child only makes async-signal-safe calls; pipe2 writes
    // two descriptors into `ends`, which the parent reads from and closes.
    unsafe {
        if libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let child = libc::fork();
        if child < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        if child == 0 {
            write_own_pid(&path);
            libc::write(ends[1], b"x".as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
        libc::close(ends[1]);
        let mut byte = 0u8;
        libc::read(ends[0], (&raw mut byte).cast(), 1);
        libc::close(ends[0]);
    }
    std::process::abort()
}

/// Sends `frames` meta updates of `kib` KiB each, as fast as it can.
fn meta_flood(ctx: &TaskContext, a: Flood) -> Result {
    let blob = "x".repeat(a.kib << 10);
    for n in 0..a.frames {
        ctx.set_meta("blob", format!("{n}{blob}"))?;
    }
    Ok(())
}

/// Succeeds, and leaves a thread behind that sends a `Finished` frame for
/// this task on the raw IPC socket a moment after the real one, then
/// writes `path`.
fn stray_finished(ctx: &TaskContext, a: PathArg) -> Result {
    ctx.set_meta("pid", crate::host_ids::pid())?;
    let task_id = ctx.id().to_owned();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: WORKER_FD is the worker loop's open IPC socket;
        // ManuallyDrop keeps this second handle from closing it.
        let mut socket = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(WORKER_FD) });
        let stray = FromWorker::Finished {
            task_id,
            result: TaskResult::Error("stray".into()),
        };
        let _ = send(&mut *socket, &stray);
        let _ = std::fs::write(&a.path, "sent\n");
    });
    Ok(())
}

/// Returns at once but leaves a thread behind that waits for the next task
/// to start (it creates `go`) and then sends a forged frame into it.
fn stray_later(ctx: &TaskContext, a: Relay) -> Result {
    ctx.set_meta("pid", crate::host_ids::pid())?;
    std::thread::spawn(move || {
        let go = std::path::Path::new(&a.go);
        for _ in 0..6000 {
            if go.exists() {
                // SAFETY: WORKER_FD is the worker loop's open IPC socket;
                // ManuallyDrop keeps this second handle from closing it.
                let mut socket = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(WORKER_FD) });
                let forged = FromWorker::Finished {
                    task_id: "forged".into(),
                    result: TaskResult::Error("forged by the task before".into()),
                };
                let _ = send(&mut *socket, &forged);
                let _ = std::fs::write(&a.sent, "sent\n");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    Ok(())
}

/// An innocent task: creates `go`, then waits up to 3 s for `sent`.
fn go_and_wait(ctx: &TaskContext, a: Relay) -> Result {
    ctx.set_meta("pid", crate::host_ids::pid())?;
    std::fs::write(&a.go, "go\n").map_err(|e| e.to_string())?;
    let sent = std::path::Path::new(&a.sent);
    for _ in 0..300 {
        if sent.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

extern "C" fn hang_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Shuts the IPC socket down (the supervisor sees the channel close) while
/// the process refuses to exit: the worker loop's `exit` runs an `atexit`
/// handler that never returns. Only the supervisor's SIGKILL ends it.
fn close_ipc_and_hang(_: &TaskContext, _: serde_json::Value) -> Result {
    // SAFETY: registers a plain `extern "C"` function; shutdown takes a
    // descriptor number and a flag.
    unsafe {
        libc::atexit(hang_forever);
        libc::shutdown(WORKER_FD, libc::SHUT_RDWR);
    }
    hang_forever();
    Ok(())
}
