//! What the control loop and the slots share.
//!
//! The control loop decides and the slots follow: it flips the flags and
//! swaps the current configuration; a slot reads them at the top of its
//! loop and between tasks. Everything here is either atomic or swapped
//! whole behind a lock held only to clone an `Arc`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use jiff::Timestamp;
use redis_tasks_store::StoreError;
use redis_tasks_worker::{MiddlewareChain, TaskRegistry};
use tracing::info;

use crate::config::SupervisorConfig;
use crate::worker_process::{RetireHandle, SpawnSpec, WorkerProcess};

/// The configuration in effect; replaced whole by a reload.
#[derive(Debug)]
pub struct Current {
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
pub struct Counters {
    /// Tasks recorded as finished.
    pub finished: AtomicU64,
    /// Tasks recorded as failed.
    pub failed: AtomicU64,
    /// Interrupted reentrant tasks put back in their queue.
    pub requeued: AtomicU64,
}

/// What one slot is doing, for the status line and the SIGUSR1 dump.
#[derive(Debug, Clone, Default)]
pub struct SlotView {
    /// The task it runs: id, description, since when.
    pub task: Option<(String, String, Instant)>,
    /// Its worker process, if one is ready or running.
    pub pid: Option<u32>,
    /// It claimed a retirement (SIGTTOU) and is ending.
    pub retiring: bool,
}

/// State shared by the control loop and every slot of one supervisor.
#[derive(Debug)]
pub struct Shared {
    current: RwLock<Arc<Current>>,
    /// The task functions (fixed for the life of the process).
    pub registry: TaskRegistry,
    /// Stop fetching: a shutdown began (or burst mode is ending).
    pub stopping: AtomicBool,
    /// Immediate shutdown: give up on Redis retries sooner.
    pub killing: AtomicBool,
    /// SIGTSTP: keep running tasks, fetch no new ones.
    pub quiet: AtomicBool,
    /// Slots asked to retire (SIGTTOU) that no slot has claimed yet.
    pub retire_requests: AtomicUsize,
    /// Failed starts of worker processes in a row, over all slots.
    pub start_failures: AtomicU32,
    /// Outcome counters.
    pub counters: Counters,
    redis_down_since: Mutex<Option<Timestamp>>,
    retire: RetireHandle,
}

impl Shared {
    /// Shared state starting with `current`.
    pub fn new(current: Current, registry: TaskRegistry, retire: RetireHandle) -> Self {
        Shared {
            current: RwLock::new(Arc::new(current)),
            registry,
            stopping: AtomicBool::new(false),
            killing: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            retire_requests: AtomicUsize::new(0),
            start_failures: AtomicU32::new(0),
            counters: Counters::default(),
            redis_down_since: Mutex::new(None),
            retire,
        }
    }

    /// Hands a worker process the slot is done with to the retiring thread
    /// (or retires it here if that thread is gone).
    pub fn retire(&self, process: WorkerProcess) {
        self.retire.retire(process);
    }

    /// The configuration in effect now.
    pub fn current(&self) -> Arc<Current> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts a new configuration in effect.
    pub fn replace(&self, current: Current) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(current);
    }

    /// Claims one pending retirement, if any.
    pub fn claim_retirement(&self) -> bool {
        self.retire_requests
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Notes a failed Redis call (for the status line).
    pub fn note_redis_error(&self, _e: &StoreError) {
        self.redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Timestamp::now);
    }

    /// Notes a Redis call that worked.
    pub fn note_redis_ok(&self) {
        let was = self
            .redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(since) = was {
            info!("Redis reachable again (failing since {since:.0})");
        }
    }

    /// Since when Redis has been failing, if it is.
    pub fn redis_down_since(&self) -> Option<Timestamp> {
        *self
            .redis_down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
