//! `canceled list`: the tasks canceled while queued, scheduled or running.

use std::io::Write;

use clap::{Args, Subcommand};
use redis_tasks_store::{RegistryKind, Store};

use super::failed::{FailedListArgs, list};

/// `canceled ...` subcommands.
#[derive(Debug, Clone, Args)]
pub struct CanceledCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: CanceledAction,
}

/// The actions of `canceled`.
#[derive(Debug, Clone, Subcommand)]
pub enum CanceledAction {
    /// List canceled tasks still in the canceled registry, oldest first.
    List(FailedListArgs),
}

pub(super) fn run(store: &Store, cmd: CanceledCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        CanceledAction::List(args) => list(store, RegistryKind::Canceled, &args, out),
    }
}
