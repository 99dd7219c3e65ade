//! The handle of one running worker process: its socket and events, its
//! exit, the kills, and the one reaper of the process.

use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use redis_tasks_protocol::ipc::{FrameError, ToWorker, send};
use redis_tasks_protocol::{ExitReason, proc_tree};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::frames::{Frames, Woken};
use super::{SpawnError, WorkerEvent, exit_reason};
use crate::bell::Bell;
use crate::cgroup::{self, TaskCgroup};
use crate::family;
use crate::fork_server::ForkServer;
use crate::task_output::Output;

/// How a worker process was started, and so who reaps it.
#[derive(Debug)]
pub(super) enum Proc {
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

/// One running worker process.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    pub(super) proc: Proc,
    stream: UnixStream,
    /// What was read of its frames (by whoever waits for them).
    frames: Frames,
    /// Rung when its exit is reported (or the report can no longer come).
    exit_bell: Arc<Bell>,
    reaped: Option<ExitReason>,
    /// Its exit, as reported on the exit channel (not yet reaped).
    exited: Option<ExitReason>,
    /// The supervisor sent SIGKILL while the process was still running.
    killed: bool,
    /// Tasks this process was given so far.
    pub tasks_run: u64,
    /// The reload generation it was started under.
    pub generation: u64,
    /// Its thread count when it said Ready, before any task ran.
    pub(super) idle_threads: Option<u32>,
    /// Its own cgroup, when the host allows them (started by `exec`).
    pub(super) cgroup: Option<TaskCgroup>,
    /// [`family::swept`] when its last task was sent (or checked).
    pub(super) swept_at_run: u64,
    /// Its `/proc` entry could not be read when it was ready (hidden from
    /// a non-root supervisor by `ProtectProc=invisible`).
    pub(super) proc_hidden: bool,
    /// The supervisor thread that started it (its parent in the kernel's
    /// eyes; see [`family::sweep_near`]).
    pub(super) spawned_by: u32,
    /// A kill was refused (EPERM) and there is no cgroup to kill through:
    /// the process is not waited for on the slot's thread.
    unkillable: bool,
    /// What it writes to its stdout and stderr, read by the supervisor.
    output: Output,
    /// The children it had when it said Ready: for an isolated one, its
    /// PID namespace's init and the worker inside it (the process started
    /// is their monitor). They die with the task's leftovers but are not
    /// counted as the task's.
    pub(super) own_children: Vec<u32>,
    /// Its `/proc` entry, held open from Ready on for the walk after each
    /// task (`None` when hidden from us, or a forked process).
    pub(super) proc_entry: Option<proc_tree::ProcEntry>,
}

/// What a task left behind in a worker process that stays, seen by
/// [`WorkerProcess::kill_descendants`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leftovers {
    /// Processes the task started (not those the process itself started
    /// before its first task), killed now.
    pub processes: usize,
    /// The process's threads when they were counted, `None` when they
    /// could not be.
    pub threads: Option<u32>,
}

impl WorkerProcess {
    pub(super) fn new(
        proc: Proc,
        cgroup: Option<TaskCgroup>,
        stream: UnixStream,
        exit_bell: Arc<Bell>,
        output: Output,
        generation: u64,
    ) -> Self {
        WorkerProcess {
            proc,
            stream,
            frames: Frames::new(),
            exit_bell,
            reaped: None,
            exited: None,
            killed: false,
            tasks_run: 0,
            generation,
            idle_threads: None,
            cgroup,
            swept_at_run: 0,
            proc_hidden: false,
            spawned_by: family::thread_id(),
            unkillable: false,
            output,
            own_children: Vec::new(),
            proc_entry: None,
        }
    }

    /// The capture of its stdout and stderr.
    pub(crate) fn output(&self) -> &Output {
        &self.output
    }

    /// `from_proc`, or where the process's `/proc` entry is hidden
    /// (ProtectProc=invisible hides a non-dumpable worker process from a
    /// non-root supervisor) the count its cgroup lists, which holds nothing
    /// else when this is asked (at Ready, and after the others were killed).
    pub(super) fn threads_or_cgroup(&self, from_proc: Option<u32>) -> Option<u32> {
        from_proc.or_else(|| self.cgroup.as_ref().and_then(TaskCgroup::threads))
    }

