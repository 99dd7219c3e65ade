//! `task result ID [--wait 30s] [--json]`: a task's return value, waited
//! for without polling (see `Store::wait_for_end`).

use std::io::Write;
use std::time::Duration;

use clap::Args;
use redis_tasks_protocol::{TaskRecord, TaskStatus};
use redis_tasks_store::Store;
use serde_json::json;

/// Arguments of `task result`.
#[derive(Debug, Clone, Args)]
pub struct TaskResultArgs {
    /// The task id.
    pub id: String,
    /// Wait up to this long for the task to end (`30s`, `5m`, `1h30m`, or
    /// seconds); without it, answer at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Option<Duration>,
    /// Print `{"id", "status", "result", "error"}` as JSON, whatever the
    /// status (the exit status still says whether it finished).
    #[arg(long)]
    pub json: bool,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    redis_tasks_config::schedule::parse_duration(text)
        .map(Duration::from_secs)
        .map_err(|e| e.to_string())
}

/// Prints the result of a finished task (JSON text, `null` when it
/// returned nothing); any other state is an error saying which.
pub(super) fn run(store: &Store, args: &TaskResultArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let record = match args.wait {
        Some(wait) => store.wait_for_end(&args.id, wait)?,
        None => Some(store.task(&args.id)?),
    };
    let record = match record {
        Some(record) => record,
        // Timed out: show where it is now.
        None => store.task(&args.id)?,
    };
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "id": record.id,
                "status": record.status.as_str(),
                "result": record.result,
                "error": record.error,
            })
        )?;
    }
    match record.status {
        TaskStatus::Finished => {
            if !args.json {
                let text = record
                    .result
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), ToString::to_string);
                writeln!(out, "{text}")?;
            }
            Ok(())
        }
        _ => Err(not_finished(&record, args.wait)),
    }
}

fn not_finished(record: &TaskRecord, wait: Option<Duration>) -> anyhow::Error {
    let id = &record.id;
    match record.status {
        TaskStatus::Failed => anyhow::anyhow!(
            "task {id} failed: {}",
            record.error.as_deref().unwrap_or("(no error text)")
        ),
        TaskStatus::Canceled => anyhow::anyhow!("task {id} was canceled: it has no result"),
        TaskStatus::Expired => anyhow::anyhow!(
            "task {id} expired: {}",
            record
                .error
                .as_deref()
                .unwrap_or("its expiry passed before it started; it has no result")
        ),
        status => match wait {
            Some(wait) => anyhow::anyhow!(
                "task {id} did not end within {} s (it is {status})",
                wait.as_secs()
            ),
            None => anyhow::anyhow!(
                "task {id} is {status}: no result yet (use --wait DURATION to wait for it)"
            ),
        },
    }
}
