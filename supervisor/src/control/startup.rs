//! The start-up phase of the control loop.
//!
//! Everything at start-up that may wait on Redis (the middleware checks,
//! reaching Redis, checking the prefix's schema, recovering the previous
//! incarnation's tasks) runs on a thread of its own, while the loop
//! answers signals from the first instant:
//!
//! - SIGTERM, SIGINT and SIGQUIT stop the supervisor at once, even while
//!   Redis does not answer; nothing has been fetched yet, so nothing is
//!   lost (a recovery cut short is done again by the next start).
//! - SIGTTIN and SIGTTOU change the number of slots to start with.
//! - SIGTSTP and SIGCONT set whether the slots fetch once started.
//! - SIGHUP is applied once start-up is over.
//! - SIGUSR1 logs what start-up is waiting for.
//!
//! Then [`finish`], on the loop's own thread, starts the fork server and
//! the first worker process and probes the isolation profiles: a process
//! started by a thread dies when that thread ends (the parent-death signal
//! follows the thread), so no long-lived process is started by the
//! start-up thread.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, select, unbounded};
use redis_tasks_store::{Store, StoreError};
use redis_tasks_worker::{Middleware, TaskRegistry};
use tracing::{info, warn};

use super::{SupervisorError, build_chain, spawn_spec, upkeep, with_fork_server};
use crate::backoff::Backoff;
use crate::config::SupervisorConfig;
use crate::notify::Notifier;
use crate::shared::{Current, Shared};
use crate::signals::SignalRequest;
use crate::worker_process::{RetireHandle, WorkerProcess};

/// What start-up hands to the serving loop.
#[derive(Debug)]
pub(super) struct Started {
    pub store: Store,
    pub shared: Arc<Shared>,
}

/// How the start-up phase ended.
#[derive(Debug)]
pub(super) enum StartupEnd {
    /// Ready to serve.
    Started(Box<Started>),
    /// A signal asked to stop first.
    Stopped,
}

/// Signals that came during start-up and take effect after it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Deferred {
    /// Slots wanted (SIGTTIN/SIGTTOU during start-up).
    pub desired: usize,
    /// SIGTSTP without a SIGCONT after it.
    pub quiet: bool,
    /// SIGHUP.
    pub reload: bool,
}

/// What the start-up thread is given.
pub(super) struct Plan {
    pub config: SupervisorConfig,
    pub registry: TaskRegistry,
    pub middleware: Vec<Arc<dyn Middleware>>,
    pub retire: RetireHandle,
    pub host: String,
    pub supervisor_id: String,
}

enum Progress {
    /// Start-up waits; the text says for what.
    Waiting(String),
    Done(Box<Result<Started, SupervisorError>>),
}

/// Runs the start-up phase: starts the start-up thread, and answers
/// `signals` until it is done. `deferred.desired` is the slot count asked
/// for, changed by SIGTTIN/SIGTTOU meanwhile.
pub(super) fn run(
    plan: Plan,
    signals: &Receiver<SignalRequest>,
    notifier: &Notifier,
    deferred: &mut Deferred,
) -> Result<StartupEnd, SupervisorError> {
    let (progress_tx, progress) = unbounded();
    // Dropping `_cancel` (when this function returns) tells the start-up
    // thread to give up at its next wait.
    let (_cancel, cancel) = bounded::<()>(0);
    std::thread::Builder::new()
        .name("start-up".into())
        .spawn(move || {
            let result = start(plan, &progress_tx, &cancel);
            let _ = progress_tx.send(Progress::Done(Box::new(result)));
        })?;
    notifier.status("starting");
    let mut signals = signals.clone();
    let mut waiting_for = "the middleware checks".to_owned();
    loop {
        select! {
            recv(progress) -> msg => match msg {
                Ok(Progress::Waiting(text)) => {
                    notifier.status(&format!("starting: {text}"));
                    waiting_for = text;
                }
                Ok(Progress::Done(result)) => {
                    return (*result).map(|started| StartupEnd::Started(Box::new(started)));
                }
                Err(_) => {
                    return Err(SupervisorError::Fatal("the start-up thread ended without a word".into()));
                }
            },
            recv(signals) -> request => match request {
                Ok(SignalRequest::Stop | SignalRequest::StopNow) => {
                    info!("stop requested during start-up (waiting for {waiting_for}); stopping");
                    notifier.stopping();
                    return Ok(StartupEnd::Stopped);
                }
                Ok(SignalRequest::AddSlot) => {
                    deferred.desired += 1;
                    info!("SIGTTIN: {} slot(s) wanted", deferred.desired);
                }
                Ok(SignalRequest::RemoveSlot) => {
                    if deferred.desired > 1 {
                        deferred.desired -= 1;
                        info!("SIGTTOU: {} slot(s) wanted", deferred.desired);
                    } else {
                        warn!("SIGTTOU ignored: a supervisor keeps at least one slot");
                    }
                }
                Ok(SignalRequest::Quiet) => deferred.quiet = true,
                Ok(SignalRequest::Resume) => deferred.quiet = false,
                Ok(SignalRequest::Reload) => {
                    info!("SIGHUP during start-up: the settings are read again once start-up is over");
                    deferred.reload = true;
                }
                Ok(SignalRequest::Dump) => info!("status (SIGUSR1): starting, waiting for {waiting_for}"),
                // Nobody can signal us any more; start-up goes on.
                Err(_) => signals = crossbeam_channel::never(),
            },
        }
    }
}

