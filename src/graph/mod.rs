//! Task graphs: tasks with "A before B" dependencies, enqueued together and
//! moved on as their nodes end, by the same Redis step that records each
//! node's end.
//!
//! ```no_run
//! use redis_tasks::{Graph, Store};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("redis://127.0.0.1:6379", "redis_tasks")?;
//! let graph = Graph::new()
//!     .node("fetch", "fetch_prices", json!({"day": "2026-11-25"}))
//!     .node("report", "send_report", json!([42]))
//!     .node("archive", "archive_prices", json!(null))
//!     .edge("fetch", "report")
//!     .edge("fetch", "archive")
//!     .enqueue(&store)?;
//! println!("graph {}", graph.id);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - this file: the [`Graph`] builder.
//! - `middleware`: [`GraphMiddleware`], which announces that the
//!   supervisor runs graphs (and moves on graphs enqueued by versions
//!   whose records did not name their graph).
//!
//! The Redis side (the graph hash, the scripts) is
//! `redis_tasks_store` (`graph.rs`); `docs/graphs.md` is the
//! user's guide.

mod middleware;

use std::time::Duration;

use redis_tasks_store::Store;
use redis_tasks_store::{DEFAULT_REGISTRY_TTL_SECS, GraphPlan, PlannedNode};
use serde::Serialize;

pub use middleware::GraphMiddleware;
pub use redis_tasks_store::{FailurePolicy, GraphError, GraphState, NodeState, NodeStatus};

/// The queue nodes go to unless [`Graph::queue`] or [`Graph::node_on`]
/// says otherwise.
pub const DEFAULT_GRAPH_QUEUE: &str = "default";

/// A task graph being built: named nodes (each one task call) and edges
/// "this node before that one".
///
/// Mistakes (an edge to an unknown node, a cycle, arguments that do not
/// serialise) are reported by [`Graph::enqueue`], so the builder chains.
#[derive(Debug, Clone)]
pub struct Graph {
    id: Option<String>,
    queue: String,
    nodes: Vec<BuiltNode>,
    on_failure: FailurePolicy,
    ttl: Duration,
    error: Option<String>,
}

#[derive(Debug, Clone)]
struct BuiltNode {
    name: String,
    task: String,
    args: serde_json::Value,
    queue: Option<String>,
    after: Vec<String>,
    inputs: bool,
    fan_in: bool,
}

/// A graph that was enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedGraph {
    /// The graph id (for `graph show ID`).
    pub id: String,
    /// Task ids of the nodes enqueued at once (those that wait for none).
    pub started: Vec<String>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

impl Graph {
    /// An empty graph with a fresh id, nodes going to the `default` queue,
    /// dependents of a failed node canceled, kept for 7 days after its
    /// last change.
    pub fn new() -> Self {
        Graph {
            id: None,
            queue: DEFAULT_GRAPH_QUEUE.to_owned(),
            nodes: Vec::new(),
            on_failure: FailurePolicy::Cancel,
            ttl: Duration::from_secs(DEFAULT_REGISTRY_TTL_SECS),
            error: None,
        }
    }

    /// Uses `id` as the graph id instead of a fresh UUID (it must not
    /// exist yet).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The queue of every node that does not name its own.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// What happens to the dependents of a failed node (default
    /// [`FailurePolicy::Cancel`]).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }

    /// How long the graph is kept in Redis after its last change.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Adds node `name`: a call of `task` with `args` (stored as JSON).
    pub fn node<A: Serialize>(self, name: &str, task: &str, args: A) -> Self {
        self.add(name, task, args, None)
    }

    /// Adds node `name` that goes to `queue`.
    pub fn node_on<A: Serialize>(self, queue: &str, name: &str, task: &str, args: A) -> Self {
        self.add(name, task, args, Some(queue.to_owned()))
    }

    fn add<A: Serialize>(mut self, name: &str, task: &str, args: A, queue: Option<String>) -> Self {
        let args = match serde_json::to_value(args) {
            Ok(v) => v,
            Err(e) => {
                self.error
                    .get_or_insert(format!("arguments of node {name:?}: {e}"));
                serde_json::Value::Null
            }
        };
        self.nodes.push(BuiltNode {
            name: name.to_owned(),
            task: task.to_owned(),
            args,
            queue,
            after: Vec::new(),
            inputs: false,
            fan_in: false,
        });
        self
    }

