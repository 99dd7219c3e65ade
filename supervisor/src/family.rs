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
//! tree and reaps it with `waitpid` on that pid alone. Children the program
//! already had when the supervisor started (a program that embeds the
//! supervisor may have started its own servers) are left alone; a program
//! that runs the supervisor in-process must not start other children while
//! it runs, or they are taken for orphans. Registered children
//! are never waited for here (one reaper each: their handle), and nothing
//! calls `waitpid(-1)`.
//!
//! Worker processes run in a PID namespace of their own when the host
//! allows it (CAP_SYS_ADMIN): its init is the anchor (`sys::start_anchor`),
//! a child of the supervisor that dies with it (parent-death signal), and
//! when a namespace's init dies the kernel kills every process in it. So
//! even a supervisor killed with SIGKILL takes along what its tasks
//! detached. [`spawn`] starts each worker process in the namespace (the
//! spawning thread enters it for that one fork and leaves it again; the
//! supervisor's view of the pid is unchanged); the fork server stays in
//! the supervisor's namespace, so the pids its `fork` returns are ours too,
//! and only its children enter the namespace. Inside the namespace the
//! nearest child subreaper is looked for among ancestors in the same
//! namespace only: what a dead worker process leaves is re-parented to the
//! anchor, not here. The sweeper kills the anchor's children as it kills
//! its own orphans; the anchor, as the namespace's init, reaps them
//! (`waitpid(-1)` on its own children, in a process of its own, so each
//! process still has one reaper).
//!
//! The set of registered children is process-wide, as the kernel's list of
//! a process's children is: a spawn holds the read side of a lock from
//! before `fork` until its pid is registered, and a sweep holds the write
//! side while it lists the children, so a child is never seen half-started.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use redis_tasks_protocol::proc_tree;
use tracing::{error, info, warn};

use crate::sys::{self, Anchor};

/// How often adopted orphans are looked for: well inside the 100 ms a
/// task's leftovers may live, at about 1 % of a core for an idle
/// supervisor with 20 ms (measured), less with this.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Family {
    /// Children this process started and whose handle reaps them.
    own: Mutex<HashSet<u32>>,
    /// Children the program had before the supervisor started (a program
    /// that embeds it may have started, say, its own redis-server), by pid
    /// and start time: never taken for orphans.
    before: Mutex<HashSet<(u32, u64)>>,
    /// Read: a spawn in progress; write: a sweep listing the children.
    spawning: RwLock<()>,
    /// The worker processes' PID namespace, when there is one.
    anchor: Mutex<Option<Arc<Anchor>>>,
    /// Held for a whole sweep: one at a time.
    sweeping: Mutex<()>,
}

static FAMILY: LazyLock<Family> = LazyLock::new(Family::default);

fn anchor() -> Option<Arc<Anchor>> {
    FAMILY
        .anchor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Spawns `cmd` as a worker process, in the worker processes' PID
/// namespace when there is one, and registers the child as one of ours.
pub(crate) fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let anchor = anchor();
    match spawn_in(cmd, anchor.as_deref()) {
        // A namespace whose init is exiting takes no new process (ENOMEM):
        // the anchor was killed from outside. Start outside it.
        Err(e)
            if e.raw_os_error() == Some(libc::ENOMEM)
                && anchor.as_ref().is_some_and(|a| is_exiting(a.pid)) =>
        {
            warn!(
                "containment: the worker processes' PID namespace is gone ({e}); \
                 starting worker processes outside it"
            );
            let gone = FAMILY
                .anchor
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(anchor) = gone {
                // Its exit waits until every process of the namespace is
                // reaped, worker processes included, which other threads
                // do: reap it off this thread.
                let _ = thread::Builder::new()
                    .name("anchor".into())
                    .spawn(move || end(&anchor));
            }
            spawn_in(cmd, None)
        }
        other => other,
    }
}

/// Spawns the fork server, in the supervisor's own PID namespace (so that
/// the pids it reports are ours), with the worker processes' namespace (if
/// any) passed to `prepare` for its children, and registers it.
pub(crate) fn spawn_fork_server(
    cmd: &mut Command,
    prepare: impl FnOnce(&mut Command, Option<RawFd>),
) -> io::Result<Child> {
    let anchor = anchor();
    prepare(cmd, anchor.as_ref().map(|a| a.ns.as_raw_fd()));
    // `anchor` keeps the descriptor open until the child has it.
    spawn_in(cmd, None)
}

