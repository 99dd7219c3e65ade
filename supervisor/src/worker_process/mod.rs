//! Starting, talking to, and reaping one worker process.
//!
//! A worker process is the same binary started again with
//! [`WORKER_FD_ARG`] (re-exec: both sides know the same tasks and
//! middleware). It gets a scrubbed environment, its own process group, a
//! parent-death signal and one socket; see `sys` for what happens between
//! fork and exec. Its frames are read as [`WorkerEvent`]s by whoever waits
//! for them (`frames`), so the slot waits on the worker, its own commands
//! and a deadline at once, on its own thread. The [`WorkerProcess`] handle
//! is the only owner and the only reaper of its child; dropping it kills
//! and reaps.
//!
//! Layout: `spawn` starts a process (exec or fork server), `handshake`
//! takes it to `Ready`, `frames` reads what it sends, `handle` is the
//! running process (frames, exit, kills, reaping), `alone` makes sure a reused
//! process is alone with its socket before its next task, `retire`
//! ends processes off the slots' path, and `spare` prepares a slot's next
//! process while its current task runs.

mod alone;
mod frames;
mod handle;
mod handshake;
mod retire;
mod spare;
mod spawn;

use handle::Proc;
pub(crate) use handle::{WorkerProcess, unkillable};
pub(crate) use retire::{RetireHandle, Retirer};
pub(crate) use spare::{Spare, SpareKind, Start as SpareStart};

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use redis_tasks_protocol::ExitReason;
use redis_tasks_protocol::ipc::FromWorker;
#[cfg(doc)]
use redis_tasks_protocol::ipc::WORKER_FD_ARG;

use crate::fork_server::ForkServer;
use crate::isolation::NotApplied;

/// How a worker process is started.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSpec {
    /// The binary to run (default: this process's own executable).
    pub exe: PathBuf,
    /// Environment variables passed through (the rest is scrubbed).
    pub env: Vec<(String, String)>,
    /// Names of the active middleware, sent in the handshake.
    pub middleware: Vec<String>,
    /// How long the handshake may take.
    pub handshake_timeout: Duration,
    /// Forks unrestricted worker processes without `exec`, when running
    /// (started for `--max-tasks-per-child 1`).
    pub fork_server: Option<Arc<ForkServer>>,
    /// The binary has a per-process setup hook: the handshake waits (up to
    /// [`SETUP_TIMEOUT`]) for the worker process to report how it went.
    pub setup_hook: bool,
}

/// How long a write to a worker process may wait for room in its socket.
/// A process reads whatever it is sent at once (one of its threads reads
/// while the other runs the task); one that has not made room in this time
/// (stopped, or hostile) would otherwise hold its slot in that write, past
/// its task's deadline and deaf to cancels.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a worker process's setup hook may take before the process
/// counts as failed to start.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Variables a worker process keeps from the supervisor's environment when
/// present: enough for locale, time zone and Rust diagnostics, nothing that
/// could reach Redis or systemd.
pub(crate) const PASSED_ENV: [&str; 7] = [
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "HOME",
    "RUST_BACKTRACE",
    "RUST_LOG",
];

impl SpawnSpec {
    /// A spec that re-executes this binary with the default environment
    /// allow-list.
    pub(crate) fn current_exe(middleware: Vec<String>) -> Self {
        let env = PASSED_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        SpawnSpec {
            exe: worker_binary(),
            env,
            middleware,
            handshake_timeout: Duration::from_secs(10),
            fork_server: None,
            setup_hook: false,
        }
    }
}

/// The binary worker processes run: this one, by the path it was started
/// from, so that a new binary installed there is used by the worker
/// processes a reload starts (the handshake refuses one that speaks another
/// protocol). If that path is gone, `/proc/self/exe` still reaches the
/// running binary.
fn worker_binary() -> PathBuf {
    match std::env::current_exe() {
        Ok(path) if path.exists() => path,
        _ => PathBuf::from("/proc/self/exe"),
    }
}

/// What a worker process sent, as [`frames`] reads it.
#[derive(Debug)]
pub(crate) enum WorkerEvent {
    /// A well-formed message.
    Message(FromWorker),
    /// The stream ended cleanly between frames: the process exited or
    /// closed its end.
    Closed,
    /// The stream carried something that is not a valid frame.
    Violation(String),
}

/// Why a worker process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The socket pair or the process could not be created.
    #[error("cannot start {exe}: {error}")]
    Spawn {
        /// The binary.
        exe: String,
        /// Why.
        error: io::Error,
    },
    /// The process ended or misbehaved before its handshake.
    #[error("{0}")]
    Handshake(String),
    /// A restriction of its isolation profile could not be applied; the
    /// process ran nothing.
    #[error("isolation not applied ({0})")]
    NotIsolated(NotApplied),
    /// The application's setup hook failed in the process (its text).
    #[error("setup hook failed: {0}")]
    SetupFailed(String),
    /// The supervisor could not end the process if it had to.
    #[error("{0}")]
    Unkillable(String),
}

/// Reads as std's `ExitStatus` accessors say: a code, or a signal.
pub(crate) fn exit_reason(status: ExitStatus) -> ExitReason {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Code(code),
        (None, Some(sig)) => ExitReason::Signal(sig),
        (None, None) => ExitReason::Code(-1),
    }
}
