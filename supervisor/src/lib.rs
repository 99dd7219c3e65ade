//! The redis-tasks supervisor: the long-running process that owns every
//! Redis connection and runs each task in an isolated worker process.
//!
//! # Layout
//!
//! - [`control`]: the control loop; signals, slot endings and timers in,
//!   decisions out. Heartbeats, maintenance and start-up recovery of a
//!   previous incarnation live there.
//! - `slot`: one thread per slot: fetch, run, record.
//! - [`execute`]: one task on one worker process, with its deadline and
//!   the slot's commands.
//! - [`settle`]: pure decisions: final outcome or requeue.
//! - `recovery`: outcomes for the tasks of dead slots.
//! - [`worker_process`]: starting (re-exec), talking to and reaping a
//!   worker process.
//! - [`signals`]: the signal table.
//! - [`backoff`]: retrying while Redis is unreachable.
//! - [`config`]: what a supervisor is asked to do.
//! - [`scheduler`]: the scheduler (one per fleet): enqueues the schedule
//!   entries of the settings when due; a process of its own or a thread
//!   of a supervisor (`worker --scheduler`).
//! - [`isolation`]: isolation profiles of untrusted tasks: planning them,
//!   probing them at start-up, naming the limit a task hit.
//! - `sys`: the crate's only `unsafe` (between fork and exec).

pub mod backoff;
pub mod config;
pub mod control;
pub mod execute;
pub mod fork_server;
pub mod isolation;
pub mod liveness;
pub mod notify;
mod recovery;
pub mod scheduler;
pub mod settle;
pub mod shared;
pub mod signals;
mod slot;
mod sys;
pub mod worker_process;

pub use config::{DEFAULT_MAX_TASKS_PER_CHILD, Reloader, SupervisorConfig};
pub use control::{RunSummary, SupervisorError, run};
