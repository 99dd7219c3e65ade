//! The `scheduler` subcommand: run the scheduler as a process of its own.
//!
//! It needs the binary's task names (to reject entries naming unknown
//! tasks), so it lives in users' binaries built with [`App`], not in the
//! admin `redis-tasks` binary.

use anyhow::Context;
use clap::Args;
use redis_tasks_supervisor::scheduler::{self, SchedulerConfig};

use super::App;
use crate::cli::GlobalArgs;

/// Options of `scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {}

pub(super) fn run(app: &App, global: &GlobalArgs, _args: SchedulerArgs) -> anyhow::Result<()> {
    let settings = global.settings()?;
    settings.validate_tasks(&app.registry.names())?;
    if settings.schedule.is_empty() {
        tracing::warn!(
            "the settings have no [schedule.ID] entries: the scheduler has nothing to do"
        );
    }
    let handle = scheduler::spawn(SchedulerConfig::new(settings)).context("scheduler")?;
    handle.join();
    Ok(())
}
