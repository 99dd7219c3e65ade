//! Settings and schedule arithmetic for redis-tasks.
//!
//! # Layout
//!
//! - [`settings`]: the settings file, environment overrides, defaults,
//!   per-queue isolation profiles and schedule entries, each checked with an
//!   error that names the key.
//! - [`Rate`]: a rate limit's `N/PERIOD`; [`QueueOrder`]: strict or
//!   weighted queue priorities.
//! - [`schedule`]: schedule kinds (cron, every, daily), their next runs and
//!   the daylight-saving smearing between local time and UTC.
//!
//! This crate does no I/O beyond reading the settings file and the
//! environment; it has no Redis dependency.

mod priority;
mod rate;
pub mod schedule;
pub mod settings;

pub use priority::QueueOrder;
pub use rate::{Rate, RateError};

pub use settings::{DEFAULT_DRAIN_TIMEOUT, Settings};
