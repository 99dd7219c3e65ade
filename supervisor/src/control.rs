//! The control loop: the one place where decisions are made.
//!
//! Signals, slot endings and timers arrive as events on one channel; the
//! loop handles each in turn. It registers and deregisters slots,
//! heartbeats them, runs maintenance on its own timer (also while every
//! slot is idle), and turns a stop request into commands to the slots.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, select, unbounded};
use jiff::Timestamp;
use redis_tasks_protocol::store::SlotInfo;
use redis_tasks_protocol::{Store, StoreError};
use redis_tasks_worker::{Middleware, MiddlewareChain, MiddlewareError, TaskRegistry};
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::config::{SupervisorConfig, hostname};
use crate::execute::SlotCommand;
use crate::recovery::recover_slot;
use crate::signals::{self, SignalRequest};
use crate::slot::Slot;
use crate::worker_process::{SpawnError, SpawnSpec, WorkerProcess};

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

/// Outcome counters since start.
#[derive(Debug, Default)]
pub struct Counters {
    /// Tasks recorded as finished.
    pub finished: AtomicU64,
    /// Tasks recorded as failed.
    pub failed: AtomicU64,
    /// Interrupted reentrant tasks put back in their queue.
    pub requeued: AtomicU64,
}

/// What every slot of one supervisor shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SupervisorConfig,
    pub registry: TaskRegistry,
    pub chain: MiddlewareChain,
    pub spawn: SpawnSpec,
    /// Stop fetching (graceful shutdown begun, or burst mode ending).
    pub stopping: AtomicBool,
    /// Immediate shutdown begun.
    pub killing: AtomicBool,
    /// Failed starts of worker processes in a row, over all slots.
    pub start_failures: AtomicU32,
    pub counters: Counters,
    /// Since when Redis has been failing, if it is.
    pub redis_down_since: Mutex<Option<Timestamp>>,
}

impl Shared {
    pub fn note_redis_error(&self, _e: &StoreError) {
        self.redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Timestamp::now);
    }

    fn note_redis_ok(&self) {
        let was = self
            .redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(since) = was {
            info!("Redis reachable again (failing since {since})");
        }
    }
}

