//! The handshake of a new worker process: `Hello`, then `Setup` from us,
//! then (as the spec and plan ask) `Confined`, `SetUp`, and `Ready`.
//!
//! Each stage waits for one frame with [`WorkerProcess::expect`]: the
//! frame it wants is accepted or refused by the stage; anything else (an
//! other message, a malformed frame, the end of the stream, no frame in
//! time) fails the start the same way at every stage, the process killed
//! and reaped and the failure worded with the stage's name.

use std::time::{Duration, Instant};

use redis_tasks_protocol::ipc::{FromWorker, PROTOCOL_VERSION, ToWorker};

use super::{Proc, SETUP_TIMEOUT, SpawnError, SpawnSpec, WorkerEvent, WorkerProcess};
use crate::isolation::Plan;

/// How long a process that ends the handshake on its own gets to exit.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// One stage of the handshake, for [`WorkerProcess::expect`].
struct Stage {
    /// What is awaited ("its hello").
    awaited: &'static str,
    /// When the stream ends: "before its handshake".
    ended: &'static str,
    /// How long it may take.
    within: Duration,
}

/// What a stage makes of a frame.
enum Answer<T> {
    /// The frame the stage waited for.
    Done(T),
    /// The process refused to go on and exits by itself (reaped after
    /// [`EXIT_GRACE`]).
    Refused(SpawnError),
    /// A wrong frame: the process is killed; the text says why.
    Wrong(String),
    /// Another message than the awaited one.
    Other(FromWorker),
}

impl WorkerProcess {
    pub(super) fn handshake(
        &mut self,
        spec: &SpawnSpec,
        plan: Option<&Plan>,
    ) -> Result<(), SpawnError> {
        let within = spec.handshake_timeout;
        let hello = Stage {
            awaited: "its hello",
            ended: "before its handshake",
            within,
        };
        self.expect(&hello, |msg| match msg {
            FromWorker::Hello { version, .. } if version == PROTOCOL_VERSION => Answer::Done(()),
            FromWorker::Hello { version, .. } => Answer::Wrong(format!(
                "speaks protocol {version}, this supervisor {PROTOCOL_VERSION}"
            )),
            other => Answer::Other(other),
        })?;
        let confine = plan.and_then(|p| p.confine.clone());
        let confining = confine.is_some();
        let setup = ToWorker::Setup {
            middleware: spec.middleware.clone(),
            confine,
        };
        if let Err(e) = self.send(&setup) {
            let reason = self.kill_and_reap();
            return Err(SpawnError::Handshake(format!(
                "cannot send setup: {e} ({reason})"
            )));
        }
        if confining {
            let confined = Stage {
                awaited: "confirming its confinement",
                ended: "while confining itself",
                within,
            };
            self.expect(&confined, |msg| match msg {
                FromWorker::Confined { refused: None } => Answer::Done(()),
                FromWorker::Confined {
                    refused: Some(refusal),
                } => Answer::Refused(SpawnError::NotIsolated(refusal.into())),
                other => Answer::Other(other),
            })?;
        }
        if spec.setup_hook {
            let hook = Stage {
                awaited: "the result of its setup hook",
                ended: "while running its setup hook",
                within: SETUP_TIMEOUT,
            };
            self.expect(&hook, |msg| match msg {
                FromWorker::SetUp { error: None } => Answer::Done(()),
                FromWorker::SetUp { error: Some(error) } => {
                    Answer::Refused(SpawnError::SetupFailed(error))
                }
                other => Answer::Other(other),
            })?;
        }
        let ready = Stage {
            awaited: "Ready",
            ended: "during set-up",
            within,
        };
        self.expect(&ready, |msg| match msg {
            FromWorker::Ready => Answer::Done(()),
            other => Answer::Other(other),
        })?;
        if matches!(self.proc, Proc::Forked { .. }) {
            // Runs one task: its threads and children are not checked.
            return Ok(());
        }
        // No task code has run in it yet: its thread count now is the
        // count of an idle worker process. One listing of its /proc entry
        // gives that and its own children; none at all means the entry is
        // hidden from us.
        self.proc_entry = redis_tasks_protocol::proc_tree::ProcEntry::open(self.pid());
        let (children, from_proc) = match &mut self.proc_entry {
            Some(entry) => entry.children_and_threads(),
            None => (Vec::new(), None),
        };
        self.proc_hidden = from_proc.is_none();
        self.idle_threads = self.threads_or_cgroup(from_proc);
        if self.idle_threads.is_none() {
            warn_threads_hidden(self.pid());
        }
        self.own_children = children;
        Ok(())
    }

    /// Waits for the frame of `stage` and lets `accept` judge it.
    fn expect<T>(
        &mut self,
        stage: &Stage,
        accept: impl FnOnce(FromWorker) -> Answer<T>,
    ) -> Result<T, SpawnError> {
        let awaited = stage.awaited;
        let until = Instant::now().checked_add(stage.within);
        let wrong = match self.next_event_until(until) {
            Some(WorkerEvent::Message(msg)) => match accept(msg) {
                Answer::Done(value) => return Ok(value),
                Answer::Refused(error) => {
                    self.reap_within(EXIT_GRACE);
                    return Err(error);
                }
                Answer::Wrong(what) => what,
                Answer::Other(other) => format!("sent {other:?} instead of {awaited}"),
            },
            Some(WorkerEvent::Violation(detail)) => {
                format!("sent a malformed frame instead of {awaited}: {detail}")
            }
            Some(WorkerEvent::Closed) => {
                let reason = self.reap_within(EXIT_GRACE);
                return Err(SpawnError::Handshake(format!("{reason} {}", stage.ended)));
            }
            None => {
                format!("sent no {awaited} within {:?}", stage.within)
            }
        };
        let reason = self.kill_and_reap();
        Err(SpawnError::Handshake(format!("{wrong} ({reason})")))
    }
}

/// Says once per supervisor that worker processes' thread counts cannot be
/// read, so a thread a task leaves behind is not noticed.
fn warn_threads_hidden(pid: u32) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            pid,
            "cannot read /proc/<pid>/task of worker processes (ProtectProc=invisible with a \
             non-root supervisor hides them): a thread a task leaves running is not detected, \
             and such a process is used again; see docs/security.md"
        );
    });
}
