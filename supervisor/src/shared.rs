//! What the control loop and the slots share.
//!
//! The control loop decides and the slots follow: it flips the flags and
//! swaps the current configuration; a slot reads them at the top of its
//! loop and between tasks. Everything here is either atomic or swapped
//! whole behind a lock held only to clone an `Arc`.

use crate::error_reports::ErrorReports;
use crate::traces::Tracer;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use jiff::Timestamp;
use redis_tasks_store::StoreError;
use redis_tasks_worker::{MiddlewareChain, TaskRegistry};
use tracing::{info, warn};

/// How many distinct unknown field names are reported at most (a hostile
/// producer cannot grow the supervisor's memory or flood its log).
const MAX_REPORTED_FIELDS: usize = 256;

use crate::config::SupervisorConfig;
use crate::metrics::Metrics;
use crate::worker_process::{RetireHandle, SpawnSpec, WorkerProcess};

/// The configuration in effect; replaced whole by a reload.
#[derive(Debug)]
pub(crate) struct Current {
    /// The supervisor's configuration.
    pub config: SupervisorConfig,
    /// The active middleware.
    pub chain: MiddlewareChain,
    /// How worker processes are started.
    pub spawn: SpawnSpec,
    /// Bumped by every reload: a worker process started under an older
    /// generation is replaced after its current task.
    pub generation: u64,
}

/// Outcome counters since start.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Tasks recorded as finished.
    pub finished: AtomicU64,
    /// Tasks recorded as failed.
    pub failed: AtomicU64,
    /// Interrupted reentrant tasks put back in their queue.
    pub requeued: AtomicU64,
    /// Running tasks canceled on request.
    pub canceled: AtomicU64,
}

/// What one slot is doing, for the status line and the SIGUSR1 dump.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlotView {
    /// The task it runs: id, description, since when.
    pub task: Option<(String, String, Instant)>,
    /// Its worker process, if one is ready or running.
    pub pid: Option<u32>,
    /// It claimed a retirement (SIGTTOU) and is ending.
    pub retiring: bool,
}

/// What the supervisor as a whole is doing; the control loop sets it, the
/// slots follow it. Only moves towards stopping: once stopping, SIGTSTP
/// and SIGCONT change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    /// Fetching and running tasks.
    Serving = 0,
    /// SIGTSTP: running tasks go on, nothing new is fetched until SIGCONT.
    Quiet = 1,
    /// Graceful shutdown: nothing new is fetched; running tasks finish or
    /// are interrupted (after the drain period).
    Stopping = 2,
    /// Immediate shutdown: running tasks are killed, Redis retries give up
    /// sooner.
    StoppingNow = 3,
}

impl Mode {
    fn from_u8(value: u8) -> Mode {
        match value {
            0 => Mode::Serving,
            1 => Mode::Quiet,
            2 => Mode::Stopping,
            _ => Mode::StoppingNow,
        }
    }

    /// Whether slots take new tasks.
    pub(crate) fn fetches(self) -> bool {
        self == Mode::Serving
    }

    /// Whether a shutdown began.
    pub(crate) fn stopping(self) -> bool {
        self >= Mode::Stopping
    }
}

/// State shared by the control loop and every slot of one supervisor.
#[derive(Debug)]
pub(crate) struct Shared {
    current: RwLock<Arc<Current>>,
    /// The task functions (fixed for the life of the process).
    pub registry: TaskRegistry,
    /// A [`Mode`], read and written through [`Shared::mode`] and friends.
    mode: AtomicU8,
    /// Slots asked to retire (SIGTTOU) that no slot has claimed yet.
    pub retire_requests: AtomicUsize,
    /// Failed starts of worker processes in a row, over all slots.
    pub start_failures: AtomicU32,
    /// Outcome counters.
    pub counters: Counters,
    redis_down_since: Mutex<Option<Timestamp>>,
    retire: RetireHandle,
    /// Names of unknown task-hash fields already reported in the log.
    reported_fields: Mutex<BTreeSet<String>>,
    /// What `/metrics` serves (updated whether or not it is served).
    pub metrics: Metrics,
    /// Where failed endings are reported (Sentry, feature `sentry`).
    pub reports: ErrorReports,
    /// Where the spans of traced tasks go (OTLP, feature `otlp`).
    pub tracer: Tracer,
}

