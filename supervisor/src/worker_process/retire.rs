//! Retiring worker processes off the slots' path.
//!
//! A slot hands over a process it is done with and goes on fetching while
//! the retirer thread asks the process to exit and reaps it. The handle
//! moves with the process, so each process still has exactly one owner and
//! one reaper.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, unbounded};
use redis_tasks_protocol::ExitReason;
use redis_tasks_protocol::ipc::ToWorker;

use super::WorkerProcess;

/// How long a retiring process gets to exit by itself before its group is
/// killed.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// The retiring thread.
#[derive(Debug)]
pub(crate) struct Retirer {
    tx: Sender<Option<WorkerProcess>>,
    thread: thread::JoinHandle<()>,
}

/// What slots hold to hand processes over to a [`Retirer`].
#[derive(Debug, Clone)]
pub(crate) struct RetireHandle(Sender<Option<WorkerProcess>>);

impl RetireHandle {
    /// Hands `process` over (or retires it here if the retirer is gone).
    pub(crate) fn retire(&self, process: WorkerProcess) {
        if let Err(unsent) = self.0.send(Some(process))
            && let Some(process) = unsent.0
        {
            process.retire();
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

/// What woke the retirer.
enum Event {
    HandedOver(Box<WorkerProcess>),
    /// The end mark, or every handle is gone.
    End,
    /// The process at this index exited (or its exit channel closed).
    Exited(usize, ExitReason),
    /// The nearest deadline passed.
    Deadline,
}

/// Waits for a hand-over (while `open`), an exit of a retiring process or
/// the nearest deadline.
fn next_event(rx: &Receiver<Option<WorkerProcess>>, open: bool, retiring: &[Retiring]) -> Event {
    let mut select = Select::new();
    let handed = open.then(|| select.recv(rx));
    let first = usize::from(open);
    for r in retiring {
        select.recv(&r.exit);
    }
    let op = match retiring.iter().map(|r| r.deadline).min() {
        Some(at) => match select.select_deadline(at) {
            Ok(op) => op,
            Err(_) => return Event::Deadline,
        },
        None => select.select(),
    };
    match op.index() {
        i if Some(i) == handed => match op.recv(rx) {
            Ok(Some(process)) => Event::HandedOver(Box::new(process)),
            Ok(None) | Err(_) => Event::End,
        },
        // A closed channel: no report will come; end it now.
        i => Event::Exited(
            i - first,
            op.recv(&retiring[i - first].exit)
                .unwrap_or(ExitReason::Code(-1)),
        ),
    }
}

/// A process being retired.
struct Retiring {
    process: WorkerProcess,
    /// Its exit report.
    exit: Receiver<ExitReason>,
    /// When its group is killed if it has not exited.
    deadline: Instant,
}

/// Retires many processes at once: each is asked to exit when handed over
/// and reaped as soon as its exit is reported, so retirement keeps up
/// however many processes a second the slots hand over (one per task with
/// `--max-tasks-per-child 1`). The thread sleeps until a hand-over, an
/// exit or the nearest deadline. `None` marks the end: what was handed over
/// before it is still retired.
fn retire_loop(rx: &Receiver<Option<WorkerProcess>>) {
    let mut retiring: Vec<Retiring> = Vec::new();
    let mut open = true;
    while open || !retiring.is_empty() {
        match next_event(rx, open, &retiring) {
            Event::HandedOver(mut process) => {
                let _ = process.send(&ToWorker::Exit);
                retiring.push(Retiring {
                    exit: process.exits(),
                    process: *process,
                    deadline: Instant::now() + RETIRE_GRACE,
                });
            }
            Event::End => open = false,
            Event::Exited(i, reason) => {
                let r = &mut retiring[i];
                r.process.note_exit(reason);
                r.deadline = Instant::now();
            }
            Event::Deadline => {}
        }
        let now = Instant::now();
        retiring.retain_mut(|r| {
            if now >= r.deadline || r.process.has_exited() {
                // Kills what is left of the group and reaps.
                r.process.kill_and_reap();
                false
            } else {
                true
            }
        });
    }
}
