//! `graph show ID`: the state of a task graph, node by node.

use std::io::Write;

use clap::{Args, Subcommand};
use redis_tasks_store::GraphState;
use redis_tasks_store::Store;
use serde_json::{Value, json};

/// `graph`: look at task graphs.
#[derive(Debug, Clone, Args)]
pub struct GraphCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: GraphAction,
}

/// The actions of `graph`.
#[derive(Debug, Clone, Subcommand)]
pub enum GraphAction {
    /// Show a graph: its status and each node's state and task id.
    Show(GraphShowArgs),
}

/// Arguments of `graph show`.
#[derive(Debug, Clone, Args)]
pub struct GraphShowArgs {
    /// The graph id.
    pub id: String,
    /// Print JSON instead.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `graph` subcommand.
pub fn run(store: &Store, cmd: GraphCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        GraphAction::Show(args) => {
            let graph = store.graph(&args.id)?;
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&graph_json(&graph))?
                )?;
            } else {
                show(&graph, out)?;
            }
            Ok(())
        }
    }
}

/// The JSON shape `graph show --json` prints.
pub fn graph_json(g: &GraphState) -> Value {
    let time = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string());
    json!({
        "id": g.id,
        "status": g.status,
        "on_failure": g.on_failure,
        "created_at": time(g.created_at),
        "ended_at": time(g.ended_at),
        "nodes": g.nodes.iter().map(|n| json!({
            "name": n.name,
            "status": n.status.as_str(),
            "task": n.task,
            "task_id": n.task_id,
            "queue": n.queue,
            "description": n.description,
            "after": n.after,
            "ended_at": time(n.ended_at),
        })).collect::<Vec<_>>(),
    })
}

fn show(g: &GraphState, out: &mut dyn Write) -> anyhow::Result<()> {
    let time = |t: Option<jiff::Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    writeln!(out, "graph:       {}", g.id)?;
    writeln!(out, "status:      {}", g.status)?;
    writeln!(out, "on failure:  {}", g.on_failure)?;
    writeln!(out, "created at:  {}", time(g.created_at))?;
    writeln!(out, "ended at:    {}", time(g.ended_at))?;
    let width = g
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<width$}  {:<8}  {:<36}  {:<16}  after",
        "node", "status", "task id", "task"
    )?;
    for n in &g.nodes {
        let after = if n.after.is_empty() {
            "-".to_owned()
        } else {
            n.after.join(", ")
        };
        writeln!(
            out,
            "{:<width$}  {:<8}  {:<36}  {:<16}  {after}",
            n.name,
            n.status.as_str(),
            n.task_id,
            n.description
        )?;
    }
    Ok(())
}
