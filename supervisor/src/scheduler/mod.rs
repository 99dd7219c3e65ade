//! The scheduler: enqueues the `[schedule.ID]` entries of the settings when
//! they are due, with one active scheduler per Redis prefix.
//!
//! # How it works
//!
//! - **One per fleet.** It runs only while it holds the lock
//!   `P:lock:scheduler` (SET NX PX with a random owner token), which it
//!   extends every `worker_heartbeat_freq` and which expires after
//!   `worker_heartbeat_timeout`. Another scheduler waits (and says so in the
//!   log) and takes over within that timeout when the holder dies. The lock
//!   is released on a graceful exit.
//! - **Exactly once.** Each entry's last handled run lives in Redis; a run
//!   is enqueued by one script that checks the lock token and that the run
//!   is later than the last one, so neither a restart nor a takeover
//!   enqueues a run twice.
//! - **Catch-up and singleton.** See [`plan`]: runs older than
//!   `scheduler_max_catchup` are skipped; a singleton entry runs at most
//!   once to catch up, and skips a run while its previous task is still
//!   queued or running (checked in the same script).
//! - **No polling.** Between steps it sleeps until the next due run or the
//!   next lock refresh, whichever comes first, or until it is told to stop.
//!   The active scheduler sleeps in `BLPOP` on `P:schedule_wake` (in
//!   slices of [`WAKE_SLICE`], so that a stop request is seen in time),
//!   which pausing, resuming or "run now" pokes.
//! - **Run-time control.** Each step reads every entry's control fields
//!   ([`Store::schedule_control`]): a paused entry's due runs are skipped
//!   in the fenced enqueue script itself, and each "run now" request is
//!   taken and enqueued by one fenced script, so exactly once.
//!
//! [`spawn`] starts it on a thread of its own (the `scheduler` command and
//! the control loop of `worker --scheduler` both use it); its owner stops
//! it through the [`SchedulerHandle`] when SIGTERM, SIGINT or SIGQUIT come.

pub mod plan;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use redis_tasks_config::Settings;
use redis_tasks_config::schedule::ScheduleEntry;
use redis_tasks_store::{RunResult, SCHEDULER_LOCK, ScheduledRun};
use redis_tasks_store::{Store, StoreError};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;

/// The longest single `BLPOP` on the wake list while the scheduler holds the
/// lock: a stop request waits at most this long (plus one Redis reply).
pub const WAKE_SLICE: Duration = Duration::from_millis(250);

/// What a scheduler is asked to do.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Redis, time zone, `scheduler_max_catchup` and the entries.
    pub settings: Settings,
    /// How long the lock lives without being extended: a dead scheduler is
    /// replaced within this time (`worker_heartbeat_timeout`).
    pub lock_ttl: Duration,
    /// How often the lock is extended, or tried while another holds it
    /// (`worker_heartbeat_freq`, at most a third of `lock_ttl`).
    pub refresh: Duration,
}

impl SchedulerConfig {
    /// A configuration with the lock timings taken from `settings`.
    pub fn new(settings: Settings) -> Self {
        let lock_ttl = Duration::from_secs(settings.worker_heartbeat_timeout.max(1));
        let refresh = Duration::from_secs(settings.worker_heartbeat_freq.max(1)).min(lock_ttl / 3);
        SchedulerConfig {
            settings,
            lock_ttl,
            refresh,
        }
    }
}

/// Why a scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The Redis settings are unusable.
    #[error("redis: {0}")]
    Store(StoreError),
    /// The thread could not be started.
    #[error("cannot start the scheduler: {0}")]
    Setup(std::io::Error),
}

impl From<StoreError> for SchedulerError {
    fn from(e: StoreError) -> Self {
        SchedulerError::Store(e)
    }
}

impl From<std::io::Error> for SchedulerError {
    fn from(e: std::io::Error) -> Self {
        SchedulerError::Setup(e)
    }
}

/// Totals of one scheduler run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerSummary {
    /// Runs enqueued.
    pub enqueued: u64,
    /// Runs skipped because a singleton entry's previous task was still
    /// queued or running.
    pub busy: u64,
}

/// A scheduler running on its own thread.
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: Sender<()>,
    done: Receiver<Result<SchedulerSummary, StoreError>>,
}

impl SchedulerHandle {
    /// Asks the scheduler to stop (it releases the lock); does not wait.
    pub fn request_stop(&self) {
        let _ = self.stop.try_send(());
    }

