//! Task graphs in Redis: a graph's nodes and their states in one hash with
//! an expiry, enqueueing its first nodes, and moving it on when a node ends.
//!
//! Each step is one Lua script, so two nodes ending at once on two
//! supervisors cannot both enqueue (or both miss) their common dependent:
//! the script that sees the last predecessor end enqueues it, exactly once.
//!
//! A node's task record carries `{"rt_graph": {"id": ..., "node": ...}}` in
//! its `meta`, which is how the graph middleware finds the graph of a task
//! that ended. Enqueueing a graph is refused unless a supervisor running the
//! graph middleware has announced itself recently (the marker
//! `P:graph_middleware`, see [`Store::mark_graph_middleware`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use redis::Value;
use serde::Serialize;

use super::record::{hash_from_value, text_of, time_text};
use super::schedule::{next_text, unexpected};
use super::{Store, StoreError, scripts};
use crate::part::Part;

/// The `meta` key under which a node's task record names its graph.
pub const GRAPH_META_KEY: &str = "rt_graph";

/// What happens to the dependents of a node that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// They are not run; they (and their own dependents) are recorded as
    /// canceled in the graph.
    #[default]
    Cancel,
    /// A failed node counts as ended like a finished one: dependents run
    /// anyway (the original library's behaviour).
    RunAnyway,
}

impl FailurePolicy {
    /// The word stored in the graph hash.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Cancel => "cancel",
            FailurePolicy::RunAnyway => "run",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of a graph to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedNode {
    /// The node's name, unique in its graph.
    pub name: String,
    /// The task function to run.
    pub task: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// The queue it is enqueued to when its turn comes.
    pub queue: String,
    /// Names of the nodes that must end before this one is enqueued.
    pub after: Vec<String>,
    /// Its arguments (a JSON object) get a `parents` key: each parent's
    /// status, result and error when this node is enqueued.
    pub inputs: bool,
    /// It runs once every parent ended, whatever their outcome (the
    /// `cancel` policy does not cancel it); implies `inputs`.
    pub fan_in: bool,
}

/// A whole graph to enqueue (built by the facade's `Graph` builder).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphPlan {
    /// The graph id (a UUID unless chosen).
    pub id: String,
    /// The nodes in the order they were added.
    pub nodes: Vec<PlannedNode>,
    /// What happens to the dependents of a failed node.
    pub on_failure: FailurePolicy,
    /// How long the graph is kept after its last change.
    pub ttl: Duration,
}

/// Why a graph cannot be enqueued.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The graph itself is wrong (no nodes, a cycle, an unknown name...).
    #[error("invalid task graph: {0}")]
    Invalid(String),
    /// No supervisor running the graph middleware has announced itself, so
    /// nothing would move the graph on after its first nodes.
    #[error(
        "no supervisor runs the graph middleware (add redis_tasks::GraphMiddleware to your App); the graph was not enqueued"
    )]
    MiddlewareMissing,
    /// A graph with this id exists already.
    #[error("a task graph with id {0} exists already")]
    Exists(String),
    /// No graph with this id exists (or it expired).
    #[error("task graph {0} not found (graphs expire after their ttl)")]
    NotFound(String),
    /// Redis failed, or a node's task or arguments were refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a node of a graph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Some predecessor has not ended yet.
    Waiting,
    /// Its task was enqueued (it may be running).
    Queued,
    /// Its task finished.
    Finished,
    /// Its task failed.
    Failed,
    /// It will not run: a predecessor failed (policy `cancel`).
    Canceled,
}

