//! `info`: an overview of queues (with a bar chart of their lengths),
//! workers and the finished/failed/expired registries, once or every few seconds.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use redis_tasks_store::Store;
use redis_tasks_store::WorkerInfo;
use serde_json::json;

use super::style::Style;

/// Width of the longest bar of the queue chart.
const BAR_WIDTH: u64 = 50;

/// Arguments of `info`.
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// Only these queues (and the workers that listen on them).
    #[arg(value_name = "QUEUE")]
    pub queues: Vec<String>,
    /// List workers under each queue they listen on.
    #[arg(long)]
    pub by_queue: bool,
    /// Repeat every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<f64>,
    /// Print JSON instead (one object per line with --interval).
    #[arg(long)]
    pub json: bool,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// What one `info` shows.
struct Snapshot {
    queues: Vec<(String, u64)>,
    /// The queues paused by `queue pause`.
    paused: Vec<String>,
    workers: Vec<WorkerInfo>,
    finished: u64,
    failed: u64,
    /// Tasks waiting in the delayed set (delayed enqueues and retries).
    scheduled: u64,
    /// Tasks canceled so far (a counter: it outlives the registry's
    /// trimming).
    canceled: u64,
    /// Tasks in the canceled registry (`--json` only: the text keeps its
    /// lines).
    canceled_registry: u64,
    /// Tasks in the expired registry (never run).
    expired: u64,
}

pub(super) fn run(store: &Store, args: &InfoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let style = Style::detect();
    loop {
        let snap = collect(store, args)?;
        if args.json {
            writeln!(out, "{}", to_json(&snap))?;
        } else {
            if args.interval.is_some() && style.is_colour() {
                // Clear the screen between refreshes on a terminal.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            render(&snap, args.by_queue, style, out)?;
        }
        out.flush()?;
        match args.interval {
            Some(secs) => std::thread::sleep(Duration::from_secs_f64(secs)),
            None => return Ok(()),
        }
    }
}

fn collect(store: &Store, args: &InfoArgs) -> anyhow::Result<Snapshot> {
    let names = if args.queues.is_empty() {
        store.queues()?
    } else {
        args.queues.clone()
    };
    let mut queues = Vec::with_capacity(names.len());
    let mut paused = Vec::new();
    for name in names {
        let count = store.queue(name.as_str()).count()?;
        if store.queue_flow(&name)?.paused {
            paused.push(name.clone());
        }
        queues.push((name, count));
    }
    let mut workers = store.worker_infos()?;
    if !args.queues.is_empty() {
        workers.retain(|w| w.queues.iter().any(|q| args.queues.contains(q)));
    }
    Ok(Snapshot {
        queues,
        paused,
        workers,
        finished: store.finished().count()?,
        failed: store.failed().count()?,
        scheduled: store.scheduled_count()?,
        canceled: store.canceled_count()?,
        canceled_registry: store.canceled().count()?,
        expired: store.expired().count()?,
    })
}

fn to_json(s: &Snapshot) -> serde_json::Value {
    json!({
        "queues": s.queues.iter().map(|(name, count)| {
            // `paused` only where true: the documented shape stays as it was.
            let mut q = json!({"name": name, "count": count});
            if s.paused.contains(name) {
                q["paused"] = json!(true);
            }
            q
        }).collect::<Vec<_>>(),
        "workers": s.workers.iter().map(|w| json!({
            "id": w.id,
            "description": w.description,
            "state": w.state,
            "queues": w.queues,
            "current_task": w.current_task,
        })).collect::<Vec<_>>(),
        "finished": s.finished,
        "failed": s.failed,
        "scheduled": s.scheduled,
        "canceled": s.canceled,
        "canceled_registry": s.canceled_registry,
        "expired": s.expired,
    })
}

fn render(s: &Snapshot, by_queue: bool, style: Style, out: &mut dyn Write) -> anyhow::Result<()> {
    let width = s
        .queues
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let max = s.queues.iter().map(|(_, c)| *c).max().unwrap_or(0);
    for (name, count) in &s.queues {
        let len = if max == 0 {
            0
        } else {
            (count * BAR_WIDTH).div_ceil(max)
        };
        let bar = "█".repeat(usize::try_from(len).unwrap_or(0));
        let bar = match count {
            0 => bar,
            c if *c * 2 <= max => style.green(&bar),
            c if *c < max => style.yellow(&bar),
            _ => style.red(&bar),
        };
        let paused = if s.paused.contains(name) {
            style.yellow(" (paused)")
        } else {
            String::new()
        };
        writeln!(out, "{name:<width$} |{bar} {count}{paused}")?;
    }
    let total: u64 = s.queues.iter().map(|(_, c)| c).sum();
    writeln!(
        out,
        "{} queue{}, {total} task{} total",
        s.queues.len(),
        plural(s.queues.len() as u64),
        plural(total)
    )?;
    writeln!(out)?;
    if by_queue {
        for (name, _) in &s.queues {
            let on: Vec<String> = s
                .workers
                .iter()
                .filter(|w| w.queues.contains(name))
                .map(|w| format!("{} {} ({})", w.description, slot_label(w), state(w, style)))
                .collect();
            let list = if on.is_empty() {
                style.dim("–")
            } else {
                on.join(", ")
            };
            writeln!(out, "{}: {list}", style.bold(name))?;
        }
    } else {
        for w in &s.workers {
            let task = w
                .current_task
                .as_deref()
                .map(|t| format!(" (task {t})"))
                .unwrap_or_default();
            writeln!(
                out,
                "{} {} {}: {}{task}",
                style.bold(&w.description),
                slot_label(w),
                state(w, style),
                w.queues.join(", ")
            )?;
        }
    }
    let mut listened: Vec<&String> = s.workers.iter().flat_map(|w| &w.queues).collect();
    listened.sort();
    listened.dedup();
    writeln!(
        out,
        "{} worker{}, {} queue{}",
        s.workers.len(),
        plural(s.workers.len() as u64),
        listened.len(),
        plural(listened.len() as u64)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "finished: {}, failed: {}, scheduled: {}",
        s.finished,
        if s.failed > 0 {
            style.red(&s.failed.to_string())
        } else {
            s.failed.to_string()
        },
        s.scheduled
    )?;
    writeln!(out, "canceled: {}", s.canceled)?;
    writeln!(out, "expired: {}", s.expired)?;
    Ok(())
}

/// `slot 3`: the slot's number within its supervisor (its id is
/// `<supervisor>-<n>`), or its whole id when it is not of that form.
fn slot_label(w: &WorkerInfo) -> String {
    let number =
        w.id.strip_prefix(w.supervisor.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    match number {
        Some(n) => format!("slot {n}"),
        None => format!("slot {}", w.id),
    }
}

fn state(w: &WorkerInfo, style: Style) -> String {
    match w.state.as_str() {
        "idle" => style.green("idle"),
        "busy" => style.yellow("busy"),
        other => other.to_owned(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