    /// Asks the scheduler to stop and waits for it, at most `wait`: a
    /// scheduler stuck in a Redis call that does not answer is left behind
    /// (its lock expires by itself). `None` when it did not stop in time
    /// (or had stopped on an error already).
    pub fn stop_within(self, wait: Duration) -> Option<SchedulerSummary> {
        self.request_stop();
        match self.done.recv_timeout(wait) {
            Ok(result) => result.ok(),
            Err(_) => {
                warn!(
                    "the scheduler did not stop within {wait:?} (Redis does not answer?); leaving it"
                );
                None
            }
        }
    }

    /// The channel the scheduler's totals arrive on after
    /// [`SchedulerHandle::request_stop`], or an error when it had to stop
    /// (the prefix holds data of another format).
    pub fn done(&self) -> &Receiver<Result<SchedulerSummary, StoreError>> {
        &self.done
    }
}

/// Makes this process non-dumpable, as a supervisor is: the scheduler
/// process holds the Redis credentials too.
pub fn forbid_inspection() -> std::io::Result<()> {
    crate::sys::forbid_inspection()
}

/// Starts a scheduler on a thread of its own. It installs no signal
/// handlers: whoever owns the signals (the `scheduler` command, or the
/// supervisor's control loop for `worker --scheduler`) stops it through the
/// handle.
pub fn spawn(config: SchedulerConfig) -> Result<SchedulerHandle, SchedulerError> {
    let store = Store::from_settings(&config.settings)?;
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let (done_tx, done) = bounded(1);
    std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            let summary = Scheduler::new(config, store).run(&stop_rx);
            let _ = done_tx.send(summary);
        })?;
    Ok(SchedulerHandle {
        stop: stop_tx,
        done,
    })
}

/// The scheduler's state.
struct Scheduler {
    config: SchedulerConfig,
    store: Store,
    tz: TimeZone,
    token: String,
    /// Whether we hold the lock (as of the last attempt).
    holding: bool,
    /// Last handled run per entry, read from Redis when the lock is taken.
    last: BTreeMap<String, Timestamp>,
    /// Whether each entry was paused at the last look (to log changes).
    paused: BTreeMap<String, bool>,
    summary: SchedulerSummary,
}

/// What a wait ended with.
enum Wake {
    Timer,
    Poked,
    Stop,
}

impl Scheduler {
    fn new(config: SchedulerConfig, store: Store) -> Self {
        let tz = config.settings.timezone();
        Scheduler {
            config,
            store,
            tz,
            token: uuid::Uuid::new_v4().simple().to_string(),
            holding: false,
            last: BTreeMap::new(),
            paused: BTreeMap::new(),
            summary: SchedulerSummary::default(),
        }
    }

    fn run(mut self, stop: &Receiver<()>) -> Result<SchedulerSummary, StoreError> {
        let entries = &self.config.settings.schedule;
        info!(
            "scheduler started: {} entr{} in time zone {}, catch-up limit {} s",
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" },
            self.config.settings.timezone,
            self.config.settings.scheduler_max_catchup
        );
        let mut backoff = Backoff::new();
        let mut waiting_logged = false;
        let mut schema_checked = false;
        loop {
            let step = if schema_checked {
                self.step(&mut waiting_logged)
            } else {
                // Here rather than before the thread starts: a Redis that
                // does not answer must not hold up its owner.
                self.store.check_schema().map(|()| {
                    schema_checked = true;
                    Duration::ZERO
                })
            };
            let wait = match step {
                Ok(wait) => {
                    backoff.reset();
                    wait
                }
                Err(e @ StoreError::ForeignSchema { .. }) => {
                    error!("scheduler: {e}");
                    return Err(e);
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    warn!("scheduler: redis failed ({e}); retrying in {wait:?}");
                    wait
                }
            };
            match self.sleep(stop, wait) {
                Wake::Stop => break,
                Wake::Poked => debug!("scheduler: woken by a pause, resume or run-now request"),
                Wake::Timer => {}
            }
        }
        self.release();
        info!(
            "scheduler stopped: {} run(s) enqueued, {} skipped while the previous task was still queued or running",
            self.summary.enqueued, self.summary.busy
        );
        Ok(self.summary)
    }