impl NodeStatus {
    /// The word stored in the graph hash and shown by `graph show`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Waiting => "waiting",
            NodeStatus::Queued => "queued",
            NodeStatus::Finished => "finished",
            NodeStatus::Failed => "failed",
            NodeStatus::Canceled => "canceled",
        }
    }

    fn parse(word: &str) -> Option<NodeStatus> {
        Some(match word {
            "waiting" => NodeStatus::Waiting,
            "queued" => NodeStatus::Queued,
            "finished" => NodeStatus::Finished,
            "failed" => NodeStatus::Failed,
            "canceled" => NodeStatus::Canceled,
            _ => return None,
        })
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of a stored graph.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    /// The node's name.
    pub name: String,
    /// The task function.
    pub task: String,
    /// The task id its run has (or will have).
    pub task_id: String,
    /// The queue it goes to.
    pub queue: String,
    /// The readable call string.
    pub description: String,
    /// Where it is.
    pub status: NodeStatus,
    /// The nodes it waits for.
    pub after: Vec<String>,
    /// When it ended (finished, failed or canceled).
    pub ended_at: Option<Timestamp>,
}

/// A stored graph, as `graph show` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphState {
    /// The graph id.
    pub id: String,
    /// `running`, `finished` (every node finished) or `failed` (some node
    /// failed; every node has ended).
    pub status: String,
    /// The failure policy.
    pub on_failure: String,
    /// When it was enqueued.
    pub created_at: Option<Timestamp>,
    /// When its last node ended.
    pub ended_at: Option<Timestamp>,
    /// Its nodes, in the order they were added.
    pub nodes: Vec<NodeState>,
}

/// What [`Store::graph_node_ended`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The graph is gone (expired or deleted).
    Gone,
    /// The graph's node has another task id (not this task's graph).
    Stale,
    /// The node had ended already (its outcome was seen before); nothing
    /// changed. Holds its state word.
    AlreadyEnded(String),
    /// The node's end was recorded.
    Advanced {
        /// The graph's status after this step.
        status: String,
        /// Nodes enqueued now.
        enqueued: Vec<String>,
        /// Nodes canceled now.
        canceled: Vec<String>,
    },
}

/// The node spec kept in the graph hash (`node:<name>`), read by the
/// scripts with `cjson`.
#[derive(Serialize)]
struct StoredSpec<'a> {
    task: &'a str,
    args: &'a str,
    queue: &'a str,
    description: &'a str,
    meta: String,
    after: &'a [String],
    before: Vec<&'a str>,
    /// The graph id, written into the node's task record (`graph`) so
    /// that the scripts recording its end move the graph on.
    graph: &'a str,
    inputs: bool,
    fan_in: bool,
}

impl GraphPlan {
    /// Checks the plan: at least one node, unique non-empty names without
    /// whitespace, edges between known nodes, no node after itself, no
    /// cycle, a ttl of at least one second.
    pub fn check(&self) -> Result<(), GraphError> {
        let bad = |s: String| Err(GraphError::Invalid(s));
        if self.nodes.is_empty() {
            return bad("it has no nodes".to_owned());
        }
        if self.ttl.as_secs() == 0 {
            return bad("its ttl must be at least one second".to_owned());
        }
        if self.id.is_empty() || self.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad(format!("graph id {:?} is empty or has whitespace", self.id));
        }
        let mut names = BTreeSet::new();
        for n in &self.nodes {
            if n.name.is_empty() || n.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad(format!("node name {:?} is empty or has whitespace", n.name));
            }
            if !names.insert(n.name.as_str()) {
                return bad(format!("node {:?} is added twice", n.name));
            }
        }
        for n in &self.nodes {
            for a in &n.after {
                if !names.contains(a.as_str()) {
                    return bad(format!("edge {a:?} -> {:?}: no node {a:?}", n.name));
                }
                if a == &n.name {
                    return bad(format!("node {:?} cannot come after itself", n.name));
                }
            }
        }
        for n in &self.nodes {
            let takes_outcomes = n
                .args
                .as_object()
                .is_some_and(|o| !o.contains_key("parents"));
            if (n.inputs || n.fan_in) && !takes_outcomes {
                return bad(format!(
                    "node {:?} receives its parents' outcomes under the key \"parents\" of its arguments, which must be a JSON object without that key",
                    n.name
                ));
            }
        }
        if let Some(node) = self.cycle_member() {
            return bad(format!("it has a cycle through node {node:?}"));
        }
        Ok(())
    }

    /// A node on a cycle, if there is one (Kahn's algorithm: whatever is
    /// left once every node without pending predecessors is removed).
    fn cycle_member(&self) -> Option<&str> {
        let mut left: HashMap<&str, usize> = self
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), distinct(&n.after).len()))
            .collect();
        let succ = self.successors();
        let mut ready: Vec<&str> = left
            .iter()
            .filter(|(_, l)| **l == 0)
            .map(|(n, _)| *n)
            .collect();
        while let Some(n) = ready.pop() {
            for s in succ.get(n).into_iter().flatten() {
                if let Some(l) = left.get_mut(s) {
                    *l -= 1;
                    if *l == 0 {
                        ready.push(s);
                    }
                }
            }
            left.remove(n);
        }
        self.nodes
            .iter()
            .map(|n| n.name.as_str())
            .find(|n| left.get(n).is_some_and(|l| *l > 0))
    }

    /// Node name -> names of the nodes that come directly after it.
    fn successors(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut succ: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for n in &self.nodes {
            for a in distinct(&n.after) {
                succ.entry(a).or_default().push(n.name.as_str());
            }
        }
        succ
    }
}

