//! `enqueue`, `task show` and `task cancel` (`task result` is in
//! `results`), and the JSON shape of a task
//! record that `task show --json` and `failed list --json` print.

use std::io::Write;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use redis_tasks_config::schedule::parse_duration;
use redis_tasks_protocol::{RetryPolicy, TaskRecord, TaskStatus};
use redis_tasks_store::{CancelResult, EnqueueOptions, Enqueued, Store, StoreError, TaskPreview};
use redis_tasks_worker::TaskRegistry;
use serde_json::{Value, json};

/// Arguments of `enqueue`.
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// Name of the task function.
    pub task: String,
    /// The task's argument as one JSON value of the task function's
    /// argument type: an object for a struct, an array for a tuple, a
    /// number, a quoted string ('"text"'); `[]` (the default) or null for a
    /// task without arguments. `-` reads it from standard input, `@PATH`
    /// from a file.
    #[arg(
        value_name = "ARGS_JSON",
        default_value = "[]",
        allow_hyphen_values = true
    )]
    pub args: String,
    /// The queue to put it on.
    #[arg(long, short, default_value = "default")]
    pub queue: String,
    /// Run it no earlier than this long from now (`90s`, `10m`, `1h30m`);
    /// it waits with status `scheduled`.
    #[arg(long = "in", value_name = "DURATION", conflicts_with = "at")]
    pub delay: Option<String>,
    /// Run it no earlier than this instant (RFC 3339, such as
    /// `2026-12-01T08:00:00Z`); a time in the past means now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Its own timeout (`30s`, `5m`), in place of the task function's.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Retry a failed run up to N times with the default backoff (1 s
    /// doubling up to 10 min, full jitter), in place of the task
    /// function's retry policy.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// A uniqueness key: while a task enqueued with it is queued, scheduled
    /// or running, nothing is enqueued and that task's id is printed.
    #[arg(long, value_name = "KEY")]
    pub unique: Option<String>,
    /// Expire it this long from now (`90s`, `10m`, `1h`): not started by
    /// then, it is never run and ends with status `expired`.
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
    pub expires_in: Option<String>,
    /// Expire it at this instant (RFC 3339, such as
    /// `2026-12-01T08:00:00Z`), as --expires-in; it must be in the future
    /// and after --in/--at.
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    /// The W3C trace context of the caller
    /// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`): the
    /// supervisor's spans of the task's wait and run join that trace.
    #[arg(long, value_name = "TRACEPARENT")]
    pub traceparent: Option<String>,
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
    /// Cancel a task: a queued or scheduled one at once, a running one by
    /// having its supervisor kill it.
    Cancel(TaskCancelArgs),
    /// Print a finished task's result (its return value as JSON), waiting
    /// for its end with --wait.
    Result(super::results::TaskResultArgs),
    /// Print what a task wrote to its stdout and stderr (the last
    /// task_log_kib KiB of its latest run that wrote anything).
    Logs(super::task_logs::TaskLogsArgs),
    /// Set or clear a task function's limits, fleet-wide (its tasks on
    /// every queue).
    Limit(super::queues::LimitArgs),
}

/// Arguments of `task cancel`.
#[derive(Debug, Clone, Args)]
pub struct TaskCancelArgs {
    /// The task id.
    pub id: String,
    /// How long to wait for a running task's supervisor to stop it
    /// (`0`: do not wait).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub wait: String,
}

/// Arguments of `task show`.
#[derive(Debug, Clone, Args)]
pub struct TaskShowArgs {
    /// The task id.
    pub id: String,
    /// Print JSON instead.
    #[arg(long)]
    pub json: bool,
    /// Print every field whole, however large (by default a field over
    /// 64 KiB is cut, with its full size shown).
    #[arg(long)]
    pub full: bool,
}

/// Largest field value `task show` loads without `--full`.
const SHOW_FIELD_CAP: usize = 64 * 1024;

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
    enqueue_checked(store, args, known_tasks, None, out)
}

