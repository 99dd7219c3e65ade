//! The control loop: the one place where decisions are made.
//!
//! Signals, slot endings and timers arrive as events; the loop handles each
//! in turn (`handle_*` methods), then reconciles the slot count with the
//! wanted count. It registers and deregisters slots, heartbeats them, runs
//! maintenance on its own timer (also while every slot is idle), talks to
//! systemd, and turns a stop request into commands to the slots.

mod reload;
mod slots;
mod status;
mod upkeep;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select, unbounded};
use redis_tasks_store::{Store, StoreError};
use redis_tasks_worker::{Middleware, MiddlewareChain, MiddlewareError, TaskRegistry};
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::config::{SupervisorConfig, hostname};
use crate::execute::SlotCommand;
use crate::fork_server::ForkServer;
use crate::notify::Notifier;
use crate::shared::{Current, Shared};
use crate::signals::{self, SignalRequest};
use crate::worker_process::{Retirer, SpawnError, SpawnSpec, WorkerProcess};

use slots::SlotSet;

/// Events the control loop reacts to.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    /// A signal asked for something.
    Signal(SignalRequest),
    /// A slot's thread ended (its list is empty; it may be deregistered).
    SlotEnded { id: String },
    /// Something makes going on pointless; stop with an error.
    Fatal(String),
}

/// Why a supervisor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The middleware set is unusable.
    #[error(transparent)]
    Middleware(#[from] MiddlewareError),
    /// Redis could not be used at start-up.
    #[error("redis: {0}")]
    Store(StoreError),
    /// The first worker process did not start: nothing would run.
    #[error("worker process failed to start: {0}")]
    WorkerStart(SpawnError),
    /// Signal handlers or threads could not be set up.
    #[error("cannot set up the supervisor: {0}")]
    Setup(std::io::Error),
    /// The supervisor stopped because of an unrecoverable condition.
    #[error("supervisor stopped: {0}")]
    Fatal(String),
}

impl From<StoreError> for SupervisorError {
    fn from(e: StoreError) -> Self {
        SupervisorError::Store(e)
    }
}

impl From<SpawnError> for SupervisorError {
    fn from(e: SpawnError) -> Self {
        SupervisorError::WorkerStart(e)
    }
}

impl From<std::io::Error> for SupervisorError {
    fn from(e: std::io::Error) -> Self {
        SupervisorError::Setup(e)
    }
}

/// Totals of one supervisor run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Tasks recorded as finished.
    pub finished: u64,
    /// Tasks recorded as failed.
    pub failed: u64,
    /// Interrupted reentrant tasks requeued.
    pub requeued: u64,
}

/// Environment switch for the watchdog test: the control loop stops
/// serving two seconds after READY, as a hung loop would.
const TEST_HANG_VAR: &str = "REDIS_TASKS_TEST_HANG_CONTROL_LOOP";

/// Margin added to the drain timeout when asking systemd for more time.
const STOP_MARGIN: Duration = Duration::from_secs(30);

/// Builds the middleware chain of `config` and runs its start-up checks.
fn build_chain(
    middleware: &[Arc<dyn Middleware>],
    config: &SupervisorConfig,
) -> Result<MiddlewareChain, MiddlewareError> {
    let chain = MiddlewareChain::select(middleware, &config.settings.middleware)?;
    chain.check(&config.settings)?;
    Ok(chain)
}

fn spawn_spec(config: &SupervisorConfig, chain: &MiddlewareChain) -> SpawnSpec {
    let mut spawn = SpawnSpec::current_exe(chain.names());
    if let Some(exe) = &config.worker_exe {
        spawn.exe = exe.clone();
    }
    // A fresh process per task: fork them from a fork server rather than
    // exec the binary each time. A wrapper given as --worker-exe must see
    // every start, so it keeps exec.
    if config.max_tasks_per_child <= 1 && config.worker_exe.is_none() {
        match ForkServer::start(&spawn.exe, &spawn.env) {
            Ok(server) => spawn.fork_server = Some(server),
            Err(e) => warn!("cannot start the fork server ({e}); worker processes start by exec"),
        }
    }
    spawn
}