/// The distinct names of a list, in first-seen order.
fn distinct(names: &[String]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    names
        .iter()
        .map(String::as_str)
        .filter(|n| seen.insert(*n))
        .collect()
}

impl Store {
    /// Announces that a supervisor runs the graph middleware: sets the
    /// marker `P:graph_middleware` with an expiry of `ttl`. Enqueueing a
    /// graph is refused while the marker is absent. Like every write, it
    /// first claims the schema (see [`Store::claim_schema`]).
    pub fn mark_graph_middleware(&self, ttl: Duration) -> Result<(), StoreError> {
        self.each(|p| p.mark_graph_middleware(ttl)).map(|_| ())
    }

    /// Checks and stores `plan`, and enqueues its nodes that wait for
    /// nothing, in one atomic step; returns their task ids.
    pub fn enqueue_graph(&self, plan: &GraphPlan) -> Result<Vec<String>, GraphError> {
        // A whole graph, nodes on any queue, lives in one partition.
        self.home(&plan.id).enqueue_graph(plan)
    }

    /// Records that node `node` of graph `graph` (task `task_id`) ended,
    /// `failed` or not, and enqueues the dependents whose predecessors have
    /// all ended (or cancels the failed node's waiting descendants, per the
    /// graph's policy), in one atomic step. Seeing the same end twice
    /// changes nothing.
    pub fn graph_node_ended(
        &self,
        graph: &str,
        node: &str,
        task_id: &str,
        failed: bool,
    ) -> Result<Advance, StoreError> {
        self.home(graph)
            .graph_node_ended(graph, node, task_id, failed)
    }

    /// The stored state of graph `id`.
    pub fn graph(&self, id: &str) -> Result<GraphState, GraphError> {
        self.home(id).graph(id)
    }
}

impl Part {
    pub(crate) fn mark_graph_middleware(&self, ttl: Duration) -> Result<(), StoreError> {
        let key = self.keys().graph_middleware();
        let secs = ttl.as_secs().max(1);
        let now = time_text(Timestamp::now());
        self.run(&[], |c, keys| {
            scripts::MARK_GRAPH_MIDDLEWARE
                .key(&key)
                .arg(keys.prefix())
                .arg(now)
                .arg(secs)
                .invoke::<i64>(c)
        })?;
        Ok(())
    }