/// `enqueue`, with the binary's task functions when it has them: then the
/// name must be registered and the arguments must fit the task's argument
/// type, checked before anything is written.
pub(super) fn enqueue_checked(
    store: &Store,
    args: &EnqueueArgs,
    known_tasks: Option<&[String]>,
    registry: Option<&TaskRegistry>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let names = registry.map(TaskRegistry::names);
    let known_tasks = names.as_deref().or(known_tasks);
    if let Some(known) = known_tasks
        && !known.iter().any(|k| k == &args.task)
    {
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
    let text = super::enqueue_input::read_args(&args.args, store.max_args_bytes())?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        // A bare word is the usual slip: a JSON string needs its quotes,
        // and the shell eats one pair.
        let hint = if text.trim_start().starts_with(|c: char| c.is_alphabetic()) {
            format!(" (a string must be quoted as JSON: '\"{}\"')", text.trim())
        } else {
            String::new()
        };
        anyhow::Error::new(e).context(format!(
            "ARGS_JSON is not valid JSON{hint}; nothing was enqueued"
        ))
    })?;
    if let Some(def) = registry.and_then(|r| r.get(&args.task)) {
        def.check_args(&value).map_err(|reason| {
            anyhow::anyhow!(
                "invalid arguments for task {:?}: {reason}; nothing was enqueued",
                args.task
            )
        })?;
    }
    let mut options = enqueue_options(args)?;
    if let Some(key) = &args.unique {
        options = options.unique(key.as_str());
    }
    let enqueued = store
        .queue(args.queue.as_str())
        .enqueue_with_outcome(&args.task, &value, &options)?;
    if let Enqueued::Existing(id) = &enqueued {
        crate::cli::print_stderr(&format!(
            "task {id} holds uniqueness key {:?} and has not ended: nothing was enqueued",
            args.unique.as_deref().unwrap_or_default()
        ));
    }
    writeln!(out, "{}", enqueued.id())?;
    Ok(())
}

/// The options `--in`, `--at`, `--timeout`, `--retries`, `--expires-in`
/// and `--expires-at` ask for.
fn enqueue_options(args: &EnqueueArgs) -> anyhow::Result<EnqueueOptions> {
    let mut options = EnqueueOptions::new();
    if let Some(text) = &args.delay {
        options = options.delay(Duration::from_secs(parse_duration(text).context("--in")?));
    }
    if let Some(text) = &args.at {
        let at: jiff::Timestamp = text.parse().with_context(|| {
            format!("--at {text:?}: not an RFC 3339 time such as 2026-12-01T08:00:00Z")
        })?;
        options = options.at(at);
    }
    if let Some(text) = &args.expires_in {
        let secs = parse_duration(text).context("--expires-in")?;
        anyhow::ensure!(secs > 0, "--expires-in must be above zero");
        options = options.expires_in(Duration::from_secs(secs));
    }
    if let Some(text) = &args.expires_at {
        let at: jiff::Timestamp = text.parse().with_context(|| {
            format!("--expires-at {text:?}: not an RFC 3339 time such as 2026-12-01T08:00:00Z")
        })?;
        options = options.expires_at(at);
    }
    if let Some(traceparent) = &args.traceparent {
        options = options.traceparent(traceparent.as_str());
    }
    if let Some(text) = &args.timeout {
        let secs = parse_duration(text).context("--timeout")?;
        anyhow::ensure!(secs > 0, "--timeout must be above zero");
        options = options.timeout(Duration::from_secs(secs));
    }
    if let Some(n) = args.retries {
        options = options.retry(RetryPolicy::new(n));
    }
    Ok(options)
}

pub(super) fn run(store: &Store, cmd: TaskCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        TaskAction::Show(args) => {
            let preview = if args.full {
                TaskPreview {
                    record: store.task(&args.id)?,
                    clipped: Vec::new(),
                }
            } else {
                store.task_preview(&args.id, SHOW_FIELD_CAP)?
            };
            if args.json {
                writeln!(out, "{}", preview_json(&preview))?;
            } else {
                show(&preview, out)?;
                if preview.clip("progress").is_none()
                    && let Some(progress) = store.progress(&args.id)?
                {
                    writeln!(out, "progress:     {progress}")?;
                }
            }
        }
        TaskAction::Cancel(args) => cancel(store, &args, out)?,
        TaskAction::Result(args) => super::results::run(store, &args, out)?,
        TaskAction::Logs(args) => super::task_logs::run(store, &args, out)?,
        TaskAction::Limit(args) => {
            super::queues::limit("task", &args, out, |l| store.limit_task(&args.name, l))?
        }
    }
    Ok(())
}