/// The start-up steps, on the start-up thread.
fn start(
    plan: Plan,
    progress: &Sender<Progress>,
    cancel: &Receiver<()>,
) -> Result<Started, SupervisorError> {
    let Plan {
        config,
        registry,
        middleware,
        retire,
        host,
        supervisor_id,
    } = plan;
    let chain = build_chain(&middleware, &config)?;
    let store = Store::from_settings(&config.settings)?;
    let spawn = spawn_spec(&config, &chain, &registry);
    let shared = Arc::new(Shared::new(
        Current {
            config,
            chain,
            spawn,
            generation: 0,
        },
        registry,
        retire,
    ));
    let _ = progress.send(Progress::Waiting("Redis".into()));
    wait_for_redis(&shared, progress, cancel, || store.ping())?;
    let _ = progress.send(Progress::Waiting(
        "recovery of the previous incarnation".into(),
    ));
    wait_for_redis(&shared, progress, cancel, || {
        upkeep::recover_previous_incarnation(&store, &shared, &host, &supervisor_id)
    })?;
    Ok(Started { store, shared })
}

/// The rest of start-up, on the control loop's thread: the fork server,
/// the first worker process (which becomes the first slot's), and a probe
/// of every isolation profile.
pub(super) fn finish(shared: &Shared) -> Result<WorkerProcess, SupervisorError> {
    let current = shared.current();
    let spawn = with_fork_server(current.spawn.clone(), &current.config);
    shared.replace(Current {
        config: current.config.clone(),
        chain: current.chain.clone(),
        spawn,
        generation: current.generation,
    });
    let current = shared.current();
    // A worker process that cannot start stops us here, before any task is
    // touched, instead of failing every task later.
    let probe = WorkerProcess::spawn(&current.spawn, current.generation)?;
    // Every isolation profile is tried once; one that cannot be applied is
    // logged now (its tasks fail with the same reason, never unconfined).
    crate::isolation::probe(
        &current.config.settings,
        &current.config.queues,
        &shared.registry,
        &current.spawn,
    );
    // A profile whose worker processes the supervisor could not kill would
    // let a task outlive its timeout: refuse to start instead.
    if let Some(why) = crate::worker_process::unkillable() {
        return Err(SupervisorError::CannotKill(why.to_owned()));
    }
    Ok(probe)
}

/// Retries `op` while Redis is unreachable (see [`Backoff`]); other errors
/// are returned. Gives up when `cancel` closes.
fn wait_for_redis<T>(
    shared: &Shared,
    progress: &Sender<Progress>,
    cancel: &Receiver<()>,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, SupervisorError> {
    let mut backoff = Backoff::new();
    loop {
        match op() {
            Ok(value) => {
                shared.note_redis_ok();
                return Ok(value);
            }
            Err(e) if e.is_connection_error() => {
                shared.note_redis_error(&e);
                let wait = backoff.next_wait();
                warn!("Redis unavailable ({e}); retrying in {wait:?}");
                let _ = progress.send(Progress::Waiting(format!("Redis unavailable ({e})")));
                if !sleep(cancel, wait) {
                    return Err(SupervisorError::Fatal("start-up cancelled".into()));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits `wait`; false when cancelled.
fn sleep(cancel: &Receiver<()>, wait: Duration) -> bool {
    matches!(cancel.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
}
