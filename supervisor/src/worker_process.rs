//! Starting, talking to, and reaping one worker process.
//!
//! A worker process is the same binary started again with
//! [`WORKER_FD_ARG`] (re-exec: both sides know the same tasks and
//! middleware). It gets a scrubbed environment, its own process group, a
//! parent-death signal and one socket; see `sys` for what happens between
//! fork and exec. A reader thread turns its frames into [`WorkerEvent`]s on
//! a channel, so the slot can wait on the worker, its own commands and a
//! deadline at once. The [`WorkerProcess`] handle is the only owner and the
//! only reaper of its child; dropping it kills and reaps.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded, unbounded};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use redis_tasks_protocol::ipc::{
    FrameError, FromWorker, PROTOCOL_VERSION, ToWorker, WORKER_FD, WORKER_FD_ARG, recv, send,
};
use redis_tasks_protocol::{ExitReason, proc_tree};

use crate::cgroup::{self, TaskCgroup};
use crate::family;
use crate::fork_server::ForkServer;
use crate::isolation::{NotApplied, Plan};
use crate::sys;

/// How many events the reader thread may queue before it stops reading:
/// a worker process that floods frames then blocks on its own writes
/// instead of growing the supervisor's memory.
pub(crate) const EVENT_QUEUE: usize = 64;

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

/// What the reader thread saw.
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
}

/// How a worker process was started, and so who reaps it.
#[derive(Debug)]
enum Proc {
    /// Started by `exec`: our child, reaped here. `exit` carries the exit
    /// status a watcher thread saw (without reaping).
    Direct {
        child: Child,
        exit: Receiver<ExitReason>,
    },
    /// Forked by the fork server, which reaps it and reports its exit.
    Forked {
        pid: u32,
        server: Arc<ForkServer>,
        exit: Receiver<ExitReason>,
    },
}

/// Says once per supervisor that worker processes' thread counts cannot be
/// read, so a thread a task leaves behind is not noticed.
fn warn_threads_hidden(pid: u32) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            pid,
            "cannot read /proc/<pid>/stat of worker processes (ProtectProc=invisible with a \
             non-root supervisor hides them): a thread a task leaves running is not detected, \
             and such a process is used again; see docs/security.md"
        );
    });
}

/// Puts a freshly started worker process into a cgroup of its own when the
/// host allows them. A profile whose limits rest on the cgroup (see
/// [`cgroup::WorkerCgroups::limits_memory`]) refuses to run without it;
/// otherwise the process runs on without one.
fn join_cgroup(child: &Child, plan: Option<&Plan>) -> Result<Option<TaskCgroup>, SpawnError> {
    let Some(cgroups) = cgroup::get() else {
        return Ok(None);
    };
    let limits = plan.map(|p| p.cgroup_limits).unwrap_or_default();
    let joined = cgroups.create(limits).and_then(|cgroup| {
        crate::isolation::namespace_members(child.id())
            .into_iter()
            .try_for_each(|pid| cgroup.add(pid))
            .map(|()| cgroup)
    });
    match joined {
        Ok(cgroup) => Ok(Some(cgroup)),
        Err(e) if limits.memory.is_some() && cgroups.limits_memory() => {
            Err(SpawnError::NotIsolated(NotApplied {
                restriction: "memory_limit".to_owned(),
                reason: format!("cannot set up the worker process's cgroup: {e}"),
            }))
        }
        Err(e) => {
            tracing::warn!("worker process runs without a cgroup of its own: {e}");
            Ok(None)
        }
    }
}

/// Turns an I/O error while starting a worker process from `spec` into a
/// [`SpawnError`] naming the binary.
fn spawn_error(spec: &SpawnSpec) -> impl Fn(io::Error) -> SpawnError + '_ {
    move |error| SpawnError::Spawn {
        exe: spec.exe.display().to_string(),
        error,
    }
}

/// One running worker process.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    proc: Proc,
    stream: UnixStream,
    events: Receiver<WorkerEvent>,
    reaped: Option<ExitReason>,
    /// The supervisor sent SIGKILL while the process was still running.
    killed: bool,
    /// Tasks this process was given so far.
    pub tasks_run: u64,
    /// The reload generation it was started under.
    pub generation: u64,
    /// Its thread count when it said Ready, before any task ran.
    idle_threads: Option<u32>,
    /// Its own cgroup, when the host allows them (started by `exec`).
    cgroup: Option<TaskCgroup>,
}