/// Why a supervisor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The middleware set is unusable.
    #[error(transparent)]
    Middleware(#[from] MiddlewareError),
    /// Redis could not be used at start-up.
    #[error("redis: {0}")]
    Store(#[from] StoreError),
    /// The first worker process did not start: nothing would run.
    #[error("worker process failed to start: {0}")]
    WorkerStart(#[from] SpawnError),
    /// Signal handlers or threads could not be set up.
    #[error("cannot set up the supervisor: {0}")]
    Setup(#[from] std::io::Error),
    /// The supervisor stopped because of an unrecoverable condition.
    #[error("supervisor stopped: {0}")]
    Fatal(String),
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

struct SlotHandle {
    info: SlotInfo,
    commands: Sender<SlotCommand>,
    thread: Option<JoinHandle<()>>,
}

/// Runs a supervisor until it is stopped by a signal, or, in burst mode,
/// until the queues are empty. Registers signal handlers first, so call it
/// before starting other threads.
pub fn run(
    config: SupervisorConfig,
    registry: TaskRegistry,
    middleware: &[Arc<dyn Middleware>],
) -> Result<RunSummary, SupervisorError> {
    let chain = MiddlewareChain::select(middleware, &config.settings.middleware)?;
    chain.check()?;
    let (events_tx, events) = unbounded::<ControlEvent>();
    let signal_handle = signals::forward(events_tx.clone(), ControlEvent::Signal)?;

    let mut spawn = SpawnSpec::current_exe(chain.names());
    if let Some(exe) = &config.worker_exe {
        spawn.exe = exe.clone();
    }
    let store = Store::open(&config.settings.redis_url, &config.settings.redis_prefix)?;
    let shared = Arc::new(Shared {
        config,
        registry,
        chain,
        spawn,
        stopping: AtomicBool::new(false),
        killing: AtomicBool::new(false),
        start_failures: AtomicU32::new(0),
        counters: Counters::default(),
        redis_down_since: Mutex::new(None),
    });
    let supervisor_id = uuid::Uuid::new_v4().simple().to_string();
    let host = hostname();
    wait_for_redis(&store, &shared, || store.ping())?;
    recover_previous_incarnation(&store, &shared, &host, &supervisor_id)?;

    // A worker process that cannot start stops us here, before any task is
    // touched, instead of failing every task later.
    let probe = WorkerProcess::spawn(&shared.spawn)?;
    let mut slots = BTreeMap::new();
    let mut probe = Some(probe);
    for index in 0..shared.config.concurrency.max(1) {
        let handle = start_slot(
            &store,
            &shared,
            &supervisor_id,
            &host,
            index,
            probe.take(),
            &events_tx,
        )?;
        slots.insert(handle.info.id.clone(), handle);
    }
    info!(
        supervisor = %supervisor_id,
        "supervisor {} listening on {} with {} slot(s)",
        shared.config.description,
        shared.config.queues.join(", "),
        slots.len()
    );

    let heartbeat_every = shared.config.heartbeat_freq();
    let maintenance_every = shared.config.maintenance_freq();
    let mut next_heartbeat = Instant::now() + heartbeat_every;
    let mut next_maintenance = Instant::now();
    let mut fatal = None;
    let mut stop_requests = 0;
    while !slots.is_empty() {
        let due = next_heartbeat.min(next_maintenance);
        select! {
            recv(events) -> event => match event {
                Ok(ControlEvent::SlotEnded { id }) => {
                    if let Some(mut handle) = slots.remove(&id) {
                        if let Some(thread) = handle.thread.take() {
                            let _ = thread.join();
                        }
                        if let Err(e) = store.deregister_slot(&id) {
                            warn!(slot = %id, "cannot deregister slot: {e}");
                        }
                    }
                }
                Ok(ControlEvent::Signal(request)) => {
                    stop_requests += 1;
                    let now = request == SignalRequest::StopNow || stop_requests > 1;
                    stop(&shared, &slots, now);
                }
                Ok(ControlEvent::Fatal(reason)) => {
                    error!("{reason}; stopping");
                    fatal.get_or_insert(reason);
                    stop(&shared, &slots, false);
                }
                Err(_) => break,
            },
            recv(crossbeam_channel::at(due)) -> _ => {
                let now = Instant::now();
                if now >= next_heartbeat {
                    heartbeat(&store, &shared, &slots);
                    next_heartbeat = now + heartbeat_every;
                }
                if now >= next_maintenance {
                    let own: Vec<&str> = slots.keys().map(String::as_str).collect();
                    if let Err(e) = maintenance(&store, &shared, &supervisor_id, &own) {
                        shared.note_redis_error(&e);
                        warn!("maintenance pass failed: {e}");
                    }
                    next_maintenance = now + maintenance_every;
                }
            }
        }
    }
    signal_handle.close();
    let counters = &shared.counters;
    let summary = RunSummary {
        finished: counters.finished.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        requeued: counters.requeued.load(Ordering::Relaxed),
    };
    info!(
        "supervisor stopped: {} finished, {} failed, {} requeued",
        summary.finished, summary.failed, summary.requeued
    );
    match fatal {
        Some(reason) => Err(SupervisorError::Fatal(reason)),
        None => Ok(summary),
    }
}

fn stop(shared: &Shared, slots: &BTreeMap<String, SlotHandle>, now: bool) {
    let command = if now {
        warn!("immediate shutdown: killing running tasks");
        shared.killing.store(true, Ordering::SeqCst);
        SlotCommand::Kill
    } else {
        info!("graceful shutdown: no new tasks; interrupting running ones");
        SlotCommand::Shutdown
    };
    shared.stopping.store(true, Ordering::SeqCst);
    for handle in slots.values() {
        let _ = handle.commands.send(command);
    }
}

fn start_slot(
    store: &Store,
    shared: &Arc<Shared>,
    supervisor_id: &str,
    host: &str,
    index: usize,
    process: Option<WorkerProcess>,
    events: &Sender<ControlEvent>,
) -> Result<SlotHandle, SupervisorError> {
    let info = SlotInfo {
        id: format!("{supervisor_id}-{index}"),
        description: shared.config.description.clone(),
        queues: shared.config.queues.clone(),
        supervisor: supervisor_id.to_owned(),
        host: host.to_owned(),
        pid: std::process::id(),
        started_at: Timestamp::now(),
    };
    wait_for_redis(store, shared, || store.register_slot(&info))?;
    let (commands, receiver) = unbounded();
    let slot = Slot {
        id: info.id.clone(),
        shared: Arc::clone(shared),
        store: store.independent()?,
        commands: receiver,
        events: events.clone(),
        process,
    };
    let thread = std::thread::Builder::new()
        .name(format!("slot-{index}"))
        .spawn(move || slot.run())?;
    Ok(SlotHandle {
        info,
        commands,
        thread: Some(thread),
    })
}

/// Retries `op` while Redis is unreachable (see [`Backoff`]); other errors
/// are returned.
fn wait_for_redis<T>(
    _store: &Store,
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

fn heartbeat(store: &Store, shared: &Shared, slots: &BTreeMap<String, SlotHandle>) {
    let ids: Vec<String> = slots.keys().cloned().collect();
    match store.heartbeat(&ids, Timestamp::now()) {
        Ok(vanished) => {
            shared.note_redis_ok();
            for id in vanished {
                if let Some(handle) = slots.get(&id) {
                    warn!(slot = %id, "slot missing from Redis (data lost?); registering it again");
                    if let Err(e) = store.register_slot(&handle.info) {
                        warn!(slot = %id, "cannot register slot again: {e}");
                    }
                }
            }
        }
        Err(e) => {
            shared.note_redis_error(&e);
            warn!("heartbeat failed: {e}");
        }
    }
}

/// One maintenance pass, if no other supervisor holds the lock: recover
/// dead slots and expire old registry entries.
fn maintenance(
    store: &Store,
    shared: &Shared,
    supervisor_id: &str,
    own: &[&str],
) -> Result<(), StoreError> {
    let settings = &shared.config.settings;
    let lock_ttl = Duration::from_secs(settings.maintenance_freq.max(30));
    if !store.try_lock("maintenance", supervisor_id, lock_ttl)? {
        return Ok(());
    }
    let now = Timestamp::now();
    let dead = store.dead_slots(now, shared.config.heartbeat_timeout())?;
    for slot in dead.iter().filter(|s| !own.contains(&s.as_str())) {
        let done = recover_slot(store, shared, slot)?;
        warn!(
            slot = %slot,
            "dead slot recovered: {} task(s) requeued, {} given an outcome",
            done.requeued, done.settled
        );
    }
    let ttl = Duration::from_secs(settings.expiring_registries_ttl);
    store.expire_registries(now, ttl)?;
    store.release_lock("maintenance", supervisor_id)?;
    Ok(())
}

/// A supervisor restarted on the same host under the same instance name
/// recovers the slots of its previous incarnation at once, unless that
/// process is still alive (two supervisors sharing an instance name).
fn recover_previous_incarnation(
    store: &Store,
    shared: &Shared,
    host: &str,
    supervisor_id: &str,
) -> Result<(), StoreError> {
    let instance = &shared.config.instance;
    if let Some(previous) = store.supervisor_id(host, instance)? {
        let slots = store.slots_of_supervisor(&previous)?;
        let infos = store.worker_infos()?;
        for slot in slots {
            let pid = infos.iter().find(|w| w.id == slot).and_then(|w| w.pid);
            let ours = std::process::id();
            if pid.is_some_and(|pid| pid != ours && process_exists(pid)) {
                warn!(
                    slot = %slot,
                    "instance {instance:?} on {host} seems to run already (pid {pid:?}); not recovering its tasks",
                );
                continue;
            }
            let done = recover_slot(store, shared, &slot)?;
            info!(
                slot = %slot,
                "recovered the previous incarnation's slot: {} task(s) requeued, {} given an outcome",
                done.requeued, done.settled
            );
        }
    }
    store.set_supervisor_id(host, instance, supervisor_id)?;
    Ok(())
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
