//! [`GraphMiddleware`]: moves task graphs on as their nodes end.
//!
//! It runs in the supervisor, which owns Redis; the middleware opens a
//! store of its own from the settings when the supervisor checks it at
//! start-up (and again at each reload), never in a worker process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis_tasks_config::Settings;
use redis_tasks_protocol::{Outcome, TaskRecord};
use redis_tasks_store::Store;
use redis_tasks_store::{Advance, GRAPH_META_KEY};
use redis_tasks_worker::Middleware;
use tracing::{debug, error, info, warn};

/// Waits between attempts to advance a graph while Redis fails.
const RETRY_WAITS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// The middleware that announces a supervisor runs task graphs. The
/// graph itself moves on in Redis: the script that records a node's end
/// (finished, failed, canceled) also enqueues the nodes whose
/// predecessors have all ended, or cancels the dependents of a failed node
/// per the graph's [`FailurePolicy`](super::FailurePolicy), in the same
/// atomic step. Its `process_outcome` does that step only for nodes of
/// graphs enqueued by an older version, whose records do not name their
/// graph.
///
/// Register it FIRST (`App::new(..).middleware(GraphMiddleware::new())`):
/// `process_outcome` runs in reverse order, so the first registered sees
/// the outcome last, after every other middleware had its say.
///
/// At start-up it announces itself in Redis (`P:graph_middleware`, kept
/// for `expiring_registries_ttl`); enqueueing a graph is refused while no
/// supervisor has done so.
pub struct GraphMiddleware {
    explicit: Option<Store>,
    store: Mutex<Option<Arc<Store>>>,
    marker_ttl: Mutex<Duration>,
    last_mark: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for GraphMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphMiddleware")
            .field("explicit_store", &self.explicit.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for GraphMiddleware {
    fn default() -> Self {
        GraphMiddleware::new()
    }
}

impl GraphMiddleware {
    /// The middleware with a store opened from the supervisor's settings at
    /// its start-up check (so `--config`, `RT_SETTINGS`, the environment and
    /// `--redis-url` apply to it as to the supervisor).
    pub fn new() -> Self {
        GraphMiddleware {
            explicit: None,
            store: Mutex::new(None),
            marker_ttl: Mutex::new(Duration::from_secs(
                redis_tasks_store::DEFAULT_REGISTRY_TTL_SECS,
            )),
            last_mark: Mutex::new(None),
        }
    }

    /// The middleware using `store` (for a supervisor started from code
    /// rather than by the `worker` command).
    pub fn with_store(store: Store) -> Self {
        GraphMiddleware {
            explicit: Some(store),
            ..GraphMiddleware::new()
        }
    }

    fn open(&self, settings: &Settings) -> Result<(), String> {
        *lock(&self.marker_ttl) = Duration::from_secs(settings.expiring_registries_ttl);
        let store = match &self.explicit {
            Some(store) => store.independent().map_err(|e| e.to_string())?,
            None => Store::from_settings(settings).map_err(|e| e.to_string())?,
        };
        *lock(&self.store) = Some(Arc::new(store));
        *lock(&self.last_mark) = None;
        Ok(())
    }

    /// Sets the marker when it was not set within half its lifetime.
    fn mark(&self, store: &Store) {
        let ttl = *lock(&self.marker_ttl);
        let mut last = lock(&self.last_mark);
        if last.is_some_and(|at| at.elapsed() < ttl / 2) {
            return;
        }
        match store.mark_graph_middleware(ttl) {
            Ok(()) => *last = Some(Instant::now()),
            Err(e) => warn!(
                "graph middleware: cannot announce itself in redis ({e}); retrying with the next task"
            ),
        }
    }

    fn advance(&self, store: &Store, graph: &str, node: &str, task: &TaskRecord, failed: bool) {
        for (attempt, wait) in std::iter::once(None)
            .chain(RETRY_WAITS.iter().copied().map(Some))
            .enumerate()
        {
            if let Some(wait) = wait {
                std::thread::sleep(wait);
            }
            match store.graph_node_ended(graph, node, &task.id, failed) {
                Ok(Advance::Advanced {
                    status,
                    enqueued,
                    canceled,
                }) => {
                    info!(
                        graph,
                        "graph {graph}: node {node} {}; enqueued [{}], canceled [{}]; graph {status}",
                        if failed { "failed" } else { "finished" },
                        enqueued.join(", "),
                        canceled.join(", ")
                    );
                    return;
                }
                Ok(Advance::AlreadyEnded(state)) => {
                    debug!(
                        graph,
                        "graph {graph}: node {node} had ended already ({state})"
                    );
                    return;
                }
                Ok(Advance::Gone) => {
                    warn!(
                        graph,
                        "graph {graph} of task {} is gone (expired?); its dependents will not run",
                        task.id
                    );
                    return;
                }
                Ok(Advance::Stale) => {
                    warn!(
                        graph,
                        "task {} claims node {node} of graph {graph}, which has another task",
                        task.id
                    );
                    return;
                }
                Err(e) if e.is_connection_error() && attempt < RETRY_WAITS.len() => {
                    warn!(
                        graph,
                        "graph {graph}: cannot record the end of node {node} ({e}); retrying"
                    );
                }
                Err(e) => {
                    error!(
                        graph,
                        "graph {graph}: cannot record the end of node {node}: {e}; the graph stops here"
                    );
                    return;
                }
            }
        }
    }
}

impl Middleware for GraphMiddleware {
    fn name(&self) -> &str {
        "GraphMiddleware"
    }

    fn check(&self, settings: &Settings) -> Result<(), String> {
        self.open(settings)?;
        let store = lock(&self.store).clone();
        if let Some(store) = store {
            self.mark(&store);
        }
        Ok(())
    }

    fn process_outcome(&self, task: &TaskRecord, outcome: Outcome) -> Outcome {
        let store = lock(&self.store).clone();
        let Some(store) = store else {
            error!(
                "graph middleware: process_outcome before its start-up check; task {} not advanced",
                task.id
            );
            return outcome;
        };
        self.mark(&store);
        let Some(tag) = task.meta.get(GRAPH_META_KEY) else {
            return outcome;
        };
        let (Some(graph), Some(node)) = (tag["id"].as_str(), tag["node"].as_str()) else {
            warn!(
                "task {}: meta {GRAPH_META_KEY} is not {{\"id\", \"node\"}}: {tag}",
                task.id
            );
            return outcome;
        };
        if outcome.next_attempt().is_some() {
            // A retry follows: the node has not ended yet.
            return outcome;
        }
        if tag["durable"] == true {
            // The record names its graph: the script that records the
            // node's end moves the graph on, in the same step.
            return outcome;
        }
        self.advance(&store, graph, node, task, !outcome.is_success());
        outcome
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
