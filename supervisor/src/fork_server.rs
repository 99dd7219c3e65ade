//! The supervisor's side of the fork server.
//!
//! With `--max-tasks-per-child 1` every task needs a new worker process.
//! Executing the binary again costs about a millisecond and a half of CPU
//! each time; forking a process that has already started costs a small
//! fraction of that. The fork server is that process: this binary started
//! once in its own role (single-threaded), which forks a worker process per
//! request. See `redis_tasks_protocol::ipc::fork_server` for the protocol and
//! `redis_tasks_worker::fork_server` for its side.
//!
//! Worker processes forked this way are children of the fork server, which
//! reaps them and reports their exit; a [`ForkServer`] routes each report to
//! the handle waiting for it. Processes with an isolation profile are still
//! started by `exec` (their restrictions are applied between fork and exec).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use redis_tasks_protocol::ExitReason;
use redis_tasks_protocol::ipc::WORKER_FD;
use redis_tasks_protocol::ipc::fork_server::{
    FORK_SERVER_FD_ARG, FromForkServer, ToForkServer, recv_packet, send_packet, send_packet_fds,
};
use std::os::unix::process::CommandExt;
use tracing::warn;

use crate::bell::{self, RingingReceiver, RingingSender};
use crate::sys;
use crate::task_output::ChildEnds;

/// How long a fork request may take.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Routes {
    /// Answers awaited, by request token.
    pending: HashMap<u64, Sender<Result<u32, String>>>,
    /// Exit reports awaited, by pid.
    waiting: HashMap<u32, RingingSender<ExitReason>>,
    /// Exit reports that came before anyone waited for them.
    early: HashMap<u32, ExitReason>,
    /// The fork server is gone.
    closed: bool,
}

/// A running fork server.
#[derive(Debug)]
pub(crate) struct ForkServer {
    control: OwnedFd,
    send_lock: Mutex<()>,
    routes: Arc<Mutex<Routes>>,
    next_token: AtomicU64,
    child: Mutex<Child>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ForkServer {
    /// Starts `exe` as fork server with environment `env`.
    pub(crate) fn start(exe: &Path, env: &[(String, String)]) -> io::Result<Arc<ForkServer>> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut cmd = Command::new(exe);
        cmd.arg(format!("{FORK_SERVER_FD_ARG}={WORKER_FD}"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0);
        let child = crate::family::spawn_fork_server(&mut cmd, |cmd, pid_ns| {
            sys::prepare_child(cmd, theirs.as_raw_fd(), None, pid_ns);
        })?;
        drop(theirs);
        let reader = ours.try_clone()?;
        let routes = Arc::new(Mutex::new(Routes::default()));
        let thread_routes = Arc::clone(&routes);
        std::thread::Builder::new()
            .name("fork-server".into())
            .spawn(move || read_loop(&reader, &thread_routes))?;
        Ok(Arc::new(ForkServer {
            control: ours,
            send_lock: Mutex::new(()),
            routes,
            next_token: AtomicU64::new(1),
            child: Mutex::new(child),
        }))
    }

    /// Forks a worker process that serves on `socket`, with `output`'s
    /// pipes as its stdout and stderr; returns its pid and the channel its
    /// exit report will come on.
    pub(crate) fn spawn(
        &self,
        socket: OwnedFd,
        output: ChildEnds,
    ) -> Result<(u32, RingingReceiver<ExitReason>), String> {
        let (etx, erx) =
            bell::channel(Some(1)).map_err(|e| format!("cannot watch a fork's exit: {e}"))?;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return Err("the fork server is gone".to_owned());
            }
            routes.pending.insert(token, tx);
        }
        {
            let _guard = lock(&self.send_lock);
            send_packet_fds(
                self.control.as_fd(),
                &ToForkServer::Spawn { token },
                &[socket.as_fd(), output.stdout.as_fd(), output.stderr.as_fd()],
            )
            .map_err(|e| format!("cannot reach the fork server: {e}"))?;
        }
        // The fork server has its own copies now.
        drop((socket, output));
        let pid = match rx.recv_timeout(SPAWN_TIMEOUT) {
            Ok(answer) => answer?,
            Err(_) => {
                lock(&self.routes).pending.remove(&token);
                return Err("the fork server did not answer".to_owned());
            }
        };
        let mut routes = lock(&self.routes);
        match routes.early.remove(&pid) {
            Some(reason) => {
                let _ = etx.send(reason);
            }
            None => {
                routes.waiting.insert(pid, etx);
            }
        }
        Ok((pid, erx))
    }

    /// Whether the fork server has ended.
    pub(crate) fn is_gone(&self) -> bool {
        lock(&self.routes).closed
    }

    /// Has the fork server kill the process group of `pid`, if `pid` is
    /// not reaped yet.
    pub(crate) fn kill(&self, pid: u32) {
        let _guard = lock(&self.send_lock);
        let _ = send_packet(self.control.as_fd(), &ToForkServer::Kill { pid }, None);
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Closing the control socket ends the fork server; its children
        // (none are left: each handle holds this server alive) would die
        // with it. Marked closed first: this end is expected, not news.
        lock(&self.routes).closed = true;
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
        crate::family::forget(child.id());
    }
}

fn read_loop(control: &OwnedFd, routes: &Mutex<Routes>) {
    loop {
        match recv_packet::<FromForkServer>(control.as_fd()) {
            Ok(Some((msg, fds))) => {
                // Nothing should come with a report; close whatever did.
                drop(fds.into_iter().map(sys::adopt_received).collect::<Vec<_>>());
                let mut r = lock(routes);
                match msg {
                    FromForkServer::Spawned { token, pid } => {
                        if let Some(tx) = r.pending.remove(&token) {
                            let _ = tx.send(Ok(pid));
                        }
                    }
                    FromForkServer::SpawnFailed { token, error } => {
                        if let Some(tx) = r.pending.remove(&token) {
                            let _ = tx.send(Err(error));
                        }
                    }
                    FromForkServer::Exited { pid, code, signal } => {
                        let reason = match (code, signal) {
                            (Some(code), _) => ExitReason::Code(code),
                            (None, Some(sig)) => ExitReason::Signal(sig),
                            (None, None) => ExitReason::Code(-1),
                        };
                        match r.waiting.remove(&pid) {
                            Some(tx) => {
                                let _ = tx.send(reason);
                            }
                            None => {
                                r.early.insert(pid, reason);
                            }
                        }
                    }
                }
            }
            Ok(None) | Err(_) => {
                let mut r = lock(routes);
                if !r.closed {
                    warn!(
                        "the fork server ended unexpectedly; worker processes start by exec again"
                    );
                }
                r.closed = true;
                // Dropping the senders wakes everyone waiting.
                r.pending.clear();
                r.waiting.clear();
                return;
            }
        }
    }
}
