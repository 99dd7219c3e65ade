//! `enqueue`, `task show` and `task cancel`, and the JSON shape of a task
//! record that `task show --json` and `failed list --json` print.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use redis_tasks_protocol::TaskRecord;
use redis_tasks_store::Store;
use serde_json::{Value, json};

/// Arguments of `enqueue`.
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// Name of the task function.
    pub task: String,
    /// The arguments as JSON (an array for positional arguments, an object
    /// for keyword arguments).
    #[arg(value_name = "ARGS_JSON", default_value = "[]")]
    pub args: String,
    /// The queue to put it on.
    #[arg(long, short, default_value = "default")]
    pub queue: String,
}

/// `task ...` subcommands.
#[derive(Debug, Clone, Args)]
pub struct TaskCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: TaskAction,
}

/// The actions of `task`.
#[derive(Debug, Clone, Subcommand)]
pub enum TaskAction {
    /// Show a task's record.
    Show(TaskShowArgs),
    /// Cancel a task that waits in its queue.
    Cancel(TaskIdArgs),
}

/// Arguments of `task show`.
#[derive(Debug, Clone, Args)]
pub struct TaskShowArgs {
    /// The task id.
    pub id: String,
    /// Print JSON instead.
    #[arg(long)]
    pub json: bool,
}

/// A task id.
#[derive(Debug, Clone, Args)]
pub struct TaskIdArgs {
    /// The task id.
    pub id: String,
}

pub(super) fn enqueue(
    store: &Store,
    args: &EnqueueArgs,
    known_tasks: Option<&[String]>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let Some(known) = known_tasks {
        if !known.iter().any(|k| k == &args.task) {
            anyhow::bail!(
                "unknown task {:?} (this binary registers: {})",
                args.task,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
        }
    }
    let value: Value = serde_json::from_str(&args.args).context("invalid ARGS_JSON")?;
    let id = store
        .queue(args.queue.as_str())
        .enqueue(&args.task, &value)?;
    writeln!(out, "{id}")?;
    Ok(())
}

pub(super) fn run(store: &Store, cmd: TaskCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        TaskAction::Show(args) => {
            let rec = store.task(&args.id)?;
            if args.json {
                writeln!(out, "{}", task_json(&rec))?;
            } else {
                show(&rec, out)?;
                if let Some(progress) = store.progress(&rec.id)? {
                    writeln!(out, "progress:     {progress}")?;
                }
            }
        }
        TaskAction::Cancel(args) => {
            store.cancel(&args.id)?;
            writeln!(out, "canceled task {}", args.id)?;
        }
    }
    Ok(())
}

/// A task record as JSON: `id, task, args, status, queue, description,
/// error, enqueued_at, started_at, ended_at, meta, aborted_runs`, times as
/// RFC 3339 UTC and absent values as `null`.
pub fn task_json(rec: &TaskRecord) -> Value {
    let time = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string());
    json!({
        "id": rec.id,
        "task": rec.task,
        "args": rec.args,
        "status": rec.status.as_str(),
        "queue": rec.queue,
        "description": rec.description,
        "error": rec.error,
        "enqueued_at": rec.enqueued_at.to_string(),
        "started_at": time(rec.started_at),
        "ended_at": time(rec.ended_at),
        "meta": rec.meta,
        "aborted_runs": rec.aborted_runs.iter().map(|r| json!({
            "started_at": time(r.started_at),
            "ended_at": r.ended_at.to_string(),
            "reason": r.reason,
        })).collect::<Vec<_>>(),
    })
}

fn show(rec: &TaskRecord, out: &mut dyn Write) -> anyhow::Result<()> {
    let time = |t: Option<jiff::Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    writeln!(out, "id:           {}", rec.id)?;
    writeln!(out, "task:         {}", rec.task)?;
    writeln!(out, "description:  {}", rec.description)?;
    writeln!(out, "status:       {}", rec.status)?;
    writeln!(out, "queue:        {}", rec.queue)?;
    writeln!(out, "enqueued at:  {}", rec.enqueued_at)?;
    writeln!(out, "started at:   {}", time(rec.started_at))?;
    writeln!(out, "ended at:     {}", time(rec.ended_at))?;
    if let Some(error) = &rec.error {
        writeln!(out, "error:        {error}")?;
    }
    writeln!(out, "args:         {}", rec.args)?;
    writeln!(out, "meta:         {}", Value::Object(rec.meta.clone()))?;
    if rec.aborted_runs.is_empty() {
        writeln!(out, "aborted runs: none")?;
    } else {
        writeln!(out, "aborted runs:")?;
        for r in &rec.aborted_runs {
            writeln!(
                out,
                "  {} .. {}: {}",
                time(r.started_at),
                r.ended_at,
                r.reason
            )?;
        }
    }
    Ok(())
}