    /// Takes or extends the lock and, while holding it, enqueues what is
    /// due; returns how long to sleep.
    fn step(&mut self, waiting_logged: &mut bool) -> Result<Duration, StoreError> {
        let got = self
            .store
            .try_lock(SCHEDULER_LOCK, &self.token, self.config.lock_ttl)?;
        if !got {
            if self.holding {
                warn!("scheduler: another scheduler took the lock; waiting");
            } else if !*waiting_logged {
                info!(
                    "scheduler: another scheduler holds the lock {}:lock:{SCHEDULER_LOCK}; waiting to take over if it stops",
                    self.store.prefix()
                );
            } else {
                debug!("scheduler: lock still held by another scheduler");
            }
            *waiting_logged = true;
            self.holding = false;
            return Ok(self.config.refresh);
        }
        if !self.holding {
            info!("scheduler: lock taken; this is the active scheduler");
            self.holding = true;
            *waiting_logged = false;
            self.last.clear();
            let ids: Vec<String> = self.config.settings.schedule.keys().cloned().collect();
            if !self.store.register_schedule_entries(&self.token, &ids)? {
                self.lost_lock();
                return Ok(self.config.refresh);
            }
        }
        let lock_expires = Instant::now() + self.config.lock_ttl;
        let now = Timestamp::now();
        let ids: Vec<String> = self.config.settings.schedule.keys().cloned().collect();
        let mut next: Option<Timestamp> = None;
        for id in ids {
            if Instant::now() >= lock_expires {
                // Taking so long the lock may be gone: refresh first.
                return Ok(Duration::ZERO);
            }
            if !self.obey_controls(&id)? {
                return Ok(self.config.refresh);
            }
            match self.handle_entry(&id, now)? {
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None if !self.holding => return Ok(self.config.refresh),
                None => {}
            }
        }
        let until_next = next
            .map(|at| {
                let d = at.duration_since(Timestamp::now());
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::MAX);
        if let Some(at) = next {
            debug!("scheduler: next run at {at}");
        }
        Ok(until_next.min(self.config.refresh))
    }

    /// Reads what operators asked of entry `id` (pause, resume, run now),
    /// logs pause changes and enqueues the requested runs; `false` when the
    /// lock turned out to be lost.
    fn obey_controls(&mut self, id: &str) -> Result<bool, StoreError> {
        let control = self.store.schedule_control(id)?;
        match self.paused.insert(id.to_owned(), control.paused) {
            Some(was) if was == control.paused => {}
            Some(_) | None if control.paused => info!(
                entry = id,
                "scheduler: entry {id} is paused: its runs are skipped until it is resumed"
            ),
            Some(_) => {
                info!(entry = id, "scheduler: entry {id} resumed");
                // Resuming moved its last run up to now in Redis.
                self.last.remove(id);
            }
            None => {}
        }
        if control.run_requests == 0 {
            return Ok(true);
        }
        let Some(entry) = self.config.settings.schedule.get(id).cloned() else {
            return Ok(true);
        };
        loop {
            let run = ScheduledRun {
                entry: id,
                at: Timestamp::now(),
                task: &entry.task,
                args: &entry.args,
                queue: &entry.queue,
                singleton: entry.singleton,
            };
            match self.store.enqueue_requested_run(&self.token, &run) {
                Ok(RunResult::Enqueued(task_id)) => {
                    self.summary.enqueued += 1;
                    info!(
                        entry = id,
                        task_id = %task_id,
                        "scheduler: enqueued {} on {} for a run of entry {id} asked for now (task {task_id})",
                        entry.task,
                        entry.queue
                    );
                }
                Ok(RunResult::LockLost) => {
                    self.lost_lock();
                    return Ok(false);
                }
                Ok(_) => return Ok(true),
                Err(e) if e.is_connection_error() => return Err(e),
                Err(e) => {
                    error!(
                        entry = id,
                        "scheduler: cannot enqueue the run of entry {id} asked for now: {e}"
                    );
                    return Ok(true);
                }
            }
        }
    }

    /// Enqueues the due runs of entry `id`; returns its next run.
    fn handle_entry(&mut self, id: &str, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        let Some(entry) = self.config.settings.schedule.get(id).cloned() else {
            return Ok(None);
        };
        let last = match self.last.get(id) {
            Some(last) => *last,
            None => match self.store.schedule_init(id, &self.token, now)? {
                Some(last) => {
                    self.last.insert(id.to_owned(), last);
                    last
                }
                None => {
                    self.lost_lock();
                    return Ok(None);
                }
            },
        };
        let due = plan::due_runs(
            &entry.schedule,
            &self.tz,
            last,
            now,
            self.config.settings.scheduler_catchup(),
            entry.singleton,
        );
        if due.skipped {
            info!(
                entry = id,
                "scheduler: entry {id} missed runs since {last}; catching up {} of them (scheduler_max_catchup {} s, singleton {})",
                due.runs.len(),
                self.config.settings.scheduler_max_catchup,
                entry.singleton
            );
        }
        for at in due.runs {
            if !self.enqueue(id, &entry, at)? {
                return Ok(None);
            }
            self.last.insert(id.to_owned(), at);
        }
        let last = self.last.get(id).copied().unwrap_or(last);
        Ok(plan::next_run(&entry.schedule, &self.tz, last, now))
    }

    /// Enqueues one run; `false` when the lock turned out to be lost.
    fn enqueue(
        &mut self,
        id: &str,
        entry: &ScheduleEntry,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let run = ScheduledRun {
            entry: id,
            at,
            task: &entry.task,
            args: &entry.args,
            queue: &entry.queue,
            singleton: entry.singleton,
        };
        match self.store.enqueue_scheduled(&self.token, &run) {
            Ok(RunResult::Enqueued(task_id)) => {
                self.summary.enqueued += 1;
                info!(
                    entry = id,
                    task_id = %task_id,
                    "scheduler: enqueued {} on {} for the run at {at} (task {task_id})",
                    entry.task,
                    entry.queue
                );
            }
            Ok(RunResult::AlreadyDone) => {
                debug!(entry = id, "scheduler: run at {at} was enqueued before");
            }
            Ok(RunResult::Busy { previous, status }) => {
                self.summary.busy += 1;
                info!(
                    entry = id,
                    "scheduler: skipped the run at {at} of singleton entry {id}: its previous task {previous} is still {status}"
                );
            }
            Ok(RunResult::Paused) => {
                info!(
                    entry = id,
                    "scheduler: skipped the run at {at} of entry {id}: it is paused"
                );
            }
            Ok(RunResult::LockLost) => {
                self.lost_lock();
                return Ok(false);
            }
            Err(e) if e.is_connection_error() => return Err(e),
            Err(e) => {
                // Bad data for this entry (a key of the wrong type, arguments
                // over the size limit): say so and skip the run, so that the
                // other entries still run.
                error!(
                    entry = id,
                    "scheduler: cannot enqueue the run at {at} of entry {id}: {e}"
                );
            }
        }
        Ok(true)
    }

    fn lost_lock(&mut self) {
        warn!("scheduler: lost the lock (expired or taken over); waiting");
        self.holding = false;
        self.last.clear();
    }

    fn release(&mut self) {
        if !self.holding {
            return;
        }
        match self.store.release_lock(SCHEDULER_LOCK, &self.token) {
            Ok(true) => info!("scheduler: lock released"),
            Ok(false) => debug!("scheduler: the lock was no longer ours"),
            Err(e) => warn!("scheduler: cannot release the lock ({e}); it expires by itself"),
        }
        self.holding = false;
    }

    /// Sleeps for `wait`, or until a stop request; the active scheduler
    /// also wakes when its wake list is poked.
    fn sleep(&self, stop: &Receiver<()>, wait: Duration) -> Wake {
        if !self.holding {
            return sleep(stop, wait);
        }
        let deadline = Instant::now().checked_add(wait);
        loop {
            match stop.try_recv() {
                Ok(()) | Err(crossbeam_channel::TryRecvError::Disconnected) => return Wake::Stop,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            let left = deadline.map_or(WAKE_SLICE, |at| {
                at.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Wake::Timer;
            }
            let slice = left.min(WAKE_SLICE);
            match self.store.wait_for_schedule_wake(slice) {
                Ok(true) => return Wake::Poked,
                Ok(false) => {}
                Err(e) => {
                    debug!("scheduler: waiting on Redis failed ({e})");
                    if let Wake::Stop = sleep(stop, slice) {
                        return Wake::Stop;
                    }
                }
            }
        }
    }
}

/// Sleeps for `wait`, or until a stop request (or the stop sender is gone).
fn sleep(stop: &Receiver<()>, wait: Duration) -> Wake {
    let timer = match Instant::now().checked_add(wait) {
        Some(at) => crossbeam_channel::at(at),
        None => crossbeam_channel::never(),
    };
    select! {
        recv(stop) -> _ => Wake::Stop,
        recv(timer) -> _ => Wake::Timer,
    }
}
