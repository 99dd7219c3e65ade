//! The `scheduler` subcommand: run the scheduler as a process of its own.
//!
//! It needs the binary's task names (to reject entries naming unknown
//! tasks), so it lives in users' binaries built with [`App`], not in the
//! admin `redis-tasks` binary.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use crossbeam_channel::select;
use redis_tasks_supervisor::scheduler::{self, SchedulerConfig};
use redis_tasks_supervisor::signals::{self, SignalRequest};

use super::App;
use crate::cli::GlobalArgs;

/// Options of `scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {}

/// How long the scheduler gets to release its lock after SIGTERM before
/// the process exits without it (a Redis that does not answer).
const STOP_WAIT: Duration = Duration::from_millis(800);

pub(super) fn run(app: &App, global: &GlobalArgs, _args: SchedulerArgs) -> anyhow::Result<()> {
    // First, before any thread: every signal of the table works from now on.
    let signals = signals::listen().context("cannot install signal handlers")?;
    let settings = global.settings()?;
    settings.validate_tasks(&app.registry.names())?;
    if settings.schedule.is_empty() {
        tracing::warn!(
            "the settings have no [schedule.ID] entries: the scheduler has nothing to do"
        );
    }
    scheduler::forbid_inspection().context("cannot make the scheduler non-dumpable")?;
    let handle = scheduler::spawn(SchedulerConfig::new(settings)).context("scheduler")?;
    loop {
        select! {
            recv(handle.done()) -> ended => {
                if let Ok(Err(e)) = ended {
                    return Err(e).context("scheduler");
                }
                return Ok(());
            }
            recv(signals.requests) -> request => match request {
                Ok(SignalRequest::Stop | SignalRequest::StopNow) | Err(_) => {
                    handle.stop_within(STOP_WAIT);
                    return Ok(());
                }
                Ok(SignalRequest::Reload) => {
                    // Only the password file is read again; other settings
                    // take effect at the next start.
                    for e in redis_tasks_store::reload_password_files() {
                        tracing::error!("SIGHUP: {e}; the old password stays in force");
                    }
                    tracing::info!("SIGHUP: the redis password file was read again");
                }
                Ok(other) => tracing::debug!("scheduler: {other:?} has no effect on a scheduler"),
            },
        }
    }
}
