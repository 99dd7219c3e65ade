//! `empty`: remove every task from queues.

use std::io::Write;

use clap::Args;
use redis_tasks_store::Store;

/// Arguments of `empty`.
#[derive(Debug, Clone, Args)]
pub struct EmptyArgs {
    /// The queues to empty.
    #[arg(
        value_name = "QUEUE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub queues: Vec<String>,
    /// Every queue in use.
    #[arg(long)]
    pub all: bool,
    /// Also forget the queues (they no longer show in `info`).
    #[arg(long)]
    pub delete: bool,
}

pub(super) fn empty(store: &Store, args: &EmptyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let names = if args.all {
        store.queues()?
    } else {
        args.queues.clone()
    };
    for name in names {
        let q = store.queue(name.as_str());
        let (removed, verb) = if args.delete {
            (q.delete()?, "deleted")
        } else {
            (q.empty()?, "emptied")
        };
        writeln!(
            out,
            "{verb} queue {name} ({removed} task{})",
            if removed == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}