/// Runs a supervisor until it is stopped by a signal, or, in burst mode,
/// until the queues are empty. Registers signal handlers first, so call it
/// before starting other threads.
pub fn run(
    config: SupervisorConfig,
    registry: TaskRegistry,
    middleware: &[Arc<dyn Middleware>],
) -> Result<RunSummary, SupervisorError> {
    let chain = build_chain(middleware, &config)?;
    let (events_tx, events) = unbounded::<ControlEvent>();
    let signal_handle = signals::forward(events_tx.clone(), ControlEvent::Signal)?;
    let store = Store::open(&config.settings.redis_url, &config.settings.redis_prefix)?;
    let spawn = spawn_spec(&config, &chain);
    let desired = config.concurrency.max(1);
    let retirer = Retirer::start()?;
    let shared = Arc::new(Shared::new(
        Current {
            config,
            chain,
            spawn,
            generation: 0,
        },
        registry,
        retirer.handle(),
    ));
    let supervisor_id = uuid::Uuid::new_v4().simple().to_string();
    let host = hostname();
    wait_for_redis(&shared, || store.ping())?;
    upkeep::recover_previous_incarnation(&store, &shared, &host, &supervisor_id)?;

    // A worker process that cannot start stops us here, before any task is
    // touched, instead of failing every task later.
    let probe = WorkerProcess::spawn(&shared.current().spawn, 0)?;
    // Every isolation profile is tried once; one that cannot be applied is
    // logged now (its tasks fail with the same reason, never unconfined).
    {
        let current = shared.current();
        let config = &current.config;
        crate::isolation::probe(
            &config.settings,
            &config.queues,
            &shared.registry,
            &current.spawn,
        );
    }
    let mut slots = SlotSet::new(&supervisor_id, &host, desired, events_tx);
    let mut probe = Some(probe);
    for _ in 0..desired {
        wait_for_redis(&shared, || slots.start_one(&store, &shared, probe.take()))?;
    }
    let mut control = Control {
        store,
        shared,
        slots,
        notifier: Notifier::from_env(),
        supervisor_id,
        started: Instant::now(),
        stop_requests: 0,
        drain_until: None,
        fatal: None,
        middleware: middleware.to_vec(),
    };
    control.serve(&events);
    signal_handle.close();
    // Every slot has ended: retire what they handed over.
    let shared = Arc::clone(&control.shared);
    let fatal = control.fatal.take();
    drop(control);
    let counters = &shared.counters;
    let summary = RunSummary {
        finished: counters.finished.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        requeued: counters.requeued.load(Ordering::Relaxed),
    };
    retirer.finish();
    info!(
        "supervisor stopped: {} finished, {} failed, {} requeued",
        summary.finished, summary.failed, summary.requeued
    );
    match fatal {
        Some(reason) => Err(SupervisorError::Fatal(reason)),
        None => Ok(summary),
    }
}

/// The control loop's state.
struct Control {
    store: Store,
    shared: Arc<Shared>,
    slots: SlotSet,
    notifier: Notifier,
    supervisor_id: String,
    started: Instant,
    stop_requests: u32,
    /// While draining: when running tasks get interrupted.
    drain_until: Option<Instant>,
    fatal: Option<String>,
    middleware: Vec<Arc<dyn Middleware>>,
}

impl Control {
    fn serve(&mut self, events: &Receiver<ControlEvent>) {
        let current = self.shared.current();
        info!(
            supervisor = %self.supervisor_id,
            "supervisor {} listening on {} with {} slot(s)",
            current.config.description,
            current.config.queues.join(", "),
            self.slots.slots.len()
        );
        self.notifier.ready();
        self.update_status();
        let hang_at =
            std::env::var_os(TEST_HANG_VAR).map(|_| Instant::now() + Duration::from_secs(2));
        let mut next_heartbeat = Instant::now() + current.config.heartbeat_freq();
        let mut next_maintenance = Instant::now();
        let watchdog_every = self.notifier.watchdog_interval();
        let mut next_watchdog = Instant::now();
        while !self.slots.slots.is_empty() {
            if hang_at.is_some_and(|at| Instant::now() >= at) {
                warn!("{TEST_HANG_VAR} is set: the control loop stops serving now");
                loop {
                    std::thread::park();
                }
            }
            let mut due = next_heartbeat.min(next_maintenance);
            if watchdog_every.is_some() {
                due = due.min(next_watchdog);
            }
            if let Some(at) = self.drain_until {
                due = due.min(at);
            }
            if let Some(at) = hang_at {
                due = due.min(at);
            }
            select! {
                recv(events) -> event => match event {
                    Ok(ControlEvent::SlotEnded { id }) => self.handle_slot_ended(&id),
                    Ok(ControlEvent::Signal(request)) => self.handle_signal(request),
                    Ok(ControlEvent::Fatal(reason)) => {
                        error!("{reason}; stopping");
                        self.fatal.get_or_insert(reason);
                        self.stop(false);
                    }
                    Err(_) => break,
                },
                recv(crossbeam_channel::at(due)) -> _ => {}
            }
            let now = Instant::now();
            // First, so that slow Redis calls below cannot delay it.
            if let Some(every) = watchdog_every {
                if now >= next_watchdog {
                    self.notifier.watchdog();
                    next_watchdog = now + every;
                }
            }
            if self.drain_until.is_some_and(|at| now >= at) {
                self.drain_until = None;
                info!("drain period over: interrupting running tasks");
                self.slots.broadcast(SlotCommand::Shutdown);
            }
            if now >= next_heartbeat {
                upkeep::heartbeat(&self.store, &self.shared, &self.slots);
                next_heartbeat = now + self.shared.current().config.heartbeat_freq();
            }
            if now >= next_maintenance {
                if let Err(e) = upkeep::maintenance(
                    &self.store,
                    &self.shared,
                    &self.supervisor_id,
                    &self.slots.ids(),
                ) {
                    self.shared.note_redis_error(&e);
                    warn!("maintenance pass failed: {e}");
                }
                next_maintenance = now + self.shared.current().config.maintenance_freq();
            }
            if !self.shared.stopping.load(Ordering::SeqCst) && !self.burst() {
                self.slots.reconcile(&self.store, &self.shared);
            }
            self.update_status();
        }
    }