    pub(crate) fn enqueue_graph(&self, plan: &GraphPlan) -> Result<Vec<String>, GraphError> {
        plan.check()?;
        let ids: Vec<String> = plan
            .nodes
            .iter()
            .map(|_| uuid::Uuid::new_v4().hyphenated().to_string())
            .collect();
        let succ = plan.successors();
        let now = time_text(Timestamp::now());
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut fields: Vec<(String, String)> = vec![
            ("created_at".into(), now.clone()),
            ("status".into(), "running".into()),
            ("on_failure".into(), plan.on_failure.as_str().into()),
            ("ttl".into(), plan.ttl.as_secs().to_string()),
            ("open".into(), plan.nodes.len().to_string()),
            ("failed".into(), "0".into()),
            (
                "nodes".into(),
                serde_json::to_string(&names).map_err(StoreError::Args)?,
            ),
        ];
        for (node, id) in plan.nodes.iter().zip(&ids) {
            crate::producer::check_name("queue", &node.queue)?;
            let call = self.prepare_call(&node.task, &node.args)?;
            // `durable`: the end scripts move the graph on (not the
            // middleware, which did before the record named its graph).
            let meta = serde_json::json!({
                GRAPH_META_KEY: { "id": plan.id, "node": node.name, "durable": true }
            });
            let spec = StoredSpec {
                task: &node.task,
                args: &call.args,
                queue: &node.queue,
                description: &call.description,
                meta: meta.to_string(),
                after: &node.after,
                before: succ.get(node.name.as_str()).cloned().unwrap_or_default(),
                graph: &plan.id,
                inputs: node.inputs || node.fan_in,
                fan_in: node.fan_in,
            };
            let n = &node.name;
            fields.push((
                format!("node:{n}"),
                serde_json::to_string(&spec).map_err(StoreError::Args)?,
            ));
            fields.push((format!("id:{n}"), id.clone()));
            fields.push((format!("left:{n}"), distinct(&node.after).len().to_string()));
            fields.push((format!("state:{n}"), "waiting".into()));
        }
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            let mut inv = scripts::GRAPH_ENQUEUE.prepare_invoke();
            inv.key(keys.graph(&plan.id))
                .key(keys.queues())
                .key(keys.graph_middleware())
                .arg(keys.prefix())
                .arg(&now)
                .arg(plan.ttl.as_secs());
            for (f, v) in &fields {
                inv.arg(f).arg(v);
            }
            inv.invoke(c)
        })?;
        let what = "enqueue graph";
        let mut it = reply.into_iter();
        match next_text(&mut it, what)?.as_str() {
            "nomiddleware" => Err(GraphError::MiddlewareMissing),
            "exists" => Err(GraphError::Exists(plan.id.clone())),
            "ok" => {
                let mut roots = Vec::new();
                for v in it {
                    let name = text_of(what, v)?;
                    if let Some(i) = plan.nodes.iter().position(|n| n.name == name) {
                        roots.push(ids[i].clone());
                    }
                }
                Ok(roots)
            }
            other => Err(unexpected(what, other).into()),
        }
    }

    pub(crate) fn graph_node_ended(
        &self,
        graph: &str,
        node: &str,
        task_id: &str,
        failed: bool,
    ) -> Result<Advance, StoreError> {
        let now = time_text(Timestamp::now());
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            scripts::GRAPH_ADVANCE
                .key(keys.graph(graph))
                .key(keys.queues())
                .arg(keys.prefix())
                .arg(node)
                .arg(task_id)
                .arg(if failed { "failed" } else { "finished" })
                .arg(&now)
                .invoke(c)
        })?;
        let what = "advance graph";
        let mut it = reply.into_iter();
        match next_text(&mut it, what)?.as_str() {
            "gone" => Ok(Advance::Gone),
            "stale" => Ok(Advance::Stale),
            "done" => Ok(Advance::AlreadyEnded(next_text(&mut it, what)?)),
            "advanced" => {
                let status = next_text(&mut it, what)?;
                let mut enqueued = Vec::new();
                let mut canceled = Vec::new();
                let mut past_separator = false;
                for v in it {
                    let name = text_of(what, v)?;
                    if name.is_empty() {
                        past_separator = true;
                    } else if past_separator {
                        canceled.push(name);
                    } else {
                        enqueued.push(name);
                    }
                }
                Ok(Advance::Advanced {
                    status,
                    enqueued,
                    canceled,
                })
            }
            other => Err(unexpected(what, other)),
        }
    }

    pub(crate) fn graph(&self, id: &str) -> Result<GraphState, GraphError> {
        let key = self.keys().graph(id);
        let value: Value = self.read(&[(&key, "hash")], |c, _| {
            redis::cmd("HGETALL").arg(&key).query(c)
        })?;
        let hash = hash_from_value("HGETALL", value)?;
        if hash.is_empty() {
            return Err(GraphError::NotFound(id.to_owned()));
        }
        let text = |f: &str| hash.get(f).map(|v| String::from_utf8_lossy(v).into_owned());
        let time = |f: &str| text(f).and_then(|t| t.parse::<Timestamp>().ok());
        let corrupt = |detail: String| {
            GraphError::Store(StoreError::UnexpectedReply {
                what: "graph record",
                detail: format!("graph {id}: {detail}"),
            })
        };
        let names: Vec<String> = serde_json::from_str(&text("nodes").unwrap_or_default())
            .map_err(|e| corrupt(format!("field nodes: {e}")))?;
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let spec: serde_json::Value =
                serde_json::from_str(&text(&format!("node:{name}")).unwrap_or_default())
                    .map_err(|e| corrupt(format!("node {name}: {e}")))?;
            let field = |f: &str| spec[f].as_str().unwrap_or_default().to_owned();
            let word = text(&format!("state:{name}")).unwrap_or_default();
            let status = NodeStatus::parse(&word)
                .ok_or_else(|| corrupt(format!("node {name}: unknown state {word:?}")))?;
            let after = spec["after"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            nodes.push(NodeState {
                task: field("task"),
                queue: field("queue"),
                description: field("description"),
                task_id: text(&format!("id:{name}")).unwrap_or_default(),
                ended_at: time(&format!("ended:{name}")),
                status,
                after,
                name,
            });
        }
        Ok(GraphState {
            id: id.to_owned(),
            status: text("status").unwrap_or_default(),
            on_failure: text("on_failure").unwrap_or_default(),
            created_at: time("created_at"),
            ended_at: time("ended_at"),
            nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, after: &[&str]) -> PlannedNode {
        PlannedNode {
            name: name.into(),
            task: "t".into(),
            args: serde_json::Value::Null,
            queue: "default".into(),
            after: after.iter().map(|s| (*s).to_owned()).collect(),
            inputs: false,
            fan_in: false,
        }
    }

    fn plan(nodes: Vec<PlannedNode>) -> GraphPlan {
        GraphPlan {
            id: "g".into(),
            nodes,
            on_failure: FailurePolicy::Cancel,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_diamond_is_valid_and_cycles_are_not() {
        let ok = plan(vec![
            node("a", &[]),
            node("b", &["a"]),
            node("c", &["a"]),
            node("d", &["b", "c", "b"]),
        ]);
        assert!(ok.check().is_ok());
        let cyc = plan(vec![
            node("a", &["c"]),
            node("b", &["a"]),
            node("c", &["b"]),
        ]);
        let e = cyc.check().expect_err("cycle").to_string();
        assert!(e.contains("cycle through node \"a\""), "{e}");
        let unknown = plan(vec![node("a", &["x"])]);
        assert!(unknown.check().is_err());
        let selfie = plan(vec![node("a", &["a"])]);
        assert!(selfie.check().is_err());
        let twice = plan(vec![node("a", &[]), node("a", &[])]);
        assert!(twice.check().is_err());
        assert!(plan(vec![]).check().is_err());
    }
}