fn spawn_in(cmd: &mut Command, ns: Option<&Anchor>) -> io::Result<Child> {
    let _guard = FAMILY
        .spawning
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let child = match ns {
        None => cmd.spawn()?,
        Some(anchor) => {
            sys::enter_pid_ns(anchor.ns.as_fd())?;
            let child = cmd.spawn();
            // This thread's later children (none but worker processes
            // today) start where the supervisor is. Returning to the
            // thread's own namespace needs nothing entering the other did
            // not; a failure would leave its later children inside.
            if let Err(e) = sys::enter_pid_ns(anchor.host.as_fd()) {
                error!("cannot return to the supervisor's PID namespace: {e}");
            }
            child?
        }
    };
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

/// Kills and reaps every adopted orphan (with its tree), and kills the
/// anchor's children; returns how many. Sweeps run one at a time (a slot's
/// before its next task, the sweeper thread's), so a killed orphan is
/// waited for by one of them only, and each repeats its pass until one
/// finds nothing: an orphan that started a sibling (`clone(CLONE_PARENT)`)
/// before it was stopped is found by the next pass.
pub(crate) fn sweep() -> usize {
    sweep_among(None)
}

/// Like [`sweep`], looking only at the children of thread `tid` of the
/// supervisor (the thread that started a worker process: a process its
/// task starts with `clone(CLONE_PARENT)` becomes that thread's child) and
/// of the main thread (where the kernel re-parents orphans of a dead
/// process of that kind), and the anchor's: a few reads instead of one per
/// thread, cheap enough to run after every task.
pub(crate) fn sweep_near(tid: u32) -> usize {
    sweep_among(Some(tid))
}

fn sweep_among(tid: Option<u32>) -> usize {
    let _one = FAMILY
        .sweeping
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut killed = HashSet::new();
    for _ in 0..MAX_PASSES {
        if !sweep_once(tid, &mut killed) {
            break;
        }
    }
    SWEPT.fetch_add(killed.len() as u64, Ordering::Relaxed);
    killed.len()
}

/// The children of thread `tid` of this process and of its main thread
/// (or of every thread, without `tid`).
fn own_children(tid: Option<u32>) -> Vec<u32> {
    let me = std::process::id();
    let Some(tid) = tid else {
        return proc_tree::children(me);
    };
    let mut out = Vec::new();
    for thread in [tid, me] {
        out.extend(children_of_thread(me, thread));
        if tid == me {
            break;
        }
    }
    out
}

/// The children of this process's thread `tid`. The `children` files of
/// the main thread and of the calling thread are opened once (a slot
/// sweeps after every task) and read again from their start: both
/// threads are alive while they are read, so the open file is theirs.
/// Any other thread's is opened by path: it may have ended, and its id
/// gone to a new thread, which an open file would not follow.
fn children_of_thread(me: u32, tid: u32) -> Vec<u32> {
    thread_local! {
        static OWN: Option<std::fs::File> = open_children(std::process::id(), thread_id());
    }
    static MAIN: LazyLock<Option<std::fs::File>> =
        LazyLock::new(|| open_children(std::process::id(), std::process::id()));
    let cached = |file: Option<&std::fs::File>| file.map(proc_tree::listed_children_in);
    let listed = if tid == me {
        cached(MAIN.as_ref())
    } else if tid == thread_id() {
        OWN.with(|own| cached(own.as_ref()))
    } else {
        None
    };
    listed.unwrap_or_else(|| proc_tree::listed_children(format!("/proc/{me}/task/{tid}/children")))
}

fn open_children(me: u32, tid: u32) -> Option<std::fs::File> {
    std::fs::File::open(format!("/proc/{me}/task/{tid}/children")).ok()
}

/// The anchor's children (it is single-threaded: its main thread's list
/// is all), through its `children` file opened once per anchor.
fn anchor_children(anchor: &Arc<Anchor>) -> Vec<u32> {
    /// The anchor whose file is kept (held weakly: the anchor's end is not
    /// put off, and no later anchor can take its place in memory).
    static KEPT: Mutex<Option<(std::sync::Weak<Anchor>, std::fs::File)>> = Mutex::new(None);
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let same = kept
        .as_ref()
        .is_some_and(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(anchor)));
    if !same {
        *kept = open_children(anchor.pid, anchor.pid).map(|file| (Arc::downgrade(anchor), file));
    }
    match kept.as_ref() {
        Some((_, file)) => proc_tree::listed_children_in(file),
        None => proc_tree::listed_children(format!("/proc/{0}/task/{0}/children", anchor.pid)),
    }
}