    fn burst(&self) -> bool {
        self.shared.current().config.burst
    }

    fn mode(&self) -> Option<&'static str> {
        if self.shared.killing.load(Ordering::SeqCst) {
            Some("stopping now")
        } else if self.drain_until.is_some() {
            Some("draining")
        } else if self.shared.stopping.load(Ordering::SeqCst) {
            Some("stopping")
        } else if self.shared.quiet.load(Ordering::SeqCst) {
            Some("quiet")
        } else {
            None
        }
    }

    fn update_status(&self) {
        let summary = status::summary(&self.shared, &self.slots, self.mode());
        self.notifier.status(&summary.to_string());
    }

    fn handle_slot_ended(&mut self, id: &str) {
        self.slots.ended(&self.store, id);
    }

    fn handle_signal(&mut self, request: SignalRequest) {
        match request {
            SignalRequest::Stop => {
                self.stop_requests += 1;
                self.stop(self.stop_requests > 1);
            }
            SignalRequest::StopNow => self.stop(true),
            SignalRequest::AddSlot => {
                self.slots.desired += 1;
                info!("SIGTTIN: {} slot(s) wanted", self.slots.desired);
            }
            SignalRequest::RemoveSlot => {
                if self.slots.desired > 1 {
                    self.slots.desired -= 1;
                    info!("SIGTTOU: {} slot(s) wanted", self.slots.desired);
                } else {
                    warn!(
                        "SIGTTOU ignored: a supervisor keeps at least one slot (SIGTSTP pauses fetching)"
                    );
                }
            }
            SignalRequest::Reload => self.handle_reload(),
            SignalRequest::Quiet => {
                self.shared.quiet.store(true, Ordering::SeqCst);
                info!("SIGTSTP: quiet; running tasks go on, no new ones are fetched until SIGCONT");
            }
            SignalRequest::Resume => {
                if self.shared.quiet.swap(false, Ordering::SeqCst) {
                    info!("SIGCONT: fetching again");
                }
            }
            SignalRequest::Dump => {
                let text = status::dump(
                    &self.shared,
                    &self.slots,
                    &self.supervisor_id,
                    self.started,
                    self.mode(),
                );
                info!("status (SIGUSR1):\n{text}");
            }
        }
    }

    /// Begins a graceful shutdown (with the drain period), or an immediate
    /// one.
    fn stop(&mut self, now: bool) {
        let first = !self.shared.stopping.swap(true, Ordering::SeqCst);
        if first {
            self.notifier.stopping();
        }
        if now {
            warn!("immediate shutdown: killing running tasks");
            self.shared.killing.store(true, Ordering::SeqCst);
            self.drain_until = None;
            self.slots.broadcast(SlotCommand::Kill);
            return;
        }
        if !first {
            return;
        }
        let drain = self.shared.current().config.drain_timeout;
        if drain.is_zero() {
            info!("graceful shutdown: no new tasks; interrupting running ones");
            self.slots.broadcast(SlotCommand::Shutdown);
        } else {
            info!("graceful shutdown: no new tasks; running ones get {drain:?} to finish");
            self.notifier.extend_timeout(drain + STOP_MARGIN);
            self.drain_until = Some(Instant::now() + drain);
            // Idle slots stop at once; busy ones after their task or the drain.
            self.slots.broadcast(SlotCommand::Wake);
        }
    }
}

/// Retries `op` while Redis is unreachable (see [`Backoff`]); other errors
/// are returned.
fn wait_for_redis<T>(
    shared: &Shared,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut backoff = Backoff::new();
    loop {
        match op() {
            Ok(value) => {
                shared.note_redis_ok();
                return Ok(value);
            }
            Err(e) if e.is_connection_error() && !shared.stopping.load(Ordering::SeqCst) => {
                shared.note_redis_error(&e);
                let wait = backoff.next_wait();
                warn!("Redis unavailable ({e}); retrying in {wait:?}");
                std::thread::sleep(wait);
            }
            Err(e) => return Err(e),
        }
    }
}
