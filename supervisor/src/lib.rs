//! The redis-tasks supervisor: the long-running process that owns every
//! Redis connection and runs each task in an isolated worker process.
//!
//! # Public surface
//!
//! [`run`] with a [`SupervisorConfig`] and the signal requests from
//! [`signals::listen`]; [`scheduler`] for the scheduler process; and
//! [`outcome`], the one path from how a run ended to Redis, and
//! [`children`], what a task may enqueue, which the facade's in-process
//! test runner shares. Everything else is private.
//!
//! # Layout
//!
//! - `control/`: the control loop. `startup.rs` (the start-up phase,
//!   answering signals while Redis is awaited), `timers.rs` (when
//!   heartbeats, maintenance, the watchdog and the drain are due: pure),
//!   `slots.rs` (the slot set and the reconcile gap: pure), `upkeep.rs`
//!   (heartbeats, maintenance, recovery of a previous incarnation),
//!   `reload.rs` (SIGHUP), `status.rs` (STATUS= and the SIGUSR1 dump).
//! - `shared.rs`: what the control loop and the slots share, the
//!   supervisor's `Mode` among it.
//! - `slot.rs`: one thread per slot: fetch, run, conclude.
//! - `execute.rs`: one task on one worker process, with its deadline and
//!   the slot's commands.
//! - `children.rs`: the tasks a running task asks to enqueue, checked
//!   against its profile, written at once or held for its end.
//! - `rates.rs`: progress and meta updates held to their rate and size,
//!   whatever a worker process sends.
//! - `outcome.rs`: policy, `process_outcome`, the atomic write.
//! - `recovery.rs`: outcomes for the tasks of dead slots.
//! - `promoter.rs`: a thread that moves due delayed tasks (delayed
//!   enqueues, retries) to their queue, passes cancel requests of
//!   running tasks to their slot, and passes the commands operators send
//!   through Redis (quiet, stop, scale) to the control loop, which reports
//!   the supervisor's state to Redis at each heartbeat.
//! - `worker_process.rs`: starting (re-exec or fork server), talking to
//!   and reaping a worker process; `fork_server.rs` the fork server's
//!   supervisor side.
//! - `family.rs`: the supervisor's own children, told apart from the
//!   orphans it adopts as a child subreaper, which it kills and reaps; the
//!   PID namespace worker processes run in, when the host allows one.
//! - `liveness.rs`: whether a process recorded in Redis (pid, start time,
//!   boot id) still runs.
//! - `signals.rs`: the signal table. `backoff.rs`: retrying while Redis
//!   is unreachable. `config.rs`: what a supervisor is asked to do.
//!   `notify.rs`: sd_notify. `metrics/`: the Prometheus metrics and
//!   their `/metrics` server (`--metrics-addr`).
//! - `scheduler/`: the scheduler (one per fleet): enqueues the schedule
//!   entries of the settings when due; a process of its own or a thread
//!   the control loop owns (`worker --scheduler`).
//! - `isolation/`: isolation profiles of untrusted tasks: planning them,
//!   probing them at start-up, naming the limit a task hit, private
//!   namespaces per worker process (`userns.rs`).
//! - `sys/`: the crate's only `unsafe` (between fork and exec, the private
//!   namespaces of an isolated worker process, and the anchor: the init of
//!   the worker processes' PID namespace).

#![warn(unreachable_pub)]

mod backoff;
mod bell;
mod cgroup;
pub mod children;
mod config;
mod control;
mod error_reports;
mod execute;
mod family;
mod fork_server;
mod isolation;
mod liveness;
mod metrics;
mod notify;
pub mod outcome;
mod promoter;
mod rates;
mod recovery;
pub mod results;
pub mod scheduler;
mod shared;
pub mod signals;
mod slot;
mod sys;
mod task_output;
mod traces;
mod worker_process;

pub use config::{DEFAULT_MAX_TASKS_PER_CHILD, Reloader, SupervisorConfig};
pub use control::{RunSummary, SupervisorError, run};
pub use metrics::MetricsBindError;
