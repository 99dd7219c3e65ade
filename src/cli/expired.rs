//! `expired list`: the tasks whose expiry passed before they started.

use std::io::Write;

use clap::{Args, Subcommand};
use redis_tasks_store::{RegistryKind, Store};

use super::failed::{FailedListArgs, list};

/// `expired ...` subcommands.
#[derive(Debug, Clone, Args)]
pub struct ExpiredCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: ExpiredAction,
}

/// The actions of `expired`.
#[derive(Debug, Clone, Subcommand)]
pub enum ExpiredAction {
    /// List expired tasks (never run), oldest first; the error column
    /// says when each expired.
    List(FailedListArgs),
}

pub(super) fn run(store: &Store, cmd: ExpiredCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        ExpiredAction::List(args) => list(store, RegistryKind::Expired, &args, out),
    }
}
