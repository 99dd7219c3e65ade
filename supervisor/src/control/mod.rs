//! The control loop: the one place where decisions are made.
//!
//! It runs in two phases on the caller's thread. The start-up phase
//! ([`startup`]) answers signals while a thread of its own reaches Redis and
//! starts the first worker process. The serving phase takes signals, slot
//! endings and timers as events, handles each in turn (`handle_*` methods),
//! then reconciles the slot count with the wanted count. It registers and
//! deregisters slots, heartbeats them, runs maintenance on its own timer
//! (also while every slot is idle), owns the scheduler thread of
//! `worker --scheduler`, talks to systemd, and turns a stop request into
//! commands to the slots.

mod owned;
mod reload;
mod slots;
mod startup;
mod status;
mod timers;
mod upkeep;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select, unbounded};
use redis_tasks_store::{Store, StoreError, SupervisorCommand, SupervisorState};
use redis_tasks_worker::{Middleware, MiddlewareChain, MiddlewareError, TaskRegistry};
use tracing::{debug, error, info, warn};

use crate::config::{SupervisorConfig, hostname};
use crate::execute::SlotCommand;
use crate::family;
use crate::fork_server::ForkServer;
use crate::notify::Notifier;
use crate::promoter::Promoter;
use crate::scheduler::{self, SchedulerConfig, SchedulerHandle};
use crate::shared::{Mode, Shared};
use crate::signals::SignalRequest;
use crate::worker_process::{Retirer, SpawnError, SpawnSpec};

use owned::Owned;
use slots::SlotSet;
use startup::{Deferred, StartupEnd};
use timers::Timers;

/// Events from the slots to the control loop.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    /// A slot's thread ended (its list is empty; it may be deregistered).
    SlotEnded { id: String },
    /// Something makes going on pointless; stop with an error.
    Fatal(String),
    /// The promoter found a cancel request for a task that one of our
    /// slots runs.
    Cancel { slot: String, task: String },
    /// The promoter took an operator's command for this supervisor from
    /// Redis (or the text of one it cannot read).
    Command(Result<SupervisorCommand, String>),
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
    /// The scheduler of `worker --scheduler` could not start.
    #[error("scheduler: {0}")]
    Scheduler(scheduler::SchedulerError),
    /// The `/metrics` address could not be bound.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsBindError),
    /// The worker processes of an isolation profile could not be killed
    /// by this supervisor (it lacks CAP_KILL and worker cgroups).
    #[error("{0}")]
    CannotKill(String),
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

impl From<scheduler::SchedulerError> for SupervisorError {
    fn from(e: scheduler::SchedulerError) -> Self {
        SupervisorError::Scheduler(e)
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
    /// Running tasks canceled on request.
    pub canceled: u64,
}

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

/// How worker processes of `config` are started, without a fork server.
fn spawn_spec(
    config: &SupervisorConfig,
    chain: &MiddlewareChain,
    registry: &TaskRegistry,
) -> SpawnSpec {
    let mut spawn = SpawnSpec::current_exe(chain.names());
    spawn.setup_hook = registry.setup().is_some();
    if let Some(exe) = &config.worker_exe {
        spawn.exe = exe.clone();
    }
    spawn
}

/// Gives every task a fresh worker process when the supervisor cannot
/// tell that a reused one is alone with its socket (no worker cgroups and
/// no PID namespace for worker processes; see `worker_process::alone`),
/// and says so once.
pub(super) fn contain_reuse(mut config: SupervisorConfig) -> SupervisorConfig {
    if config.max_tasks_per_child > 1 && !family::can_prove_alone() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            warn!(
                "containment: no worker cgroups and no PID namespace for worker processes, so \
                 nothing shows that a reused worker process is alone with its socket; queues {}: \
                 every task gets a fresh worker process (max_tasks_per_child {} not applied)",
                config.queues.join(", "),
                config.max_tasks_per_child
            );
        });
        config.max_tasks_per_child = 1;
    }
    config
}

/// Adds a fork server to `spawn` when `config` gives every task a fresh
/// process: forking them from a fork server is cheaper than executing the
/// binary each time. A wrapper given as --worker-exe must see every start,
/// so it keeps exec. Call it on the control loop's thread: the fork server
/// (like every worker process) dies when the thread that started it ends
/// (the parent-death signal follows the thread, not the process).
fn with_fork_server(mut spawn: SpawnSpec, config: &SupervisorConfig) -> SpawnSpec {
    if config.max_tasks_per_child <= 1 && config.worker_exe.is_none() {
        match ForkServer::start(&spawn.exe, &spawn.env) {
            Ok(server) => spawn.fork_server = Some(server),
            Err(e) => warn!("cannot start the fork server ({e}); worker processes start by exec"),
        }
    }
    spawn
}