    /// Node `node` receives its parents' outcomes: when it is enqueued, its
    /// arguments (a JSON object) get the key `parents`, one entry per
    /// parent node: `{"status": "finished" | "failed" | "canceled",
    /// "result": <its return value or null>, "error": <text or null>}`.
    pub fn pass_results(self, node: &str) -> Self {
        self.flag(node, "pass_results", |n| n.inputs = true)
    }

    /// Node `node` gathers: it runs once every parent ended, whatever
    /// their outcome (the `cancel` policy does not cancel it, nor does a
    /// canceled ancestor), with their outcomes as in
    /// [`pass_results`](Graph::pass_results).
    pub fn fan_in(self, node: &str) -> Self {
        self.flag(node, "fan_in", |n| n.fan_in = true)
    }

    fn flag(mut self, node: &str, what: &str, set: impl FnOnce(&mut BuiltNode)) -> Self {
        match self.nodes.iter_mut().find(|n| n.name == node) {
            Some(n) => set(n),
            None => {
                self.error.get_or_insert(format!(
                    "{what}({node:?}): no node {node:?} (add nodes first)"
                ));
            }
        }
        self
    }

    /// Adds the edge "`before` ends before `after` is enqueued". Both
    /// nodes may be added later.
    pub fn edge(mut self, before: &str, after: &str) -> Self {
        match self.nodes.iter_mut().find(|n| n.name == after) {
            Some(node) => node.after.push(before.to_owned()),
            None => {
                self.error.get_or_insert(format!(
                    "edge {before:?} -> {after:?}: no node {after:?} (add nodes before their edges)"
                ));
            }
        }
        self
    }

    /// Adds edges between consecutive names: `chain(["a", "b", "c"])` is
    /// `edge("a", "b").edge("b", "c")`.
    pub fn chain<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names: Vec<String> = names.into_iter().map(|s| s.as_ref().to_owned()).collect();
        for pair in names.windows(2) {
            self = self.edge(&pair[0], &pair[1]);
        }
        self
    }

    /// The graph as stored: checked, with every node's queue resolved.
    pub fn plan(&self) -> Result<GraphPlan, GraphError> {
        if let Some(e) = &self.error {
            return Err(GraphError::Invalid(e.clone()));
        }
        let plan = GraphPlan {
            id: self
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string()),
            nodes: self
                .nodes
                .iter()
                .map(|n| PlannedNode {
                    name: n.name.clone(),
                    task: n.task.clone(),
                    args: n.args.clone(),
                    queue: n.queue.clone().unwrap_or_else(|| self.queue.clone()),
                    after: n.after.clone(),
                    inputs: n.inputs,
                    fan_in: n.fan_in,
                })
                .collect(),
            on_failure: self.on_failure,
            ttl: self.ttl,
        };
        plan.check()?;
        Ok(plan)
    }

    /// Checks the graph, stores it and enqueues the nodes that wait for
    /// none, in one atomic step.
    ///
    /// Refused with [`GraphError::MiddlewareMissing`] when no supervisor
    /// running [`GraphMiddleware`] has announced itself on this Redis
    /// prefix (see `docs/graphs.md`), since nothing would enqueue the rest.
    pub fn enqueue(&self, store: &Store) -> Result<EnqueuedGraph, GraphError> {
        let plan = self.plan()?;
        let started = store.enqueue_graph(&plan)?;
        Ok(EnqueuedGraph {
            id: plan.id,
            started,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_links_consecutive_nodes_and_mistakes_surface_at_plan_time() {
        let g = Graph::new()
            .node("a", "t", 1)
            .node_on("slow", "b", "t", [2, 3])
            .node("c", "t", ())
            .chain(["a", "b", "c"]);
        let plan = g.plan().expect("plan");
        let after: Vec<_> = plan.nodes.iter().map(|n| n.after.clone()).collect();
        assert_eq!(after, [vec![], vec!["a".to_owned()], vec!["b".to_owned()]]);
        assert_eq!(plan.nodes[1].queue, "slow");
        assert_eq!(plan.nodes[0].queue, "default");

        let e = Graph::new()
            .node("a", "t", 1)
            .edge("a", "zz")
            .plan()
            .expect_err("unknown node");
        assert!(e.to_string().contains("no node \"zz\""), "{e}");
        let e = Graph::new()
            .node("a", "t", 1)
            .node("b", "t", 1)
            .chain(["a", "b", "a"])
            .plan()
            .expect_err("cycle");
        assert!(e.to_string().contains("cycle"), "{e}");
    }
}
