//! What every redis-tasks process must agree on.
//!
//! # Layout
//!
//! - [`model`]: the task record, its status, outcomes and the typed reasons a
//!   run can end abnormally, with the one place their wording lives.
//! - [`store`]: the Redis schema. Every key name and Lua script lives there, as
//!   do the operations producers use (enqueue, cancel, list) and the atomic
//!   transitions supervisors perform (fetch, finish, requeue, heartbeat,
//!   maintenance).
//! - [`settings`]: the settings file, environment overrides and defaults.
//! - [`schedule`]: schedule kinds (cron, every, daily), their next runs and
//!   the daylight-saving smearing between local time and UTC.
//! - [`ipc`]: the length-prefixed bincode frames a supervisor and its worker
//!   processes exchange over a socket pair.

pub mod ipc;
pub mod model;
pub mod schedule;
pub mod settings;
pub mod store;

pub use model::{AbortedRun, ExitReason, Failure, FailureKind, Outcome, TaskRecord, TaskStatus};
pub use settings::Settings;
pub use store::{Queue, Store, StoreError};
