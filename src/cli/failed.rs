//! `failed list` and `failed requeue`.

use std::io::Write;

use clap::{ArgGroup, Args, Subcommand};
use redis_tasks_store::{RegistryKind, Store};
use serde_json::json;

use super::tasks::preview_json;

/// Largest field value one row of `failed list` loads: a longer
/// description or error is cut (`…`), a longer argument is left out, with
/// its size in `--json`'s `clipped`.
const LIST_FIELD_CAP: usize = 1024;

/// `failed ...` subcommands.
#[derive(Debug, Clone, Args)]
pub struct FailedCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: FailedAction,
}

/// The actions of `failed`.
#[derive(Debug, Clone, Subcommand)]
pub enum FailedAction {
    /// List failed tasks, oldest first.
    List(FailedListArgs),
    /// Put failed tasks back at the end of their queue.
    Requeue(FailedRequeueArgs),
}

/// Arguments of `failed list`.
#[derive(Debug, Clone, Args)]
pub struct FailedListArgs {
    /// Print a JSON array of task records instead.
    #[arg(long)]
    pub json: bool,
    /// Skip this many of the oldest.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Show at most this many.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

/// Arguments of `failed requeue`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
pub struct FailedRequeueArgs {
    /// Ids of failed tasks.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Every failed task.
    #[arg(long)]
    pub all: bool,
}

pub(super) fn run(store: &Store, cmd: FailedCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        FailedAction::List(args) => list(store, RegistryKind::Failed, &args, out),
        FailedAction::Requeue(args) => requeue(store, &args, out),
    }
}

/// `failed list` and `expired list`: the tasks of the registry of `kind`,
/// oldest first.
pub(super) fn list(
    store: &Store,
    kind: RegistryKind,
    args: &FailedListArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (registry, noun) = match kind {
        RegistryKind::Failed => (store.failed(), "failed"),
        RegistryKind::Expired => (store.expired(), "expired"),
        RegistryKind::Finished => (store.finished(), "finished"),
    };
    let ids = registry.ids(args.offset, args.limit)?;
    let records = store.tasks_preview(&ids, LIST_FIELD_CAP)?;
    if args.json {
        let items: Vec<serde_json::Value> = ids
            .iter()
            .zip(&records)
            .map(|(id, rec)| match rec {
                Ok(rec) => preview_json(rec),
                Err(e) => json!({"id": id, "unreadable": e.to_string()}),
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
        return Ok(());
    }
    for (id, rec) in ids.iter().zip(&records) {
        match rec {
            Ok(preview) => {
                let rec = &preview.record;
                let cut = |field: &str| {
                    if preview.clip(field).is_some() {
                        "…"
                    } else {
                        ""
                    }
                };
                let ended = rec
                    .ended_at
                    .map_or_else(|| "-".to_owned(), |t| t.to_string());
                let error = rec
                    .error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                writeln!(
                    out,
                    "{id}  {ended}  {}{}  {error}{}",
                    rec.description,
                    cut("description"),
                    cut("error")
                )?;
            }
            Err(e) => writeln!(out, "{id}  (unreadable: {e})")?,
        }
    }
    let total = registry.count()?;
    writeln!(
        out,
        "{} of {total} {noun} task{}",
        ids.len(),
        if total == 1 { "" } else { "s" }
    )?;
    Ok(())
}

fn requeue(store: &Store, args: &FailedRequeueArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = if args.all {
        store.requeue_all_failed()?
    } else {
        store.requeue_failed(&args.ids)?
    };
    writeln!(
        out,
        "requeued {} task{}",
        report.requeued,
        if report.requeued == 1 { "" } else { "s" }
    )?;
    if !report.rejected.is_empty() {
        let list: Vec<String> = report
            .rejected
            .iter()
            .map(|r| format!("{} ({})", r.id, r.reason))
            .collect();
        anyhow::bail!(
            "{} task{} not requeued: {}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            list.join(", ")
        );
    }
    Ok(())
}