/// Seeds the queue and task function limits of the settings file into Redis (where Redis has
/// none: run-time changes win, docs/flow-control.md). A failure costs the
/// seeding, not the start.
fn seed_flow_limits(store: &Store, settings: &redis_tasks_config::Settings) {
    for (queue, q) in &settings.queues {
        if q.concurrency_limit.is_none() && q.rate_limit.is_none() {
            continue;
        }
        match store.seed_queue_limits(queue, q.concurrency_limit, q.rate_limit) {
            Ok(()) => {
                info!(queue = %queue, "queue limits of the settings file seeded into Redis where unset")
            }
            Err(e) => {
                warn!(queue = %queue, "cannot seed the queue limits of the settings file: {e}")
            }
        }
    }
    for (task, t) in &settings.tasks {
        match store.seed_task_limits(task, t.concurrency_limit, t.rate_limit) {
            Ok(()) => {
                info!(name = %task, "task function limits of the settings file seeded into Redis where unset")
            }
            Err(e) => {
                warn!(name = %task, "cannot seed the task function limits of the settings file: {e}")
            }
        }
    }
}

/// Runs a supervisor until it is stopped by a signal, or, in burst mode,
/// until the queues are empty. `signals` carries the signal requests (see
/// [`crate::signals::listen`], which `main` calls before any thread
/// starts); a test may pass a channel of its own.
pub fn run(
    config: SupervisorConfig,
    registry: TaskRegistry,
    middleware: &[Arc<dyn Middleware>],
    signals: &Receiver<SignalRequest>,
) -> Result<RunSummary, SupervisorError> {
    crate::sys::forbid_inspection()?;
    // Stops everything below on every way out of this function.
    let mut owned = Owned::default();
    owned.sweeper = Some(family::adopt_orphans()?);
    crate::cgroup::init(config.settings.worker_cgroups);
    owned.cgroups = true;
    let config = contain_reuse(config);
    let retire = owned.retirer.insert(Retirer::start()?).handle();
    let notifier = Notifier::from_env();
    let supervisor_id = uuid::Uuid::new_v4().simple().to_string();
    let host = hostname();
    let mut deferred = Deferred {
        desired: config.concurrency.max(1),
        ..Deferred::default()
    };
    let with_scheduler = config.scheduler;
    // Bound now: a taken address stops the supervisor before it takes work.
    let metrics_server = config
        .metrics_addr
        .map(crate::metrics::MetricsServer::bind)
        .transpose()?;
    let plan = startup::Plan {
        config,
        registry,
        middleware: middleware.to_vec(),
        retire,
        host: host.clone(),
        supervisor_id: supervisor_id.clone(),
    };
    let started = match startup::run(plan, signals, &notifier, &mut deferred)? {
        StartupEnd::Started(started) => *started,
        StartupEnd::Stopped => {
            drop(owned);
            info!("supervisor stopped before it started serving");
            return Ok(RunSummary::default());
        }
    };
    let startup::Started { store, shared } = started;
    owned.shared = Some(Arc::clone(&shared));
    // The address is bound (a taken one stopped us above); a thread that
    // cannot start costs the metrics, never the tasks.
    if let Some(server) = metrics_server {
        match server.start(Arc::clone(&shared), store.independent()?) {
            Ok(thread) => owned.metrics = Some(thread),
            Err(e) => tracing::error!(
                "cannot start the metrics server's thread ({e}); serving tasks without /metrics"
            ),
        }
    }
    let probe = startup::finish(&shared)?;
    seed_flow_limits(&store, &shared.current().config.settings);
    shared.metrics.process_started(true);
    let (events_tx, events) = unbounded::<ControlEvent>();
    owned.promoter = Some(Promoter::start(
        store.independent()?,
        &supervisor_id,
        events_tx.clone(),
    )?);
    let slots = SlotSet::new(&supervisor_id, &host, deferred.desired, events_tx);
    if deferred.quiet {
        shared.set_quiet(true);
    }
    let scheduler = if with_scheduler {
        let config = SchedulerConfig::new(shared.current().config.settings.clone());
        Some(scheduler::spawn(config)?)
    } else {
        None
    };
    let now = Instant::now();
    let mut control = Control {
        timers: Timers::new(
            now,
            shared.current().config.heartbeat_freq(),
            notifier.watchdog_interval(),
        ),
        store,
        shared,
        slots,
        notifier,
        supervisor_id,
        started: now,
        started_at: jiff::Timestamp::now(),
        stop_requests: 0,
        fatal: None,
        middleware: middleware.to_vec(),
        scheduler,
    };
    control.start_slots(probe);
    if deferred.reload {
        control.handle_reload();
    }
    control.serve(&events, signals);
    // Every slot has ended.
    if let Err(e) = control.store.forget_supervisor(&control.supervisor_id) {
        debug!("cannot remove this supervisor's report from Redis ({e}); it expires by itself");
    }
    let fatal = control.fatal.take();
    owned.scheduler = control.scheduler.take();
    let counters = Arc::clone(&control.shared);
    drop(control);
    let summary = RunSummary {
        finished: counters.counters.finished.load(Ordering::Relaxed),
        failed: counters.counters.failed.load(Ordering::Relaxed),
        requeued: counters.counters.requeued.load(Ordering::Relaxed),
        canceled: counters.counters.canceled.load(Ordering::Relaxed),
    };
    // Failed endings still on their way to Sentry go before the exit.
    counters.reports.flush();
    drop(counters);
    drop(owned);
    info!(
        "supervisor stopped: {} finished, {} failed, {} requeued, {} canceled",
        summary.finished, summary.failed, summary.requeued, summary.canceled
    );
    match fatal {
        Some(reason) => Err(SupervisorError::Fatal(reason)),
        None => Ok(summary),
    }
}