    /// Whether the task that just ended left threads running in the
    /// process: they could write frames or touch the next task's memory,
    /// so such a process is not used again. `left` is what
    /// [`kill_descendants`](Self::kill_descendants) found, whose walk
    /// counted the threads. A count that cannot be read is taken as a yes.
    pub(crate) fn left_threads(&self, left: &Leftovers) -> bool {
        if matches!(self.proc, Proc::Forked { .. }) {
            // Forked processes run one task each (and their pid may belong
            // to the fork server's PID namespace, not to /proc here).
            return false;
        }
        match (self.idle_threads, self.threads_or_cgroup(left.threads)) {
            (Some(idle), Some(now)) => now > idle,
            // Readable when it was ready, not now: assume the worst.
            (Some(_), None) => true,
            // Never readable (its /proc entry is hidden from us, as under
            // ProtectProc=invisible with a non-root supervisor): the check
            // is not available; said once at its start.
            (None, _) => false,
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
    /// exits (before it is reaped), whoever holds its socket open. The
    /// report comes once: whoever receives it passes it to
    /// [`WorkerProcess::note_exit`].
    pub(crate) fn exits(&self) -> Receiver<ExitReason> {
        match &self.proc {
            Proc::Direct { exit, .. } | Proc::Forked { exit, .. } => exit.clone(),
        }
    }

    /// Takes note of an exit report received from [`WorkerProcess::exits`]:
    /// for a forked process it is the reaped status.
    pub(crate) fn note_exit(&mut self, reason: ExitReason) {
        match self.proc {
            Proc::Forked { .. } => self.reaped = Some(reason),
            Proc::Direct { .. } => self.exited = Some(reason),
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
        if self.frames.has_partial() {
            return true;
        }
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// The next frame (or the end of the stream) it sent, if one is here
    /// now; reads the socket without waiting.
    pub(crate) fn next_event_now(&mut self) -> Option<WorkerEvent> {
        self.frames.next_now(self.stream.as_fd())
    }

    /// The next frame (or the end of the stream), waiting until `until`
    /// for one (for ever with `None`).
    pub(crate) fn next_event_until(&mut self, until: Option<Instant>) -> Option<WorkerEvent> {
        self.frames.next_until(self.stream.as_fd(), until)
    }

    /// Waits until it sends something, its exit is reported, `bell` rings,
    /// or `until` passes; says which (the exit bell drained already).
    pub(crate) fn wait(&mut self, bell: &Bell, until: Option<Instant>) -> Woken {
        let woken = self.frames.wait(
            self.stream.as_fd(),
            &[self.exit_bell.fd(), bell.fd()],
            until,
        );
        if woken.bells[0] {
            self.exit_bell.drain();
        }
        woken
    }

    /// Kills what the last task left running under a process that stays
    /// (started by `exec`: our unreaped child, so its pid is its own), and
    /// counts its threads on the way. A forked process runs one task: its
    /// whole group, itself included, is killed now by the fork server, so
    /// nothing the task started outlives the task's end while the process
    /// waits for its retirement (which reaps it).
    pub(crate) fn kill_descendants(&mut self) -> Leftovers {
        match &self.proc {
            // What the walk cannot see (a hidden /proc) or does not reach
            // (a clone(CLONE_PARENT)) is killed through its cgroup by
            // `make_alone`, which follows.
            Proc::Direct { child, .. } if self.reaped.is_none() => {
                let walk = match &mut self.proc_entry {
                    Some(entry) => proc_tree::kill_descendants_through(entry),
                    None => proc_tree::kill_descendants_walk(child.id()),
                };
                Leftovers {
                    processes: walk
                        .killed
                        .iter()
                        .filter(|pid| !self.own_children.contains(pid))
                        .count(),
                    threads: walk.root_threads,
                }
            }
            Proc::Forked { pid, server, .. } if self.reaped.is_none() => {
                server.kill(*pid);
                Leftovers::default()
            }
            _ => Leftovers::default(),
        }
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, msg: &ToWorker) -> Result<(), FrameError> {
        send(&mut self.stream, msg)
    }

    /// Sends a task: counts it, and remembers how many processes had been
    /// swept up to now (see [`WorkerProcess::make_alone`]).
    pub(crate) fn send_task(&mut self, run: &ToWorker) -> Result<(), FrameError> {
        self.swept_at_run = family::swept();
        self.send(run)?;
        self.tasks_run += 1;
        // Its answer takes a while: the slot's first look is a `poll`, not
        // a read that would find nothing.
        self.frames.await_poll();
        Ok(())
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
                    let refused = killpg(Pid::from_raw(pid), Signal::SIGKILL)
                        == Err(nix::errno::Errno::EPERM);
                    self.unkillable = refused && self.cgroup.is_none();
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

    /// Waits up to `grace` for the process to exit by itself (on its exit
    /// channel), then kills its group and reaps it; returns how it ended.
    /// The group is killed in every case, while the leader is still
    /// unreaped (so its id cannot have been reused), and no grandchild
    /// outlives the task.
    pub(crate) fn reap_within(&mut self, grace: Duration) -> ExitReason {
        if self.reaped.is_none() && self.exited.is_none() {
            // A closed channel (no report will come) ends the wait too.
            if let Ok(reason) = self.exits().recv_timeout(grace) {
                self.note_exit(reason);
            }
        }
        self.kill_and_reap()
    }

    /// Whether the leader has exited, observed without reaping it.
    pub(super) fn has_exited(&mut self) -> bool {
        if self.reaped.is_some() || self.exited.is_some() {
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
            Proc::Direct { child, .. } if self.unkillable && self.exited.is_none() => {
                // Never block a slot on a process it cannot kill (start-up
                // refuses such profiles; see `ensure_killable`).
                let pid = child.id();
                tracing::error!(
                    pid,
                    "cannot kill worker process {pid}: signals are refused (EPERM) and it has \
                     no cgroup; it is waited for off the slot's thread. Grant the supervisor \
                     CAP_KILL (see docs/security.md)"
                );
                reap_later(pid);
                ExitReason::Code(-1)
            }
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

/// Waits for our child `pid` on a thread of its own, which becomes its one
/// reaper (its handle gives it up).
fn reap_later(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(raw), None);
            family::forget(pid);
        });
}

impl WorkerProcess {
    /// Checks that the supervisor can end this process whatever its task
    /// does: through its cgroup (`cgroup.kill`), or by signals (a process
    /// of another user needs CAP_KILL, unless it runs in a user namespace
    /// the supervisor owns). A process that fails is asked to exit (no
    /// task code has run in it, so it does) and the start fails; the first
    /// such failure is kept for start-up to refuse with.
    pub(super) fn ensure_killable(&mut self) -> Result<(), SpawnError> {
        let Proc::Direct { child, .. } = &self.proc else {
            return Ok(());
        };
        if self.cgroup.is_some() {
            return Ok(());
        }
        let Ok(pid) = i32::try_from(child.id()) else {
            return Ok(());
        };
        // Signal 0 checks the permission and sends nothing.
        if nix::sys::signal::kill(Pid::from_raw(pid), None) != Err(nix::errno::Errno::EPERM) {
            return Ok(());
        }
        let error = SpawnError::Unkillable(format!(
            "the supervisor (uid {}) may not signal worker processes that run as another user \
             and has no worker cgroup to kill them through, so their timeouts, cancels and \
             shutdowns could not be enforced; grant it CAP_KILL (systemd: \
             AmbientCapabilities=CAP_SETUID CAP_SETGID CAP_KILL with the same \
             CapabilityBoundingSet=), or run it where it may create cgroups (Delegate=yes)",
            nix::unistd::geteuid()
        ));
        let _ = UNKILLABLE.set(error.to_string());
        // Not a kill: it is asked to exit and reaped.
        let _ = self.send(&ToWorker::Exit);
        if let Ok(reason) = self.exits().recv_timeout(Duration::from_secs(5)) {
            self.note_exit(reason);
        }
        self.reap_blocking();
        Err(error)
    }
}

/// The first worker process found that the supervisor could not kill
/// (see [`WorkerProcess::ensure_killable`]).
static UNKILLABLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Why the supervisor cannot kill the worker processes of some profile,
/// if a start found so.
pub(crate) fn unkillable() -> Option<&'static str> {
    UNKILLABLE.get().map(String::as_str)
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill_and_reap();
        }
    }
}