/// The id of the calling thread (a spawning thread's children are listed
/// under it in `/proc`).
pub(crate) fn thread_id() -> u32 {
    nix::unistd::gettid().as_raw().unsigned_abs()
}

/// How many processes sweeps have killed so far (a worker process that
/// ran a task while this grew is not used again; see `worker_process`).
pub(crate) fn swept() -> u64 {
    SWEPT.load(Ordering::Relaxed)
}

/// How long a sweep waits for one killed orphan to die.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// Reaps our child `pid` once it has died, waiting up to `wait`; says
/// whether it was reaped. Says once per process when it outlives the wait.
fn reap_within(pid: Pid, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = Duration::from_micros(200);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            // Reaped, or not ours to wait for (gone already, say).
            Ok(_) | Err(_) => return true,
        }
        if std::time::Instant::now() >= deadline {
            static SAID: Mutex<Option<Pid>> = Mutex::new(None);
            let mut said = SAID.lock().unwrap_or_else(PoisonError::into_inner);
            if *said != Some(pid) {
                *said = Some(pid);
                warn!(
                    pid = pid.as_raw(),
                    "a process no worker process owns survives SIGKILL from this supervisor \
                     (not permitted? grant CAP_KILL); it is tried again at the next sweep"
                );
            }
            return false;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Passes of one sweep at most: each kills what the last one found, so
/// only a process that forks faster than it is stopped could need more.
const MAX_PASSES: usize = 64;

/// Processes killed by sweeps so far.
static SWEPT: AtomicU64 = AtomicU64::new(0);

/// One pass; adds what it killed to `killed` and says whether it found
/// anything new. (A killed child of the anchor may still be dying at the
/// next pass: it is killed again, not counted again.)
fn sweep_once(tid: Option<u32>, killed: &mut HashSet<u32>) -> bool {
    let orphans: Vec<u32> = {
        let _guard = FAMILY
            .spawning
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let own = FAMILY.own.lock().unwrap_or_else(PoisonError::into_inner);
        let before = FAMILY.before.lock().unwrap_or_else(PoisonError::into_inner);
        own_children(tid)
            .into_iter()
            .filter(|pid| !own.contains(pid) && !was_there_before(&before, *pid))
            .collect()
    };
    for &pid in &orphans {
        // A zombie (killed through a worker cgroup, say) is only reaped;
        // it still counts: it was a child no handle owned.
        if !proc_tree::is_zombie(pid) {
            proc_tree::kill_tree(pid);
        }
        if let Ok(raw) = i32::try_from(pid) {
            // Our child (adopted), killed: this waits for it alone, but not
            // for ever: a process of another user that a supervisor without
            // CAP_KILL could not signal must not wedge the sweep (or the
            // shutdown that runs a last one). It is tried again next pass.
            reap_within(Pid::from_raw(raw), REAP_WAIT);
        }
    }
    // The anchor forks nothing: each of its children is an orphan of a
    // worker process's tree. It reaps them; killed ones wait as zombies
    // until it does, and are not counted twice.
    // The anchor is single-threaded: its main thread's list is all.
    let adopted: Vec<u32> = anchor()
        .map(|a| anchor_children(&a))
        .unwrap_or_default()
        .into_iter()
        .filter(|&pid| !proc_tree::is_zombie(pid))
        .collect();
    for &pid in &adopted {
        proc_tree::kill_tree(pid);
    }
    let mut new = false;
    for pid in orphans.into_iter().chain(adopted) {
        new |= killed.insert(pid);
    }
    new
}

/// Whether the supervisor can tell that a reused worker process is alone
/// with its socket: a process a task starts stays in its worker cgroup, or
/// in the worker processes' PID namespace, where the sweep finds it.
pub(crate) fn can_prove_alone() -> bool {
    crate::cgroup::get().is_some() || anchor().is_some()
}

/// Whether `pid` is a child the program had before the supervisor started
/// (same pid and start time, so not a reused pid).
fn was_there_before(before: &HashSet<(u32, u64)>, pid: u32) -> bool {
    !before.is_empty()
        && crate::liveness::stat_of(pid)
            .is_some_and(|stat| before.contains(&(pid, stat.start_time)))
}

/// Remembers the children this process has now as the program's own.
fn remember_children_before() {
    let children: HashSet<(u32, u64)> = proc_tree::children(std::process::id())
        .into_iter()
        .filter_map(|pid| crate::liveness::stat_of(pid).map(|stat| (pid, stat.start_time)))
        .collect();
    *FAMILY.before.lock().unwrap_or_else(PoisonError::into_inner) = children;
}

/// Starts the worker processes' PID namespace unless there is one; logs
/// which containment is in use. Call on the thread that lives as long as
/// the supervisor (the anchor dies with it).
fn start_pid_namespace() {
    let mut slot = FAMILY.anchor.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.is_some() {
        return;
    }
    let started = {
        // Registered like a spawned child: the sweeper never sees it
        // unregistered.
        let _guard = FAMILY
            .spawning
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        sys::start_anchor().inspect(|a| {
            FAMILY
                .own
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(a.pid);
        })
    };
    match started {
        Ok(anchor) => {
            info!(
                anchor = anchor.pid,
                "containment: worker processes run in a PID namespace of their own; \
                 everything a task starts dies with the supervisor, even when it is killed"
            );
            *slot = Some(Arc::new(anchor));
        }
        // The shipped systemd unit runs without the capability: its cgroup
        // is the last line there, so this is no warning.
        Err(e) => info!(
            "containment: no PID namespace for worker processes ({e}; it needs \
             CAP_SYS_ADMIN); if the supervisor is killed with SIGKILL, processes a \
             task detached outlive it until its cgroup is stopped"
        ),
    }
}

/// Kills and reaps the anchor, which ends its namespace (call when every
/// worker process and the fork server are reaped).
fn stop_pid_namespace() {
    let anchor = FAMILY
        .anchor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(anchor) = anchor {
        end(&anchor);
    }
}

/// Whether our child `pid` has begun to exit or has exited: the
/// `PF_EXITING` bit of the flags in `/proc/<pid>/stat` is set at the start
/// of its exit, or the process is a zombie or gone. The init of a PID
/// namespace stays in its exit until every process of the namespace is
/// reaped, and the namespace takes no new process from its first moment.
fn is_exiting(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // After the command name: state, ppid, pgrp, session, tty, tpgid, flags.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let zombie = fields.first().is_some_and(|s| *s == "Z" || *s == "X");
    let flags = fields
        .get(6)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    zombie || flags & PF_EXITING != 0
}

/// Kills and reaps `anchor`; the caller took it out of [`Family::anchor`],
/// so no one else does.
fn end(anchor: &Anchor) {
    if let Ok(raw) = i32::try_from(anchor.pid) {
        // Our unreaped child: the pid is still its own.
        let _ = nix::sys::signal::kill(Pid::from_raw(raw), nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(raw), None);
    }
    forget(anchor.pid);
}

/// Makes this process a child subreaper, puts worker processes in a PID
/// namespace of their own when it can, and starts the sweeper thread.
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
    remember_children_before();
    start_pid_namespace();
    let (stop, stopped) = bounded::<()>(1);
    let thread = thread::Builder::new()
        .name("orphans".into())
        .spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(SWEEP_EVERY)
            {
                let n = sweep();
                if n > 0 {
                    warn!(
                        "killed {n} process(es) that no worker process owns (left running \
                         by a task whose worker process ended, or started outside its tree)"
                    );
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
            warn!("killed {n} process(es) that tasks left running, at exit");
        }
        stop_pid_namespace();
    }
}
