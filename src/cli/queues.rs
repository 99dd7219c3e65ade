//! `empty`: remove every task from queues; `queue`: list queues, pause,
//! resume and limit them (flow control, docs/flow-control.md).

use std::io::Write;

use clap::Args;
use redis_tasks_store::{Limit, Rate, Store};

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

/// `queue ...` subcommands: flow control of queues, fleet-wide
/// (docs/flow-control.md).
#[derive(Debug, Clone, Args)]
pub struct QueueCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: QueueAction,
}

/// The actions of `queue`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueueAction {
    /// Every known queue with its length, running count, paused flag and
    /// limits.
    List(QueueListArgs),
    /// Stop starting the queue's tasks on every supervisor (enqueueing
    /// still works; running tasks finish).
    Pause(QueueNameArgs),
    /// Start the queue's tasks again.
    Resume(QueueNameArgs),
    /// Set or clear the queue's limits, fleet-wide.
    Limit(LimitArgs),
}

/// Arguments of `queue list`.
#[derive(Debug, Clone, Args)]
pub struct QueueListArgs {
    /// Print a JSON array instead.
    #[arg(long)]
    pub json: bool,
}

/// A queue's name.
#[derive(Debug, Clone, Args)]
pub struct QueueNameArgs {
    /// The queue.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// Arguments of `queue limit` and `task limit`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("limit").required(true).multiple(true)))]
pub struct LimitArgs {
    /// The queue, or the task function.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// At most N of its tasks run at once across every supervisor.
    #[arg(long, value_name = "N", group = "limit", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// At most N starts in any window of PERIOD (`50/1s`, `100/1m`,
    /// `3/500ms`).
    #[arg(long, value_name = "N/PERIOD", group = "limit")]
    pub rate: Option<Rate>,
    /// Remove both limits (a pause stays).
    #[arg(long, group = "limit", conflicts_with_all = ["concurrency", "rate"])]
    pub clear: bool,
}

pub(super) fn queue(store: &Store, cmd: QueueCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        QueueAction::List(args) => list(store, &args, out),
        QueueAction::Pause(args) => {
            store.pause_queue(&args.name)?;
            writeln!(out, "paused queue {}", args.name)?;
            Ok(())
        }
        QueueAction::Resume(args) => {
            store.resume_queue(&args.name)?;
            writeln!(out, "resumed queue {}", args.name)?;
            Ok(())
        }
        QueueAction::Limit(args) => {
            limit("queue", &args, out, |l| store.limit_queue(&args.name, l))
        }
    }
}

/// Applies `queue limit` or `task limit` (`what`) through `set`.
pub(super) fn limit(
    what: &str,
    args: &LimitArgs,
    out: &mut dyn Write,
    set: impl Fn(Limit) -> Result<(), redis_tasks_store::StoreError>,
) -> anyhow::Result<()> {
    let name = &args.name;
    if args.clear {
        set(Limit::Clear)?;
        writeln!(out, "cleared the limits of {what} {name}")?;
    }
    if let Some(n) = args.concurrency {
        set(Limit::Concurrency(n))?;
        writeln!(out, "{what} {name}: at most {n} running at once")?;
    }
    if let Some(rate) = args.rate {
        set(Limit::Rate(rate))?;
        writeln!(out, "{what} {name}: at most {rate} starts")?;
    }
    Ok(())
}

fn list(store: &Store, args: &QueueListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let states = store.queue_states()?;
    if args.json {
        let all: Vec<serde_json::Value> = states
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "length": s.length,
                    "running": s.running,
                    "paused": s.flow.paused,
                    "concurrency_limit": s.flow.concurrency,
                    "rate_limit": s.flow.rate.map(|r| r.to_string()),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    if states.is_empty() {
        writeln!(out, "no queues")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:>8} {:>8}  {:<7} {:<12} rate",
        "queue", "length", "running", "paused", "concurrency"
    )?;
    for s in &states {
        writeln!(
            out,
            "{:<24} {:>8} {:>8}  {:<7} {:<12} {}",
            s.name,
            s.length,
            s.running,
            if s.flow.paused { "yes" } else { "no" },
            s.flow
                .concurrency
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            s.flow
                .rate
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
        )?;
    }
    Ok(())
}