impl Shared {
    /// Shared state starting with `current`.
    pub(crate) fn new(current: Current, registry: TaskRegistry, retire: RetireHandle) -> Self {
        let metrics = Metrics::new(current.config.queues.clone(), registry.names());
        let reports = ErrorReports::from_settings(&current.config.settings);
        let tracer = Tracer::from_settings(&current.config.settings);
        Shared {
            reports,
            tracer,
            current: RwLock::new(Arc::new(current)),
            registry,
            mode: AtomicU8::new(Mode::Serving as u8),
            retire_requests: AtomicUsize::new(0),
            start_failures: AtomicU32::new(0),
            counters: Counters::default(),
            redis_down_since: Mutex::new(None),
            retire,
            reported_fields: Mutex::new(BTreeSet::new()),
            metrics,
        }
    }

    /// Logs the fields of task `id`'s hash that are not part of the schema,
    /// each name once for the life of the supervisor (a raw producer that
    /// misspells `timeout` gets one warning, not one per task).
    pub(crate) fn report_unknown_fields(&self, id: &str, fields: &[String]) {
        if fields.is_empty() {
            return;
        }
        let mut reported = self
            .reported_fields
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for field in fields {
            if reported.len() < MAX_REPORTED_FIELDS && reported.insert(field.clone()) {
                warn!(
                    task = id,
                    "task hash has field {field:?}, which redis-tasks does not know and ignores \
                     (a misspelt option of a raw producer?); reported once per field name"
                );
            }
        }
    }

    /// Hands a worker process the slot is done with to the retiring thread
    /// (or retires it here if that thread is gone).
    pub(crate) fn retire(&self, process: WorkerProcess) {
        self.retire.retire(process);
    }

    /// The configuration in effect now.
    pub(crate) fn current(&self) -> Arc<Current> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts a new configuration in effect.
    pub(crate) fn replace(&self, current: Current) {
        self.metrics.serve_queues(&current.config.queues);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(current);
    }

    /// What the supervisor is doing now.
    pub(crate) fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }

    /// Begins a graceful (`now == false`) or immediate shutdown; returns
    /// the mode before.
    pub(crate) fn begin_stop(&self, now: bool) -> Mode {
        let to = if now {
            Mode::StoppingNow
        } else {
            Mode::Stopping
        };
        Mode::from_u8(self.mode.fetch_max(to as u8, Ordering::SeqCst))
    }

    /// SIGTSTP (`true`) and SIGCONT (`false`); returns whether the mode
    /// changed. No effect once stopping.
    pub(crate) fn set_quiet(&self, quiet: bool) -> bool {
        let (from, to) = if quiet {
            (Mode::Serving, Mode::Quiet)
        } else {
            (Mode::Quiet, Mode::Serving)
        };
        self.mode
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Claims one pending retirement, if any.
    pub(crate) fn claim_retirement(&self) -> bool {
        self.retire_requests
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Notes a failed Redis call (for the status line).
    pub(crate) fn note_redis_error(&self, _e: &StoreError) {
        self.metrics.redis_error();
        self.redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Timestamp::now);
    }

    /// Notes a Redis call that worked.
    pub(crate) fn note_redis_ok(&self) {
        let was = self
            .redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(since) = was {
            self.metrics.redis_reconnected();
            info!("Redis reachable again (failing since {since:.0})");
        }
    }

    /// Since when Redis has been failing, if it is.
    pub(crate) fn redis_down_since(&self) -> Option<Timestamp> {
        *self
            .redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