/// `task cancel`: a queued or scheduled task is canceled at once; for a
/// running one the request goes to its supervisor and this waits (up to
/// `--wait`) until the task is recorded as ended. A task that has ended
/// already is an error that says so, with nothing changed.
fn cancel(store: &Store, args: &TaskCancelArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let wait = Duration::from_secs(parse_duration(&args.wait).context("--wait")?);
    let result = match store.cancel_task(&args.id) {
        Ok(result) => result,
        Err(StoreError::NotQueued { id, status }) if is_ended(status) => {
            anyhow::bail!("task {id} has already ended ({status}); nothing changed")
        }
        Err(e) => return Err(e.into()),
    };
    if result == CancelResult::Canceled {
        writeln!(out, "canceled task {}", args.id)?;
        return Ok(());
    }
    let deadline = Instant::now() + wait;
    loop {
        // Only the status matters: fields cut small.
        let rec = store.task_preview(&args.id, 1024)?.record;
        if is_ended(rec.status) {
            if rec.status == TaskStatus::Canceled {
                writeln!(out, "canceled running task {}", args.id)?;
                return Ok(());
            }
            anyhow::bail!(
                "task {} ended ({}) before its supervisor could cancel it",
                args.id,
                rec.status
            );
        }
        if Instant::now() >= deadline {
            writeln!(
                out,
                "cancel of running task {} requested; its supervisor has not stopped it yet",
                args.id
            )?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_ended(status: TaskStatus) -> bool {
    matches!(
        status,
        TaskStatus::Finished | TaskStatus::Failed | TaskStatus::Canceled | TaskStatus::Expired
    )
}

/// A task record as JSON: `id, task, args, status, queue, description,
/// error, enqueued_at, started_at, ended_at, meta, aborted_runs, timeout,
/// retry, run_at, attempts, result, unique, expires_at`, times as RFC 3339 UTC and
/// absent values as `null`.
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
        "timeout": rec.timeout,
        "retry": rec.retry,
        "run_at": time(rec.run_at),
        "attempts": rec.attempts.iter().map(|a| json!({
            "started_at": time(a.started_at),
            "ended_at": a.ended_at.to_string(),
            "status": a.status.as_str(),
            "error": a.error,
            "next_attempt_at": time(a.next_attempt_at),
        })).collect::<Vec<_>>(),
        "result": rec.result,
        "unique": rec.unique,
        "expires_at": time(rec.expires_at),
    })
}

/// [`task_json`] of a record read cut, with `"clipped": {field: {"size":
/// bytes, "head": first bytes}}` for each field cut short (a cut JSON field
/// holds its stand-in: `null` arguments, no result, empty meta).
pub fn preview_json(preview: &TaskPreview) -> Value {
    let mut value = task_json(&preview.record);
    if !preview.clipped.is_empty()
        && let Value::Object(map) = &mut value
    {
        let clipped: serde_json::Map<String, Value> = preview
            .clipped
            .iter()
            .map(|c| (c.field.clone(), json!({"size": c.size, "head": c.head})))
            .collect();
        map.insert("clipped".to_owned(), Value::Object(clipped));
    }
    value
}

/// A field's value as `task show` prints it: the whole, or the first bytes
/// and the full size.
fn shown(preview: &TaskPreview, field: &str, whole: impl std::fmt::Display) -> String {
    match preview.clip(field) {
        Some(c) => format!(
            "{}… (cut: {} bytes in all; `task show --full` prints everything)",
            c.head, c.size
        ),
        None => whole.to_string(),
    }
}

fn show(preview: &TaskPreview, out: &mut dyn Write) -> anyhow::Result<()> {
    let rec = &preview.record;
    let time = |t: Option<jiff::Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    writeln!(out, "id:           {}", rec.id)?;
    writeln!(out, "task:         {}", rec.task)?;
    writeln!(
        out,
        "description:  {}",
        shown(preview, "description", &rec.description)
    )?;
    writeln!(out, "status:       {}", rec.status)?;
    writeln!(out, "queue:        {}", rec.queue)?;
    writeln!(out, "enqueued at:  {}", rec.enqueued_at)?;
    writeln!(out, "started at:   {}", time(rec.started_at))?;
    writeln!(out, "ended at:     {}", time(rec.ended_at))?;
    if let Some(error) = &rec.error {
        writeln!(out, "error:        {}", shown(preview, "error", error))?;
    }
    if preview.clip("result").is_some() {
        writeln!(out, "result:       {}", shown(preview, "result", ""))?;
    } else if let Some(result) = &rec.result {
        writeln!(out, "result:       {result}")?;
    }
    if let Some(unique) = &rec.unique {
        writeln!(out, "unique key:   {unique}")?;
    }
    writeln!(out, "args:         {}", shown(preview, "args", &rec.args))?;
    writeln!(
        out,
        "meta:         {}",
        shown(preview, "meta", Value::Object(rec.meta.clone()))
    )?;
    if let Some(at) = rec.run_at {
        writeln!(out, "due at:       {at}")?;
    }
    if let Some(at) = rec.expires_at {
        writeln!(out, "expires at:   {at}")?;
    }
    if let Some(secs) = rec.timeout {
        writeln!(out, "timeout:      {secs} s")?;
    }
    if let Some(retry) = &rec.retry {
        writeln!(out, "retry:        {retry}")?;
    }
    if !rec.attempts.is_empty() {
        writeln!(out, "attempts:")?;
        for (n, a) in rec.attempts.iter().enumerate() {
            let ending = match &a.error {
                Some(e) => format!("{}: {e}", a.status),
                None => a.status.to_string(),
            };
            let next = a
                .next_attempt_at
                .map(|t| format!("; next attempt at {t}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {}. {} .. {}: {ending}{next}",
                n + 1,
                time(a.started_at),
                a.ended_at
            )?;
        }
    }
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