/// The control loop's state while serving.
struct Control {
    store: Store,
    shared: Arc<Shared>,
    slots: SlotSet,
    notifier: Notifier,
    supervisor_id: String,
    started: Instant,
    /// The same instant as a time, for the report in Redis.
    started_at: jiff::Timestamp,
    stop_requests: u32,
    timers: Timers,
    fatal: Option<String>,
    middleware: Vec<Arc<dyn Middleware>>,
    /// The scheduler thread of `worker --scheduler`.
    scheduler: Option<SchedulerHandle>,
}

impl Control {
    /// Starts the first slots, the first one with the worker process
    /// start-up made. A slot that cannot be registered now (Redis gone
    /// again) is started by a later reconcile.
    fn start_slots(&mut self, probe: crate::worker_process::WorkerProcess) {
        if let Err(e) = self.slots.start_one(&self.store, &self.shared, Some(probe)) {
            warn!("cannot start a slot: {e}");
        }
        self.slots.reconcile(&self.store, &self.shared);
    }

    fn serve(&mut self, events: &Receiver<ControlEvent>, signals: &Receiver<SignalRequest>) {
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
        self.report();
        // A closed signal channel (nobody can signal us any more) must not
        // wake the loop without end.
        let mut signals = signals.clone();
        loop {
            let mode = self.shared.mode();
            if self.slots.slots.is_empty() && (mode.stopping() || self.burst()) {
                break;
            }
            select! {
                recv(events) -> event => match event {
                    Ok(ControlEvent::SlotEnded { id }) => self.handle_slot_ended(&id),
                    Ok(ControlEvent::Cancel { slot, task }) => self.handle_cancel(&slot, task),
                    Ok(ControlEvent::Command(command)) => self.handle_command(command),
                    Ok(ControlEvent::Fatal(reason)) => {
                        error!("{reason}; stopping");
                        self.fatal.get_or_insert(reason);
                        self.stop(false);
                    }
                    Err(_) => break,
                },
                recv(signals) -> request => match request {
                    Ok(request) => self.handle_signal(request),
                    Err(_) => signals = crossbeam_channel::never(),
                },
                recv(crossbeam_channel::at(self.timers.next())) -> _ => {}
            }
            let current = self.shared.current();
            let due = self.timers.take_due(
                Instant::now(),
                current.config.heartbeat_freq(),
                current.config.maintenance_freq(),
            );
            // First, so that slow Redis calls below cannot delay it.
            if due.watchdog {
                self.notifier.watchdog();
            }
            if due.drain_over {
                info!("drain period over: interrupting running tasks");
                self.slots.broadcast(SlotCommand::Shutdown);
            }
            if due.heartbeat {
                upkeep::heartbeat(&self.store, &self.shared, &self.slots);
                self.report();
            }
            if due.maintenance
                && let Err(e) = upkeep::maintenance(
                    &self.store,
                    &self.shared,
                    &self.supervisor_id,
                    &self.slots.ids(),
                )
            {
                self.shared.note_redis_error(&e);
                warn!("maintenance pass failed: {e}");
            }
            if !self.shared.mode().stopping() && !self.burst() {
                self.slots.reconcile(&self.store, &self.shared);
            }
            self.update_status();
        }
    }

