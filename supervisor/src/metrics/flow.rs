//! The gauges of flow control (docs/flow-control.md), read from Redis at
//! scrape time.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis_tasks_store::Store;

use super::{FunctionLabels, QueueLabels};

/// The gauges of flow control, for the queues that have a setting: paused
/// (1 or 0), the concurrency limit and the tasks running under it (the
/// permits in use); tasks a queue's limit holds back are the
/// `queue_length` of such a queue. For task functions with a limit: the
/// limit, and the tasks it holds back (out of their queues).
pub(super) struct FlowGauges {
    paused: Family<QueueLabels, Gauge>,
    limit: Family<QueueLabels, Gauge>,
    running: Family<QueueLabels, Gauge>,
    task_limit: Family<FunctionLabels, Gauge>,
    task_held: Family<FunctionLabels, Gauge>,
}

impl FlowGauges {
    pub(super) fn register(registry: &mut Registry) -> FlowGauges {
        let gauges = FlowGauges {
            paused: Family::default(),
            limit: Family::default(),
            running: Family::default(),
            task_limit: Family::default(),
            task_held: Family::default(),
        };
        registry.register(
            "queue_paused",
            "1 for a queue paused fleet-wide, 0 for a queue with another flow setting (read from Redis at scrape time)",
            gauges.paused.clone(),
        );
        registry.register(
            "queue_concurrency_limit",
            "The fleet-wide concurrency limit of each queue that has one (read from Redis at scrape time)",
            gauges.limit.clone(),
        );
        registry.register(
            "queue_permits_in_use",
            "Tasks running in each queue with a flow setting, fleet-wide: the permits in use of a concurrency limit (read from Redis at scrape time)",
            gauges.running.clone(),
        );
        registry.register(
            "task_concurrency_limit",
            "The fleet-wide concurrency limit of each task function that has one (read from Redis at scrape time)",
            gauges.task_limit.clone(),
        );
        registry.register(
            "task_held",
            "Tasks of each task function with a limit that the limit holds back now, out of their queues (read from Redis at scrape time)",
            gauges.task_held.clone(),
        );
        gauges
    }

    pub(super) fn refresh(&self, store: &Store) -> Result<(), redis_tasks_store::StoreError> {
        let states = store.flow_states()?;
        self.paused.clear();
        self.limit.clear();
        self.running.clear();
        for q in &states {
            let labels = QueueLabels {
                queue: q.name.clone(),
            };
            set(&self.paused, &labels, u64::from(q.flow.paused));
            set(&self.running, &labels, q.running);
            if let Some(n) = q.flow.concurrency {
                set(&self.limit, &labels, u64::from(n));
            }
        }
        let functions = store.task_flows()?;
        self.task_limit.clear();
        self.task_held.clear();
        for (name, flow) in &functions {
            let labels = FunctionLabels { task: name.clone() };
            set(&self.task_held, &labels, flow.held);
            if let Some(n) = flow.concurrency {
                set(&self.task_limit, &labels, u64::from(n));
            }
        }
        Ok(())
    }
}

/// Sets the gauge of `labels` in `family` to `value`.
fn set<L>(family: &Family<L, Gauge>, labels: &L, value: u64)
where
    L: Clone + std::hash::Hash + Eq,
{
    family
        .get_or_create(labels)
        .set(i64::try_from(value).unwrap_or(i64::MAX));
}
