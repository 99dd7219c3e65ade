//! A reused worker process is alone with its socket before its next task.
//!
//! Whatever holds a worker process's socket can read the next `Run` (the
//! next task's arguments) and answer for it. Killing the worker process's
//! descendants after a task is not enough: a task can start a process
//! whose parent is the supervisor (`clone(CLONE_PARENT)`), outside the
//! worker process's tree, which keeps the socket, stops the worker process
//! and forges the next task's result. So before a process that has run a
//! task gets another one, [`WorkerProcess::make_alone`] kills, and waits
//! for, every other process in its cgroup and every child of the
//! supervisor that no handle owns, synchronously, when the task ends (in
//! `execute::run_on`, after its descendants are killed). The sweep looks
//! where such a process can be (`family::sweep_near`: the children of the
//! thread that started the worker process and of the main thread, and the
//! anchor's); the orphan sweeper still lists every thread's every 50 ms.
//! If there was anything to kill, or the orphan sweeper killed anything
//! since the last task was sent (checked again just before the next `Run`,
//! in the slot), the process is not used again: it may have been stopped
//! or tampered with, and the next task gets a fresh one.
//!
//! Where the supervisor has neither worker cgroups nor a PID namespace it
//! cannot tell that nothing else holds the socket, and no process is used
//! for a second task (see `control::contain_reuse`).

use std::fmt;

use super::{Proc, WorkerProcess};
use crate::family;

/// Why a worker process is not used for another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotAlone {
    /// Processes killed now: in its cgroup, or children of the supervisor
    /// that no handle owns.
    pub killed: usize,
    /// The orphan sweeper killed processes while the last task ran.
    pub swept_meanwhile: bool,
}

impl fmt::Display for NotAlone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.killed > 0 {
            write!(
                f,
                "killed {} process(es) that the last task started outside its worker \
                 process's tree (with clone(CLONE_PARENT), say) or that no worker process owns",
                self.killed
            )
        } else {
            write!(
                f,
                "processes that no worker process owns were killed while its last task ran"
            )
        }
    }
}

impl WorkerProcess {
    /// When a task has ended (its descendants killed): makes sure nothing
    /// but this process can hold its socket; see the module doc. A process
    /// that runs one task only (forked) needs no check.
    pub(crate) fn make_alone(&mut self) -> Result<(), NotAlone> {
        if matches!(self.proc, Proc::Forked { .. }) {
            return Ok(());
        }
        // A process a task starts is a descendant of its worker process
        // (killed by the walk before this) or, through clone(CLONE_PARENT),
        // a child of the thread that started the worker process, or an
        // orphan of one (the main thread's, or the anchor's): the sweep
        // below finds those. Its cgroup is listed too where the walk cannot
        // see the worker process's /proc (ProtectProc=invisible).
        let mut killed = match &self.cgroup {
            Some(cgroup) if self.proc_hidden => cgroup.kill_others(self.pid()),
            _ => 0,
        };
        let swept = family::sweep_near(self.spawned_by);
        killed += swept;
        // Read after our sweep, which waited for any sweep under way: what
        // others killed since the task was sent counts too.
        let swept_meanwhile = family::swept() - swept as u64 != self.swept_at_run;
        if killed == 0 && !swept_meanwhile {
            self.swept_at_run = family::swept();
            return Ok(());
        }
        Err(NotAlone {
            killed,
            swept_meanwhile,
        })
    }

    /// Before the next task: whether the orphan sweeper killed anything
    /// since the last task was checked (the check itself ran when it
    /// ended).
    pub(crate) fn still_alone(&self) -> Result<(), NotAlone> {
        if self.tasks_run == 0 || family::swept() == self.swept_at_run {
            return Ok(());
        }
        Err(NotAlone {
            killed: 0,
            swept_meanwhile: true,
        })
    }
}