    fn burst(&self) -> bool {
        self.shared.current().config.burst
    }

    fn mode(&self) -> Option<&'static str> {
        match self.shared.mode() {
            Mode::StoppingNow => Some("stopping now"),
            Mode::Stopping if self.timers.draining() => Some("draining"),
            Mode::Stopping => Some("stopping"),
            Mode::Quiet => Some("quiet"),
            Mode::Serving => None,
        }
    }

    fn update_status(&self) {
        let summary = status::summary(&self.shared, &self.slots, self.mode());
        self.notifier.status(&summary.to_string());
    }

    /// Writes this supervisor's report to Redis (what `redis-tasks
    /// supervisor list` and the dashboard show); it expires after the
    /// heartbeat timeout unless written again.
    fn report(&self) {
        let current = self.shared.current();
        let views: Vec<_> = self.slots.slots.values().map(|h| h.view()).collect();
        let busy = views.iter().filter(|v| v.task.is_some()).count();
        let workers_rss = views
            .iter()
            .filter_map(|v| v.pid)
            .filter_map(status::resident_bytes_of)
            .sum::<u64>();
        let version = match &current.config.version {
            Some(app) => format!("{app} (redis-tasks {})", env!("CARGO_PKG_VERSION")),
            None => format!("redis-tasks {}", env!("CARGO_PKG_VERSION")),
        };
        let state = SupervisorState {
            id: self.supervisor_id.clone(),
            description: current.config.description.clone(),
            host: crate::config::hostname(),
            pid: std::process::id(),
            version,
            started_at: self.started_at,
            reported_at: jiff::Timestamp::now(),
            mode: self.mode().unwrap_or("serving").to_owned(),
            queues: current.config.queues.clone(),
            wanted_slots: self.slots.desired as u64,
            slots: self.slots.slots.len() as u64,
            busy: busy as u64,
            rss_bytes: status::resident_bytes_of(std::process::id()),
            workers_rss_bytes: Some(workers_rss),
        };
        let ttl = current.config.heartbeat_timeout();
        if let Err(e) = self.store.report_supervisor(&state, ttl) {
            debug!("cannot report this supervisor to Redis: {e}");
        }
    }

    /// An operator's command that came through Redis: acted on exactly as
    /// the matching signal, except that `stop` never turns a graceful
    /// shutdown into an immediate one.
    fn handle_command(&mut self, command: Result<SupervisorCommand, String>) {
        let command = match command {
            Ok(command) => command,
            Err(e) => {
                warn!("ignoring a command from Redis: {e}");
                return;
            }
        };
        match command {
            SupervisorCommand::Quiet => {
                info!("command from Redis: quiet (as SIGTSTP)");
                self.handle_signal(SignalRequest::Quiet);
            }
            SupervisorCommand::Stop => {
                if self.shared.mode().stopping() {
                    info!("command from Redis: stop; already stopping");
                } else {
                    info!("command from Redis: stop (as SIGTERM)");
                    self.handle_signal(SignalRequest::Stop);
                }
            }
            SupervisorCommand::Scale(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX).max(1);
                let before = self.slots.desired;
                self.slots.desired = n;
                info!(
                    "command from Redis: scale to {n} slot(s) (as SIGTTIN/SIGTTOU; {before} wanted before)"
                );
            }
        }
        if !self.shared.mode().stopping() && !self.burst() {
            self.slots.reconcile(&self.store, &self.shared);
        }
        self.report();
    }

    /// Passes a cancel request to the slot running the task.
    fn handle_cancel(&mut self, slot: &str, task: String) {
        if let Some(handle) = self.slots.slots.get(slot) {
            info!(slot, task = %task, "cancel requested for a running task");
            let _ = handle.commands.send(SlotCommand::Cancel(task));
        }
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
                if self.shared.set_quiet(true) {
                    info!(
                        "SIGTSTP: quiet; running tasks go on, no new ones are fetched until SIGCONT"
                    );
                }
            }
            SignalRequest::Resume => {
                if self.shared.set_quiet(false) {
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
        let before = self.shared.begin_stop(now);
        let first = !before.stopping();
        if first {
            self.notifier.stopping();
            if let Some(scheduler) = &self.scheduler {
                scheduler.request_stop();
            }
        }
        if now {
            if before != Mode::StoppingNow {
                warn!("immediate shutdown: killing running tasks");
            }
            self.timers.cancel_drain();
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
            self.timers.drain_until(Instant::now() + drain);
            // Idle slots stop at once; busy ones after their task or the drain.
            self.slots.broadcast(SlotCommand::Wake);
        }
    }
}