impl WorkerProcess {
    /// Starts a worker process under reload `generation` and completes the
    /// handshake.
    /// Uses the spec's fork server when it has one (falling back to `exec`
    /// if the fork server is gone).
    pub(crate) fn spawn(spec: &SpawnSpec, generation: u64) -> Result<Self, SpawnError> {
        if let Some(server) = &spec.fork_server {
            match WorkerProcess::fork_from(server, spec, generation) {
                Err(SpawnError::Handshake(e)) if server.is_gone() => {
                    tracing::warn!(
                        "fork server unusable ({e}); starting the worker process by exec"
                    );
                }
                other => return other,
            }
        }
        WorkerProcess::spawn_isolated(spec, generation, None)
    }

    /// Like [`WorkerProcess::spawn`], under an isolation `plan` when given:
    /// its limits, namespace, user and no-new-privileges are applied before
    /// `exec`, its environment and working directory replace the defaults,
    /// and the handshake waits until the process has confined itself.
    pub(crate) fn spawn_isolated(
        spec: &SpawnSpec,
        generation: u64,
        plan: Option<&Plan>,
    ) -> Result<Self, SpawnError> {
        let spawn_err = spawn_error(spec);
        let (ours, theirs) = UnixStream::pair().map_err(&spawn_err)?;
        let mut cmd = Command::new(&spec.exe);
        let env = plan.map_or(&spec.env, |p| &p.env);
        cmd.arg(format!("{WORKER_FD_ARG}={WORKER_FD}"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0);
        if let Some(dir) = plan.and_then(|p| p.working_dir.as_ref()) {
            cmd.current_dir(dir);
        }
        sys::prepare_child(
            &mut cmd,
            theirs.as_raw_fd(),
            plan.map(|p| p.child.clone()),
            None,
        );
        let child =
            family::spawn(&mut cmd).map_err(|e| match NotApplied::from_spawn_error(&e) {
                Some(not) => SpawnError::NotIsolated(not),
                None => spawn_err(e),
            })?;
        drop(theirs);
        let mut child = child;
        let cgroup = match join_cgroup(&child, plan) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let exit = watch_exit(child.id()).map_err(&spawn_err)?;
        let mut process =
            WorkerProcess::connect(Proc::Direct { child, exit }, ours, spec, generation, plan)?;
        process.cgroup = cgroup;
        Ok(process)
    }

    /// Starts a worker process through `server` (no `exec`) and completes
    /// the handshake.
    pub(crate) fn fork_from(
        server: &Arc<ForkServer>,
        spec: &SpawnSpec,
        generation: u64,
    ) -> Result<Self, SpawnError> {
        let spawn_err = |error| SpawnError::Spawn {
            exe: "the fork server".to_owned(),
            error,
        };
        let (ours, theirs) = UnixStream::pair().map_err(&spawn_err)?;
        let (pid, exit) = server
            .spawn(OwnedFd::from(theirs))
            .map_err(SpawnError::Handshake)?;
        let proc = Proc::Forked {
            pid,
            server: Arc::clone(server),
            exit,
        };
        WorkerProcess::connect(proc, ours, spec, generation, None)
    }

    /// Wraps a started process: reader thread, handshake.
    fn connect(
        proc: Proc,
        ours: UnixStream,
        spec: &SpawnSpec,
        generation: u64,
        plan: Option<&Plan>,
    ) -> Result<Self, SpawnError> {
        let reader = ours.try_clone().map_err(spawn_error(spec))?;
        let (tx, events) = bounded(EVENT_QUEUE);
        let mut process = WorkerProcess {
            proc,
            stream: ours,
            events,
            reaped: None,
            killed: false,
            tasks_run: 0,
            generation,
            idle_threads: None,
            cgroup: None,
        };
        thread::Builder::new()
            .name(format!("ipc-{}", process.pid()))
            .spawn(move || read_loop(reader, &tx))
            .map_err(spawn_error(spec))?;
        process.handshake(spec, plan)?;
        Ok(process)
    }

    fn handshake(&mut self, spec: &SpawnSpec, plan: Option<&Plan>) -> Result<(), SpawnError> {
        let failed = |this: &mut Self, what: String| {
            let reason = this.kill_and_reap();
            SpawnError::Handshake(format!("{what} ({reason})"))
        };
        match self.events.recv_timeout(spec.handshake_timeout) {
            Ok(WorkerEvent::Message(FromWorker::Hello { version, .. }))
                if version == PROTOCOL_VERSION => {}
            Ok(WorkerEvent::Message(FromWorker::Hello { version, .. })) => {
                return Err(failed(
                    self,
                    format!("speaks protocol {version}, this supervisor {PROTOCOL_VERSION}"),
                ));
            }
            Ok(WorkerEvent::Message(other)) => {
                return Err(failed(self, format!("sent {other:?} before its hello")));
            }
            Ok(WorkerEvent::Violation(detail)) => {
                return Err(failed(self, format!("sent a malformed hello: {detail}")));
            }
            Ok(WorkerEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let reason = self.reap_within(Duration::from_secs(2));
                return Err(SpawnError::Handshake(format!(
                    "{reason} before its handshake"
                )));
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(failed(
                    self,
                    format!("no handshake within {:?}", spec.handshake_timeout),
                ));
            }
        }
        let confine = plan.and_then(|p| p.confine.clone());
        let confining = confine.is_some();
        let setup = ToWorker::Setup {
            middleware: spec.middleware.clone(),
            confine,
        };
        self.send(&setup)
            .map_err(|e| failed(self, format!("cannot send setup: {e}")))?;
        if confining {
            self.await_confined(spec)?;
        }
        if spec.setup_hook {
            self.await_setup_hook()?;
        }
        self.await_ready(spec)
    }

    /// Waits for the answer of the process's setup hook.
    fn await_setup_hook(&mut self) -> Result<(), SpawnError> {
        let failed = |this: &mut Self, what: String| {
            let reason = this.kill_and_reap();
            SpawnError::Handshake(format!("{what} ({reason})"))
        };
        match self.events.recv_timeout(SETUP_TIMEOUT) {
            Ok(WorkerEvent::Message(FromWorker::SetUp { error: None })) => Ok(()),
            Ok(WorkerEvent::Message(FromWorker::SetUp { error: Some(error) })) => {
                self.reap_within(Duration::from_secs(2));
                Err(SpawnError::SetupFailed(error))
            }
            Ok(WorkerEvent::Message(other)) => Err(failed(
                self,
                format!("sent {other:?} instead of the result of its setup hook"),
            )),
            Ok(WorkerEvent::Violation(detail)) => Err(failed(
                self,
                format!("sent a malformed setup answer: {detail}"),
            )),
            Ok(WorkerEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let reason = self.reap_within(Duration::from_secs(2));
                Err(SpawnError::Handshake(format!(
                    "{reason} while running its setup hook"
                )))
            }
            Err(RecvTimeoutError::Timeout) => Err(failed(
                self,
                format!("setup hook did not finish within {SETUP_TIMEOUT:?}"),
            )),
        }
    }

    /// Waits for [`FromWorker::Ready`] and counts the threads of the idle
    /// process (no task code has run in it yet).
    fn await_ready(&mut self, spec: &SpawnSpec) -> Result<(), SpawnError> {
        let failed = |this: &mut Self, what: String| {
            let reason = this.kill_and_reap();
            SpawnError::Handshake(format!("{what} ({reason})"))
        };
        match self.events.recv_timeout(spec.handshake_timeout) {
            Ok(WorkerEvent::Message(FromWorker::Ready)) => {
                self.idle_threads = self.threads();
                if self.idle_threads.is_none() && !matches!(self.proc, Proc::Forked { .. }) {
                    warn_threads_hidden(self.pid());
                }
                Ok(())
            }
            Ok(WorkerEvent::Message(other)) => {
                Err(failed(self, format!("sent {other:?} instead of Ready")))
            }
            Ok(WorkerEvent::Violation(detail)) => Err(failed(
                self,
                format!("sent a malformed frame instead of Ready: {detail}"),
            )),
            Ok(WorkerEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let reason = self.reap_within(Duration::from_secs(2));
                Err(SpawnError::Handshake(format!("{reason} during set-up")))
            }
            Err(RecvTimeoutError::Timeout) => Err(failed(
                self,
                format!("not ready within {:?}", spec.handshake_timeout),
            )),
        }
    }

    /// How many threads the process runs now, read from `/proc` (outside
    /// the task's reach); `None` when that cannot be read.
    fn threads(&self) -> Option<u32> {
        if matches!(self.proc, Proc::Forked { .. }) {
            return None;
        }
        // `stat` (field 20, num_threads) is cheaper for the kernel to write
        // than `status`; the command name ends at the last ')'.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let (_, after_name) = stat.rsplit_once(')')?;
        after_name.split_whitespace().nth(17)?.parse().ok()
    }

    /// Whether the task that just ended left threads running in the
    /// process: they could write frames or touch the next task's memory,
    /// so such a process is not used again. A count that cannot be read is
    /// taken as a yes.
    pub(crate) fn left_threads(&self) -> bool {
        if matches!(self.proc, Proc::Forked { .. }) {
            // Forked processes run one task each (and their pid may belong
            // to the fork server's PID namespace, not to /proc here).
            return false;
        }
        match (self.idle_threads, self.threads()) {
            (Some(idle), Some(now)) => now > idle,
            // Readable when it was ready, not now: assume the worst.
            (Some(_), None) => true,
            // Never readable (its /proc entry is hidden from us, as under
            // ProtectProc=invisible with a non-root supervisor): the check
            // is not available; said once at its start.
            (None, _) => false,
        }
    }

    fn await_confined(&mut self, spec: &SpawnSpec) -> Result<(), SpawnError> {
        let failed = |this: &mut Self, what: String| {
            let reason = this.kill_and_reap();
            SpawnError::Handshake(format!("{what} ({reason})"))
        };
        match self.events.recv_timeout(spec.handshake_timeout) {
            Ok(WorkerEvent::Message(FromWorker::Confined { refused: None })) => Ok(()),
            Ok(WorkerEvent::Message(FromWorker::Confined {
                refused: Some(refusal),
            })) => {
                self.reap_within(Duration::from_secs(2));
                Err(SpawnError::NotIsolated(refusal.into()))
            }
            Ok(WorkerEvent::Message(other)) => Err(failed(
                self,
                format!("sent {other:?} instead of confirming its confinement"),
            )),
            Ok(WorkerEvent::Violation(detail)) => Err(failed(
                self,
                format!("sent a malformed confirmation: {detail}"),
            )),
            Ok(WorkerEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let reason = self.reap_within(Duration::from_secs(2));
                Err(SpawnError::Handshake(format!(
                    "{reason} while confining itself"
                )))
            }
            Err(RecvTimeoutError::Timeout) => Err(failed(
                self,
                format!("did not confine itself within {:?}", spec.handshake_timeout),
            )),
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        match &self.proc {
            Proc::Direct { child, .. } => child.id(),
            Proc::Forked { pid, .. } => *pid,
        }
    }

    /// The channel on which the process's exit is reported, as soon as it
    /// exits (before it is reaped), whoever holds its socket open.
    pub(crate) fn exits(&self) -> Receiver<ExitReason> {
        match &self.proc {
            Proc::Direct { exit, .. } | Proc::Forked { exit, .. } => exit.clone(),
        }
    }

    /// Takes note of an exit report received from [`WorkerProcess::exits`]:
    /// for a forked process it is the reaped status.
    pub(crate) fn note_exit(&mut self, reason: ExitReason) {
        if matches!(self.proc, Proc::Forked { .. }) {
            self.reaped = Some(reason);
        }
    }

    /// Whether the supervisor killed the process while it was running (so
    /// a SIGKILL is ours, not a limit's).
    pub(crate) fn killed_by_us(&self) -> bool {
        self.killed
    }

    /// Whether the process sent anything that has not been read: between
    /// tasks, a frame is a stray (a thread of the last task, or a forger).
    pub(crate) fn has_stray_input(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        if !self.events.is_empty() {
            return true;
        }
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Kills what the last task left running under a process that stays
    /// (started by `exec`: our unreaped child, so its pid is its own). A
    /// forked process is retired after each task; the fork server kills
    /// what it leaves.
    pub(crate) fn kill_descendants(&self) -> usize {
        match &self.proc {
            Proc::Direct { child, .. } if self.reaped.is_none() => {
                proc_tree::kill_descendants(child.id())
            }
            _ => 0,
        }
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, msg: &ToWorker) -> Result<(), FrameError> {
        send(&mut self.stream, msg)
    }

    /// The channel of events from the reader thread.
    pub(crate) fn events(&self) -> &Receiver<WorkerEvent> {
        &self.events
    }

    /// Whether the process has not exited.
    pub(crate) fn is_alive(&mut self) -> bool {
        self.reaped.is_none() && !self.has_exited()
    }

    /// Kills the whole process group (the task's own children too) while
    /// the leader is unreaped, so the group id cannot have been reused.
    pub(crate) fn kill(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        if !self.has_exited() {
            self.killed = true;
        }
        match &self.proc {
            Proc::Direct { child, .. } => {
                // Its cgroup holds everything it started, whatever that did.
                if let Some(cgroup) = &self.cgroup {
                    cgroup.kill();
                }
                // Unreaped, so the pid and the group id are still its own.
                // The tree first: members that left the group (setsid) and
                // were adopted by this subreaper process.
                proc_tree::kill_tree(child.id());
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            // The fork server is the reaper: it signals only while unreaped.
            Proc::Forked { pid, server, .. } => server.kill(*pid),
        }
    }

    /// Whether the kernel's out-of-memory killer acted in the process's
    /// cgroup (`memory.events`); `None` when no cgroup limits its memory.
    pub(crate) fn oom_killed(&self) -> Option<bool> {
        let limited = cgroup::get().is_some_and(|c| c.limits_memory());
        match &self.cgroup {
            Some(cgroup) if limited => Some(cgroup.oom_kills() > 0),
            _ => None,
        }
    }

    /// Kills the group and reaps the leader.
    pub(crate) fn kill_and_reap(&mut self) -> ExitReason {
        self.kill();
        self.reap_blocking()
    }

    /// Waits up to `grace` for the process to exit by itself, then kills
    /// its group and reaps it; returns how it ended. The group is killed in
    /// every case, while the leader is still unreaped (so its id cannot have
    /// been reused), and no grandchild outlives the task.
    pub(crate) fn reap_within(&mut self, grace: Duration) -> ExitReason {
        let deadline = Instant::now() + grace;
        while self.reaped.is_none() && Instant::now() < deadline && !self.has_exited() {
            thread::sleep(Duration::from_millis(1));
        }
        self.kill_and_reap()
    }

    /// Whether the leader has exited, observed without reaping it.
    fn has_exited(&mut self) -> bool {
        if self.reaped.is_some() {
            return true;
        }
        match &self.proc {
            Proc::Direct { child, .. } => {
                let Ok(pid) = i32::try_from(child.id()) else {
                    return true;
                };
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
                !matches!(
                    waitid(Id::Pid(Pid::from_raw(pid)), flags),
                    Ok(WaitStatus::StillAlive)
                )
            }
            // The fork server reports an exit after it killed the group and
            // reaped the process: keep the report as the reaped status.
            Proc::Forked { exit, .. } => match exit.try_recv() {
                Ok(reason) => {
                    self.reaped = Some(reason);
                    true
                }
                Err(crossbeam_channel::TryRecvError::Empty) => false,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.reaped = Some(ExitReason::Code(-1));
                    true
                }
            },
        }
    }

    fn reap_blocking(&mut self) -> ExitReason {
        if let Some(reason) = self.reaped {
            return reason;
        }
        let reason = match &mut self.proc {
            Proc::Direct { child, .. } => {
                let reason = child.wait().map_or(ExitReason::Code(-1), exit_reason);
                family::forget(child.id());
                reason
            }
            Proc::Forked { exit, .. } => exit.recv().unwrap_or(ExitReason::Code(-1)),
        };
        self.reaped = Some(reason);
        reason
    }

    /// Asks an idle process to exit and reaps it.
    pub(crate) fn retire(mut self) {
        let _ = self.send(&ToWorker::Exit);
        self.reap_within(Duration::from_secs(5));
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill_and_reap();
        }
    }
}

/// Reads as std's `ExitStatus` accessors say: a code, or a signal.
pub(crate) fn exit_reason(status: ExitStatus) -> ExitReason {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Code(code),
        (None, Some(sig)) => ExitReason::Signal(sig),
        (None, None) => ExitReason::Code(-1),
    }
}

/// Starts a thread that reports when `pid` (our child) exits, without
/// reaping it (`waitid` with `WNOWAIT`): the handle stays its one reaper.
/// The thread ends with the process.
fn watch_exit(pid: u32) -> io::Result<Receiver<ExitReason>> {
    let (tx, rx) = bounded(1);
    let raw = Pid::from_raw(i32::try_from(pid).map_err(io::Error::other)?);
    thread::Builder::new()
        .name(format!("exit-{pid}"))
        .spawn(move || {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            let reason = loop {
                match waitid(Id::Pid(raw), flags) {
                    Ok(WaitStatus::Exited(_, code)) => break ExitReason::Code(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => break ExitReason::Signal(sig as i32),
                    Err(nix::errno::Errno::EINTR) | Ok(_) => {}
                    // Reaped already: the handle knows.
                    Err(_) => return,
                }
            };
            let _ = tx.send(reason);
        })?;
    Ok(rx)
}

fn read_loop(mut stream: UnixStream, tx: &crossbeam_channel::Sender<WorkerEvent>) {
    loop {
        let event = match recv::<FromWorker>(&mut stream) {
            Ok(Some(msg)) => WorkerEvent::Message(msg),
            Ok(None) => WorkerEvent::Closed,
            // A worker process that died with our last message unread
            // resets the connection: that is its end, not a bad frame.
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                WorkerEvent::Closed
            }
            Err(e) => WorkerEvent::Violation(e.to_string()),
        };
        let last = !matches!(event, WorkerEvent::Message(_));
        if tx.send(event).is_err() || last {
            return;
        }
    }
}

/// Retires worker processes off the slots' path: a slot hands over a
/// process it is done with and goes on fetching while this thread asks the
/// process to exit and reaps it. The handle moves with the process, so each
/// process still has exactly one owner and one reaper.
#[derive(Debug)]
pub(crate) struct Retirer {
    tx: crossbeam_channel::Sender<Option<WorkerProcess>>,
    thread: thread::JoinHandle<()>,
}

/// What slots hold to hand processes over to a [`Retirer`].
#[derive(Debug, Clone)]
pub(crate) struct RetireHandle(crossbeam_channel::Sender<Option<WorkerProcess>>);

impl RetireHandle {
    /// Hands `process` over (or retires it here if the retirer is gone).
    pub(crate) fn retire(&self, process: WorkerProcess) {
        if let Err(unsent) = self.0.send(Some(process)) {
            if let Some(process) = unsent.0 {
                process.retire();
            }
        }
    }
}

impl Retirer {
    /// Starts the retiring thread.
    pub(crate) fn start() -> io::Result<Retirer> {
        let (tx, rx) = unbounded::<Option<WorkerProcess>>();
        let thread = thread::Builder::new()
            .name("retirer".into())
            .spawn(move || retire_loop(&rx))?;
        Ok(Retirer { tx, thread })
    }

