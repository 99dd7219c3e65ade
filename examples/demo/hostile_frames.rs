//! A task that writes raw `Progress` and `Meta` frames on its IPC socket
//! as fast as it can, past the rate limit its `TaskContext` would keep. The
//! supervisor must hold Redis to the documented rate whatever a worker
//! process sends (`tests/integration/e2e/hostile_ipc.rs`).

use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use redis_tasks::protocol::Progress;
use redis_tasks::protocol::ipc::{FromWorker, WORKER_FD, send};
use redis_tasks::{App, TaskContext};
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

/// Registers the tasks on `app`.
pub fn register(app: App) -> App {
    app.task("progress_flood", progress_flood)
        .task("meta_growth", meta_growth)
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
