//! A slot's next worker process, prepared while its current task runs.
//!
//! A slot whose worker process runs one task only (`--max-tasks-per-child
//! 1`, or an isolated profile) used to fork, confine and handshake the next
//! one after each task, with no task running: that start was most of a
//! fresh task's cost. A [`Spare`] starts it on a thread of the slot's own
//! while the current task runs, so the next task finds it ready.
//!
//! The spare is a separate process that has been given no task: it holds
//! only its own socket, and it gets its `Run` only after the checks every
//! process passes before a task (alive, nothing sent on its own, alone with
//! its socket). An isolated spare is prepared only when the profile gives
//! each worker process private namespaces (the current task, of the same
//! uid, cannot see its pid, signal or trace it) and sets no
//! `process_limit` (the spare would count against the task's).
//!
//! One owner: the `Spare` holds the spare from the order to the moment the
//! slot takes it. One of another kind or of an older reload generation is
//! never handed out; it is asked to exit and reaped (killed if it does
//! not), as is whatever is prepared or being prepared when the `Spare` is
//! dropped (the slot ends: shutdown,
//! scale-down, retirement). The preparing threads are the supervisor's and
//! never end (see [`Preparers`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use redis_tasks_config::settings::Isolation;
use tracing::debug;

use super::{SpawnError, WorkerProcess};

/// What a spare is prepared for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpareKind {
    /// An unrestricted process (the fork server's, or `exec`).
    Plain,
    /// A process of this effective profile (before the slot's uid and
    /// directory are filled in: the slot is always the same).
    Isolated(Box<Isolation>),
}

/// Starts a worker process; runs on the preparing thread.
pub(crate) type Start = Box<dyn FnOnce() -> Result<WorkerProcess, SpawnError> + Send>;

/// One slot's spare worker process; see the module doc.
pub(crate) struct Spare {
    /// Where the preparation under way delivers its process.
    ready: Receiver<Result<WorkerProcess, SpawnError>>,
    done: Sender<Result<WorkerProcess, SpawnError>>,
    /// What is being prepared, under which generation, if anything.
    ordered: Option<(SpareKind, u64)>,
}

impl Spare {
    /// A `Spare` with nothing ordered.
    pub(crate) fn new() -> Spare {
        let (done, ready) = bounded(1);
        Spare {
            ready,
            done,
            ordered: None,
        }
    }

    /// Whether a spare is being prepared or waits.
    pub(crate) fn is_ordered(&self) -> bool {
        self.ordered.is_some()
    }

    /// Has a process of `kind` prepared under `generation` by `start`,
    /// unless one is ordered already.
    pub(crate) fn order(&mut self, kind: SpareKind, generation: u64, start: Start) {
        if self.ordered.is_some() {
            return;
        }
        let done = self.done.clone();
        let job: Job = Box::new(move || {
            // A send that fails (the `Spare` is gone) drops the process
            // here: killed and reaped.
            let _ = done.send(start());
        });
        if preparers().submit(job) {
            self.ordered = Some((kind, generation));
        }
    }

    /// Kills and reaps a spare prepared under a generation before
    /// `generation` (after a reload), without waiting for the next task.
    pub(crate) fn discard_before(&mut self, generation: u64) {
        if self.ordered.as_ref().is_some_and(|(_, g)| *g < generation) {
            let _ = self.take(&SpareKind::Plain, 0);
        }
    }

    /// The prepared process if it is of `kind` and `generation` and passes
    /// the checks before a task; waits for a preparation under way. Any
    /// other spare is retired; `None` then, and the caller starts
    /// a process itself.
    pub(crate) fn take(&mut self, kind: &SpareKind, generation: u64) -> Option<WorkerProcess> {
        let (ordered, made_in) = self.ordered.take()?;
        let mut process = match self.ready.recv() {
            Ok(Ok(process)) => process,
            Ok(Err(e)) => {
                debug!("the spare worker process did not start ({e}); starting one now");
                return None;
            }
            Err(_) => return None,
        };
        if ordered != *kind || made_in != generation {
            debug!(
                pid = process.pid(),
                "spare worker process of another kind or reload generation; retired"
            );
            process.retire();
            return None;
        }
        if !process.is_alive() || process.has_stray_input() || process.make_alone().is_err() {
            debug!(
                pid = process.pid(),
                "spare worker process died or spoke before its task; killed"
            );
            process.kill_and_reap();
            return None;
        }
        Some(process)
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // The preparation under way ends (a start is bounded by the
        // handshake's timeout); its process is asked to exit, as an idle
        // one is, and reaped (killed if it does not exit): killing an
        // isolated one's monitor first would orphan its namespace's init
        // and worker.
        if self.ordered.take().is_some()
            && let Ok(Ok(process)) = self.ready.recv()
        {
            process.retire();
        }
    }
}

/// A preparation, run on a preparing thread.
type Job = Box<dyn FnOnce() + Send>;

/// The supervisor's preparing threads. They never end: a process started
/// by `exec` has the thread that started it as the parent its death
/// signal follows, so a thread that ended with a slot would kill the
/// namespace monitors of processes still being retired (their namespace
/// inits then wait on children nobody reaps). There are as many as
/// preparations ever ran at once: one per slot at most.
struct Preparers {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    idle: AtomicUsize,
}

fn preparers() -> &'static Preparers {
    static PREPARERS: OnceLock<Preparers> = OnceLock::new();
    PREPARERS.get_or_init(|| {
        let (jobs, queue) = unbounded();
        Preparers {
            jobs,
            queue,
            idle: AtomicUsize::new(0),
        }
    })
}

impl Preparers {
    /// Runs `job` on an idle preparing thread, or on a new one; `false`
    /// when no thread can take it.
    fn submit(&'static self, job: Job) -> bool {
        if self.idle.load(Ordering::SeqCst) == 0 {
            self.idle.fetch_add(1, Ordering::SeqCst);
            let started = thread::Builder::new()
                .name("spare".to_owned())
                .spawn(move || {
                    loop {
                        let Ok(job) = self.queue.recv() else { return };
                        self.idle.fetch_sub(1, Ordering::SeqCst);
                        job();
                        self.idle.fetch_add(1, Ordering::SeqCst);
                    }
                });
            if started.is_err() {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                return false;
            }
        }
        self.jobs.send(job).is_ok()
    }
}
