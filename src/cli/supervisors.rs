//! `supervisor list|quiet|stop|scale`: the running supervisors as they
//! report themselves in Redis, and commands to them through Redis (each
//! acted on as the matching signal: SIGTSTP, SIGTERM, SIGTTIN/SIGTTOU).

use std::io::Write;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use redis_tasks_store::{MAX_SLOTS, Store, SupervisorCommand, SupervisorState, WorkerInfo};
use serde_json::json;

/// `supervisor ...` subcommands.
#[derive(Debug, Clone, Args)]
pub struct SupervisorCommandArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SupervisorAction,
}

/// The actions of `supervisor`.
#[derive(Debug, Clone, Subcommand)]
pub enum SupervisorAction {
    /// List the running supervisors with their slots and what each runs.
    List(SupervisorListArgs),
    /// Make a supervisor quiet (as SIGTSTP): it fetches no new task;
    /// running ones go on.
    Quiet(SupervisorIdArgs),
    /// Stop a supervisor gracefully (as SIGTERM): running tasks get the
    /// drain period to finish, then it exits.
    Stop(SupervisorIdArgs),
    /// Run N slots on a supervisor (as that many SIGTTIN or SIGTTOU).
    Scale(SupervisorScaleArgs),
}

/// Arguments of `supervisor list`.
#[derive(Debug, Clone, Args)]
pub struct SupervisorListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The supervisor a command is for.
#[derive(Debug, Clone, Args)]
pub struct SupervisorIdArgs {
    /// The supervisor's id, as `supervisor list` and the dashboard show it
    /// (a unique prefix of it is enough).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Arguments of `supervisor scale`.
#[derive(Debug, Clone, Args)]
pub struct SupervisorScaleArgs {
    /// The supervisor's id (or a unique prefix of it).
    #[arg(value_name = "ID")]
    pub id: String,
    /// How many slots it should run.
    #[arg(value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_SLOTS))]
    pub slots: u64,
}

pub(super) fn run(
    store: &Store,
    cmd: SupervisorCommandArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (id, command) = match cmd.action {
        SupervisorAction::List(args) => return list(store, &args, out),
        SupervisorAction::Quiet(args) => (args.id, SupervisorCommand::Quiet),
        SupervisorAction::Stop(args) => (args.id, SupervisorCommand::Stop),
        SupervisorAction::Scale(args) => (args.id, SupervisorCommand::Scale(args.slots)),
    };
    let supervisors = store.supervisors()?;
    let target = resolve(&supervisors, &id)?;
    store.send_supervisor_command(&target.id, command)?;
    let what = match command {
        SupervisorCommand::Quiet => "quiet: it fetches no new task, running ones go on".to_owned(),
        SupervisorCommand::Stop => {
            "stop: it stops fetching, lets running tasks drain, then exits".to_owned()
        }
        SupervisorCommand::Scale(n) => format!("scale to {n} slot(s)"),
    };
    writeln!(
        out,
        "sent to supervisor {} ({}): {what}",
        target.id, target.description
    )?;
    Ok(())
}

/// The running supervisor `id` names: its whole id or a unique prefix.
pub(crate) fn resolve<'a>(
    supervisors: &'a [SupervisorState],
    id: &str,
) -> anyhow::Result<&'a SupervisorState> {
    if let Some(exact) = supervisors.iter().find(|s| s.id == id) {
        return Ok(exact);
    }
    let matching: Vec<&SupervisorState> = if id.is_empty() {
        Vec::new()
    } else {
        supervisors
            .iter()
            .filter(|s| s.id.starts_with(id))
            .collect()
    };
    match matching.as_slice() {
        [one] => Ok(one),
        [] if supervisors.is_empty() => {
            anyhow::bail!("no running supervisor has id {id:?}: no supervisor is running")
        }
        [] => anyhow::bail!(
            "no running supervisor has id {id:?} (see `redis-tasks supervisor list`; running: {})",
            supervisors
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        many => anyhow::bail!(
            "{id:?} names {} supervisors; give more of the id",
            many.len()
        ),
    }
}

fn list(store: &Store, args: &SupervisorListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let supervisors = store.supervisors()?;
    let workers = store.worker_infos()?;
    let now = Timestamp::now();
    let mut rows = Vec::new();
    for s in &supervisors {
        let mut slots = Vec::new();
        for w in workers
            .iter()
            .filter(|w| w.supervisor == s.id && w.state != "dead")
        {
            let task = match &w.current_task {
                Some(id) => store.task(id).ok().map(|r| (id.clone(), r)),
                None => None,
            };
            slots.push((w, task));
        }
        rows.push((s, slots));
    }
    if args.json {
        let value: Vec<_> = rows
            .iter()
            .map(|(s, slots)| {
                json!({
                    "id": s.id,
                    "description": s.description,
                    "host": s.host,
                    "pid": s.pid,
                    "version": s.version,
                    "mode": s.mode,
                    "queues": s.queues,
                    "started_at": s.started_at.to_string(),
                    "uptime_secs": now.duration_since(s.started_at).as_secs().max(0),
                    "reported_at": s.reported_at.to_string(),
                    "wanted_slots": s.wanted_slots,
                    "slots": s.slots,
                    "busy": s.busy,
                    "rss_bytes": s.rss_bytes,
                    "workers_rss_bytes": s.workers_rss_bytes,
                    "slot_list": slots.iter().map(|(w, task)| slot_json(w, task.as_ref(), now)).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(value))?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "no supervisor is running")?;
        return Ok(());
    }
    for (s, slots) in &rows {
        writeln!(
            out,
            "{}  {}  {}  up {}  {}/{} slot(s) busy, {} wanted  rss {}  {}",
            s.id,
            s.description,
            s.mode,
            human_secs(now.duration_since(s.started_at).as_secs()),
            s.busy,
            s.slots,
            s.wanted_slots,
            human_bytes(s.rss_bytes.unwrap_or(0) + s.workers_rss_bytes.unwrap_or(0)),
            s.version
        )?;
        for (w, task) in slots {
            match (&w.current_task, task) {
                (Some(_), Some((id, r))) => writeln!(
                    out,
                    "  {}  busy {}  {} [{id}]",
                    w.id,
                    r.started_at
                        .map(|t| human_secs(now.duration_since(t).as_secs()))
                        .unwrap_or_else(|| "-".to_owned()),
                    r.description
                )?,
                (Some(id), None) => writeln!(out, "  {}  busy  [{id}]", w.id)?,
                (None, _) => writeln!(out, "  {}  idle", w.id)?,
            }
        }
    }
    Ok(())
}

fn slot_json(
    w: &WorkerInfo,
    task: Option<&(String, redis_tasks_protocol::TaskRecord)>,
    now: Timestamp,
) -> serde_json::Value {
    json!({
        "id": w.id,
        "state": w.state,
        "queues": w.queues,
        "task": task.map(|(id, r)| json!({
            "id": id,
            "description": r.description,
            "started_at": r.started_at.map(|t| t.to_string()),
            "running_secs": r.started_at.map(|t| now.duration_since(t).as_secs().max(0)),
        })),
    })
}

/// `3 d 4 h`, `2 h 5 min`, `4 min 2 s`, `12 s`.
pub(crate) fn human_secs(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3_600 => format!("{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// Bytes in MiB with one decimal.
pub(crate) fn human_bytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
