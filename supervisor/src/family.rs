//! The supervisor's children, and the orphans it adopts.
//!
//! The supervisor is a child subreaper: a process that a task started and
//! that lost its parent (a double fork, or the worker process died under
//! it) is re-parented here instead of to init. Such an adopted orphan has
//! no owner: no handle waits for it. This module tells them apart from the
//! children the supervisor started itself (worker processes, the fork
//! server), which are registered when they are spawned, and kills and reaps
//! the orphans: a sweeper thread looks at the supervisor's children every
//! [`SWEEP_EVERY`] and, for each one not registered, freezes and kills its
//! tree and reaps it with `waitpid` on that pid alone. Registered children
//! are never waited for here (one reaper each: their handle), and nothing
//! calls `waitpid(-1)`.
//!
//! The set of registered children is process-wide, as the kernel's list of
//! a process's children is: a spawn holds the read side of a lock from
//! before `fork` until its pid is registered, and a sweep holds the write
//! side while it lists the children, so a child is never seen half-started.

use std::collections::HashSet;
use std::io;
use std::process::{Child, Command};
use std::sync::{LazyLock, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use redis_tasks_protocol::proc_tree;
use tracing::{info, warn};

/// How often adopted orphans are looked for.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Family {
    /// Children this process started and whose handle reaps them.
    own: Mutex<HashSet<u32>>,
    /// Read: a spawn in progress; write: a sweep listing the children.
    spawning: RwLock<()>,
}

static FAMILY: LazyLock<Family> = LazyLock::new(Family::default);

/// Spawns `cmd` and registers the child as one of ours.
pub(crate) fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let _guard = FAMILY
        .spawning
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let child = cmd.spawn()?;
    FAMILY
        .own
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(child.id());
    Ok(child)
}

/// Forgets a registered child once its handle has reaped it.
pub(crate) fn forget(pid: u32) {
    FAMILY
        .own
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&pid);
}

/// Kills and reaps every adopted orphan (with its tree); returns how many.
pub(crate) fn sweep() -> usize {
    let orphans: Vec<u32> = {
        let _guard = FAMILY
            .spawning
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let own = FAMILY.own.lock().unwrap_or_else(PoisonError::into_inner);
        proc_tree::children(std::process::id())
            .into_iter()
            .filter(|pid| !own.contains(pid))
            .collect()
    };
    for &pid in &orphans {
        proc_tree::kill_tree(pid);
        if let Ok(raw) = i32::try_from(pid) {
            // Our child (adopted), killed: this waits for it alone.
            let _ = waitpid(Pid::from_raw(raw), None);
        }
    }
    orphans.len()
}

/// Makes this process a child subreaper and starts the sweeper thread.
/// Without the subreaper flag (an old kernel) orphans go to init and only
/// the process-group kill reaches them; that is logged.
pub(crate) fn adopt_orphans() -> io::Result<Sweeper> {
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => info!(
            "containment: supervisor and worker processes are child subreapers; \
             a task's processes are killed with its worker process (frozen, then SIGKILL)"
        ),
        Err(e) => warn!(
            "containment: cannot become a child subreaper ({e}); \
             processes a task detaches from its process group may outlive it"
        ),
    }
    let (stop, stopped) = bounded::<()>(1);
    let thread = thread::Builder::new()
        .name("orphans".into())
        .spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(SWEEP_EVERY)
            {
                let n = sweep();
                if n > 0 {
                    warn!("killed {n} process(es) a task left behind");
                }
            }
        })?;
    Ok(Sweeper { stop, thread })
}

/// The sweeper thread.
#[derive(Debug)]
pub(crate) struct Sweeper {
    stop: Sender<()>,
    thread: thread::JoinHandle<()>,
}

impl Sweeper {
    /// Stops the thread after a last sweep (call when every worker process
    /// is reaped).
    pub(crate) fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
        let n = sweep();
        if n > 0 {
            warn!("killed {n} process(es) tasks left behind");
        }
    }
}
