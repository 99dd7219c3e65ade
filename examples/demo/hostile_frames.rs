//! Tasks that write raw frames on their IPC socket: `Progress` and `Meta`
//! as fast as they can, past the rate limit a `TaskContext` would keep, and
//! enqueue requests whose answers they never read. The supervisor must
//! hold Redis to the documented rate, and keep its slot's deadline,
//! whatever a worker process sends (`tests/integration/e2e/hostile_ipc.rs`).

use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use redis_tasks::protocol::Progress;
use redis_tasks::protocol::ipc::{ChildMode, ChildRequest, FromWorker, WORKER_FD, send};
use redis_tasks::{App, TaskContext, TaskOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct FrameFlood {
    /// How long to send, in seconds.
    secs: f64,
}

#[derive(Deserialize)]
struct MetaGrowth {
    /// How many updates, each with a key of its own.
    keys: u32,
    /// The size of each update's value, in KiB.
    kib: usize,
    /// The pause between two updates, in milliseconds.
    pause_ms: u64,
}

#[derive(Deserialize)]
struct AnswerJam {
    /// How many enqueue requests to send.
    frames: u32,
}

/// Registers the tasks on `app`.
pub fn register(app: App) -> App {
    app.task("progress_flood", progress_flood)
        .task("meta_growth", meta_growth)
        .task_with(
            "answer_jam",
            TaskOptions::new().timeout(Duration::from_secs(1)),
            answer_jam,
        )
}

/// Stops its own worker process (SIGSTOP: every thread, the one that
/// reads the answers too) from a child that then sends `frames` raw
/// enqueue requests on the process's socket: the supervisor's answers pile
/// up in a socket nobody reads, until its writes would wait for ever. The
/// task's 1 s timeout must still end it.
fn answer_jam(ctx: &TaskContext, a: AnswerJam) -> Result<(), String> {
    let request = FromWorker::Enqueue {
        task_id: ctx.id().to_owned(),
        request: ChildRequest {
            task: "pid".to_owned(),
            args_json: "{}".to_owned(),
            queue: None,
            delay_ms: None,
            timeout_secs: None,
            retry_json: None,
            unique_key: None,
            expires_in_ms: None,
            mode: ChildMode::OnSuccess,
        },
    };
    let mut frame = Vec::new();
    send(&mut frame, &request).map_err(|e| e.to_string())?;
    // Made before the fork: the child only stops its parent, writes and
    // exits.
    let batch = frame.repeat(a.frames as usize);
    // SAFETY: getpid and fork have no preconditions; the child calls only
    // kill, write and _exit (all async-signal-safe) on memory made before
    // the fork.
    let (worker, child) = unsafe { (libc::getpid(), libc::fork()) };
    if child < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    if child == 0 {
        let mut sent = 0;
        // SAFETY: stops our own worker process; WORKER_FD is its IPC
        // socket, inherited by this child, and `batch[sent..]` is valid
        // for reads of its length; _exit ends the child without running
        // the parent's exit handlers.
        unsafe {
            libc::kill(worker, libc::SIGSTOP);
            while sent < batch.len() {
                let n = libc::write(WORKER_FD, batch[sent..].as_ptr().cast(), batch.len() - sent);
                match usize::try_from(n) {
                    Ok(n) if n > 0 => sent += n,
                    _ => break,
                }
            }
            libc::_exit(0)
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Sends raw meta frames that each hold one new key (not the whole meta
/// object, as `TaskContext` would), so a merge in the supervisor would
/// grow the record's meta without end.
fn meta_growth(ctx: &TaskContext, a: MetaGrowth) -> Result<(), String> {
    // SAFETY: WORKER_FD is the worker loop's open IPC socket; ManuallyDrop
    // keeps this second handle from closing it.
    let mut socket = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(WORKER_FD) });
    let blob = "x".repeat(a.kib << 10);
    for n in 0..a.keys {
        let meta = FromWorker::Meta {
            task_id: ctx.id().to_owned(),
            meta_json: serde_json::json!({ format!("k{n}"): blob }).to_string(),
        };
        send(&mut *socket, &meta).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(a.pause_ms));
    }
    Ok(())
}

/// Sends progress and meta frames for `secs`, then one last progress
/// report (`done == total`, message "last") and returns.
fn progress_flood(ctx: &TaskContext, a: FrameFlood) -> Result<u64, String> {
    // SAFETY: WORKER_FD is the worker loop's open IPC socket; ManuallyDrop
    // keeps this second handle from closing it.
    let mut socket = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(WORKER_FD) });
    let task_id = ctx.id().to_owned();
    let until = Instant::now() + Duration::from_secs_f64(a.secs);
    let mut sent = 0u64;
    while Instant::now() < until {
        let progress = FromWorker::Progress {
            task_id: task_id.clone(),
            progress: Progress::new(sent, Some(u64::MAX), "flood"),
        };
        let meta = FromWorker::Meta {
            task_id: task_id.clone(),
            meta_json: format!("{{\"n\": {sent}}}"),
        };
        send(&mut *socket, &progress).map_err(|e| e.to_string())?;
        send(&mut *socket, &meta).map_err(|e| e.to_string())?;
        sent += 1;
    }
    let last = FromWorker::Progress {
        task_id: task_id.clone(),
        progress: Progress::new(sent, Some(sent), "last"),
    };
    send(&mut *socket, &last).map_err(|e| e.to_string())?;
    let meta = FromWorker::Meta {
        task_id,
        meta_json: format!("{{\"n\": {sent}, \"last\": true}}"),
    };
    send(&mut *socket, &meta).map_err(|e| e.to_string())?;
    Ok(sent)
}
