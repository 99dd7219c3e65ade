//! `failed list`, `failed requeue` and `failed delete`: by id, all, or
//! every task matching a filter.

use std::io::Write;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use redis_tasks_config::schedule::parse_duration;
use redis_tasks_store::{RegistryKind, RequeueReport, Store, TaskFilter};
use serde_json::json;

use super::tasks::preview_json;

/// Largest field value one row of `failed list` loads: a longer
/// description or error is cut (`…`), a longer argument is left out, with
/// its size in `--json`'s `clipped`.
const LIST_FIELD_CAP: usize = 1024;

/// How many ids one requeue step takes (each step is atomic).
const REQUEUE_BATCH: usize = 500;

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
    /// Put failed tasks back at the end of their queue: by id, --all, or
    /// every one matching the filters.
    Requeue(FailedRequeueArgs),
    /// Delete failed tasks (their records and registry entries): by id,
    /// --all, or every one matching the filters.
    Delete(FailedRequeueArgs),
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

/// Arguments of `failed requeue` and `failed delete`: ids, `--all`, or
/// filters (any combination; all must match).
#[derive(Debug, Clone, Args)]
#[command(group(
    ArgGroup::new("which")
        .required(true)
        .multiple(true)
        .args(["ids", "all", "queue", "task", "error_contains", "since"])
))]
pub struct FailedRequeueArgs {
    /// Ids of failed tasks.
    #[arg(value_name = "ID", conflicts_with_all = ["all", "queue", "task", "error_contains", "since"])]
    pub ids: Vec<String>,
    /// Every failed task.
    #[arg(long, conflicts_with_all = ["queue", "task", "error_contains", "since"])]
    pub all: bool,
    /// Only tasks enqueued on this queue.
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Only tasks of this task function.
    #[arg(long, value_name = "NAME")]
    pub task: Option<String>,
    /// Only tasks whose error contains this text (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    pub error_contains: Option<String>,
    /// Only tasks that failed within this long (`30m`, `2h`, `1d`).
    #[arg(long, value_name = "DUR")]
    pub since: Option<String>,
}

impl FailedRequeueArgs {
    /// The filter the flags give, if any was given.
    fn filter(&self) -> anyhow::Result<Option<TaskFilter>> {
        let since = match &self.since {
            None => None,
            Some(text) => {
                let secs = parse_duration(text).context("--since")?;
                let span = jiff::SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX));
                Some(
                    jiff::Timestamp::now()
                        .checked_sub(span)
                        .unwrap_or(jiff::Timestamp::MIN),
                )
            }
        };
        let filter = TaskFilter {
            until: None,
            queue: self.queue.clone(),
            task: self.task.clone(),
            error_contains: self.error_contains.clone(),
            text: None,
            since,
        };
        Ok((filter != TaskFilter::default()).then_some(filter))
    }
}

pub(super) fn run(store: &Store, cmd: FailedCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        FailedAction::List(args) => list(store, RegistryKind::Failed, &args, out),
        FailedAction::Requeue(args) => requeue(store, &args, out),
        FailedAction::Delete(args) => delete(store, &args, out),
    }
}

/// `failed list`, `expired list` and `canceled list`: the tasks of the
/// registry of `kind`, oldest first.
pub(super) fn list(
    store: &Store,
    kind: RegistryKind,
    args: &FailedListArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (registry, noun) = (store.registry(kind), kind.name());
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
    let report = if let Some(filter) = args.filter()? {
        let ids = store.matching(RegistryKind::Failed, &filter)?;
        let mut total = RequeueReport::default();
        for batch in ids.chunks(REQUEUE_BATCH) {
            let report = store.requeue_failed(batch)?;
            total.requeued += report.requeued;
            total.rejected.extend(report.rejected);
        }
        total
    } else if args.all {
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

fn delete(store: &Store, args: &FailedRequeueArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let ids = if let Some(filter) = args.filter()? {
        store.matching(RegistryKind::Failed, &filter)?
    } else if args.all {
        store.matching(RegistryKind::Failed, &TaskFilter::default())?
    } else {
        args.ids.clone()
    };
    let deleted = store.delete_failed_many(&ids)?;
    writeln!(
        out,
        "deleted {deleted} task{}",
        if deleted == 1 { "" } else { "s" }
    )?;
    let missed = ids.len() as u64 - deleted;
    if missed > 0 && !args.ids.is_empty() {
        anyhow::bail!(
            "{missed} task{} not deleted: not in the failed registry",
            if missed == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
