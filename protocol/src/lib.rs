//! What a supervisor and its worker processes share, and nothing else.
//!
//! # Layout
//!
//! - [`model`]: the task record, its status, outcomes and the typed reasons a
//!   run can end abnormally, with the one place their wording lives.
//! - [`ipc`]: the length-prefixed bincode frames a supervisor and its worker
//!   processes exchange over a socket pair, and the fork server's requests.
//! - [`proc_tree`]: killing a process's whole descendant tree, frozen first.
//! - [`retry`]: retry policies (count, backoff, jitter, which endings) and
//!   the record of each attempt.
//! - [`progress`]: a running task's progress report.
//!
//! The Redis schema lives in `redis-tasks-store` and the settings in
//! `redis-tasks-config`; the worker crate depends on neither Redis nor the
//! store, so the crate graph itself says that worker processes never touch
//! Redis.

pub mod ipc;
pub mod model;
pub mod proc_tree;
pub mod progress;
pub mod retry;
pub mod trace;

pub use model::{
    AbortedRun, ExitReason, Failure, FailureClass, FailureKind, Outcome, TaskRecord, TaskStatus,
};
pub use progress::Progress;
pub use retry::{Attempt, Jitter, RetryOn, RetryPolicy};
pub use trace::TraceParent;