    /// A handle slots use to hand processes over.
    pub(crate) fn handle(&self) -> RetireHandle {
        RetireHandle(self.tx.clone())
    }

    /// Waits until every process handed over so far is reaped (call after
    /// every slot has ended).
    pub(crate) fn finish(self) {
        let _ = self.tx.send(None);
        let _ = self.thread.join();
    }
}

/// How long a retiring process gets to exit by itself before its group is
/// killed.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Retires many processes at once: each is asked to exit when handed over
/// and reaped as soon as it has, so retirement keeps up however many
/// processes a second the slots hand over (one per task with
/// `--max-tasks-per-child 1`). `None` marks the end: what was handed over
/// before it is still retired.
fn retire_loop(rx: &Receiver<Option<WorkerProcess>>) {
    let mut retiring: Vec<(WorkerProcess, Instant)> = Vec::new();
    let mut open = true;
    while open || !retiring.is_empty() {
        let next = if retiring.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(1))
        };
        match next {
            Ok(Some(mut process)) => {
                let _ = process.send(&ToWorker::Exit);
                retiring.push((process, Instant::now() + RETIRE_GRACE));
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => open = false,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        retiring.retain_mut(|(process, deadline)| {
            if process.has_exited() || now >= *deadline {
                // Kills what is left of the group and reaps.
                process.kill_and_reap();
                false
            } else {
                true
            }
        });
    }
}
