//! Prometheus metrics of one supervisor, and the small HTTP server that
//! serves them on `/metrics` (`worker --metrics-addr`, `metrics_addr`).
//!
//! The slots and the control loop update [`Metrics`] as things happen
//! (atomic counters, histograms under a short lock); figures that live in
//! Redis (queue lengths, the failed and finished registries) and the
//! process's RSS are read when Prometheus scrapes, on the server's own
//! thread with its own Redis connection, so a slow scrape never holds up a
//! task. Names, units and labels are listed in docs/observability.md.
//!
//! Label values are bounded ([`labels`]): a `queue` label is a queue this
//! supervisor serves, a `task` label a task function the binary registers,
//! anything else is `other`; `queue_length` shows the served queues and the
//! longest others, the rest summed. A producer cannot grow the page or the
//! supervisor's memory by enqueueing made-up names.
//!
//! `labels.rs`: the bounds; `server.rs`: the HTTP server.

mod flow;
mod labels;
mod server;

pub use server::MetricsBindError;
pub(crate) use server::{MetricsServer, MetricsThread};

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use redis_tasks_protocol::model::signal_name;
use redis_tasks_protocol::{ExitReason, FailureKind, Outcome};
use redis_tasks_store::Store;
use tracing::debug;

use flow::FlowGauges;
use labels::Bounds;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    queue: String,
    task: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    queue: String,
    task: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    task: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    registry: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    slot: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestrictionLabels {
    restriction: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms to about 4 min: no-op tasks to long reports; longer runs fall in
    // +Inf.
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

fn latency_histogram() -> Histogram {
    // 0.1 ms (an idle slot) to about 1 min (a backlog).
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

/// How a run ended, for `outcome` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Recorded as finished.
    Finished,
    /// Recorded as failed.
    Failed,
    /// Put back at the front of its queue (a reentrant task interrupted).
    Requeued,
    /// Failed, and sent to the delayed set for another attempt by its
    /// retry policy: not a final failure.
    Retried,
    /// Canceled while it ran (`task cancel`, the dashboard).
    Canceled,
    /// Its expiry passed before it started (found by a fetch: it never
    /// ran) or before its next attempt was due.
    Expired,
}

impl Ended {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Ended::Finished => "finished",
            Ended::Failed => "failed",
            Ended::Requeued => "requeued",
            Ended::Retried => "retried",
            Ended::Canceled => "canceled",
            Ended::Expired => "expired",
        }
    }
}

/// The supervisor's metrics: what [`Shared`] carries for the slots to
/// update, and what the `/metrics` server encodes.
pub(crate) struct Metrics {
    bounds: Bounds,
    registry: Registry,
    unprefixed: Registry,
    tasks_ended: Family<EndLabels, Counter>,
    task_duration: Family<TaskLabels, Histogram, fn() -> Histogram>,
    task_latency: Family<QueueLabels, Histogram, fn() -> Histogram>,
    timeouts: Family<TaskLabels, Counter>,
    queue_length: Family<QueueLabels, Gauge>,
    /// Flow control of the queues that have any (docs/flow-control.md).
    flow: FlowGauges,
    scheduled_tasks: Gauge,
    registry_tasks: Family<RegistryLabels, Gauge>,
    slots_idle: Gauge,
    slots_busy: Gauge,
    process_starts: Counter,
    process_start_failures: Counter,
    crashes: Family<SignalLabels, Counter>,
    isolation_refusals: Family<RestrictionLabels, Counter>,
    redis_errors: Counter,
    redis_reconnects: Counter,
    rss: Gauge,
    progress: Family<SlotLabels, Gauge<f64, AtomicU64>>,
    progress_updates: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Every metric, registered and at zero, for a supervisor serving
    /// `queues` with the task functions `tasks` (the label values allowed).
    pub(crate) fn new<Q, T>(queues: Q, tasks: T) -> Metrics
    where
        Q: IntoIterator,
        Q::Item: Into<String>,
        T: IntoIterator,
        T::Item: Into<String>,
    {
        let bounds = Bounds::new(queues, tasks);
        let mut registry = Registry::with_prefix("redis_tasks");
        let tasks_ended = Family::<EndLabels, Counter>::default();
        registry.register(
            "tasks_ended",
            "Task runs this supervisor ended, by queue, task and outcome (finished, failed, retried, canceled, requeued, expired: also the tasks a fetch found expired, which never ran)",
            tasks_ended.clone(),
        );
        let task_duration =
            Family::<TaskLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "task_duration",
            "Time from fetching a task to recording its outcome",
            Unit::Seconds,
            task_duration.clone(),
        );
        let task_latency =
            Family::<QueueLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "task_start_latency",
            "Time from enqueueing a task to a slot fetching it",
            Unit::Seconds,
            task_latency.clone(),
        );
        let timeouts = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_timeouts",
            "Task runs killed at their timeout",
            timeouts.clone(),
        );
        let queue_length = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_length",
            "Tasks waiting in each queue this supervisor serves and in the 50 longest others; queue=\"other\" sums the rest (read from Redis at scrape time)",
            queue_length.clone(),
        );
        let flow = FlowGauges::register(&mut registry);
        let scheduled_tasks = Gauge::default();
        registry.register(
            "scheduled_tasks",
            "Tasks waiting in the delayed set to be due: delayed enqueues and retries after their backoff (read from Redis at scrape time; the same for every supervisor)",
            scheduled_tasks.clone(),
        );
        let registry_tasks = Family::<RegistryLabels, Gauge>::default();
        registry.register(
            "registry_tasks",
            "Tasks in the failed and finished registries (read from Redis at scrape time)",
            registry_tasks.clone(),
        );
        let slots = Family::<StateLabels, Gauge>::default();
        registry.register(
            "slots",
            "This supervisor's slots by state (idle, busy)",
            slots.clone(),
        );
        let slots_idle = slots.get_or_create_owned(&StateLabels { state: "idle" });
        let slots_busy = slots.get_or_create_owned(&StateLabels { state: "busy" });
        let process_starts = Counter::default();
        registry.register(
            "worker_process_starts",
            "Worker processes started",
            process_starts.clone(),
        );
        let process_start_failures = Counter::default();
        registry.register(
            "worker_process_start_failures",
            "Worker processes that failed to start",
            process_start_failures.clone(),
        );
        let crashes = Family::<SignalLabels, Counter>::default();
        registry.register(
            "worker_process_crashes",
            "Worker processes that ended during a task without an outcome, by the signal that ended them (\"exit\": they exited)",
            crashes.clone(),
        );
        let isolation_refusals = Family::<RestrictionLabels, Counter>::default();
        registry.register(
            "isolation_refusals",
            "Tasks not run because a restriction of their isolation profile could not be applied",
            isolation_refusals.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis connection errors seen by the slots and the control loop",
            redis_errors.clone(),
        );
        let redis_reconnects = Counter::default();
        registry.register(
            "redis_reconnects",
            "Times Redis became reachable again after errors",
            redis_reconnects.clone(),
        );
        let progress = Family::<SlotLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "task_progress",
            "Progress (done/total) the task running in each slot last reported; 0 when idle or without a total",
            Unit::Other("ratio".to_owned()),
            progress.clone(),
        );
        let progress_updates = Counter::default();
        registry.register(
            "progress_updates",
            "Progress reports of running tasks stored in Redis",
            progress_updates.clone(),
        );
        let rss = Gauge::default();
        // The conventional name of the Prometheus client libraries, without
        // our prefix, so that standard dashboards find it.
        let mut unprefixed = Registry::default();
        unprefixed.register_with_unit(
            "process_resident_memory",
            "Resident set size of the supervisor process",
            Unit::Bytes,
            rss.clone(),
        );
        Metrics {
            bounds,
            registry,
            unprefixed,
            tasks_ended,
            task_duration,
            task_latency,
            timeouts,
            queue_length,
            flow,
            scheduled_tasks,
            registry_tasks,
            slots_idle,
            slots_busy,
            process_starts,
            process_start_failures,
            crashes,
            isolation_refusals,
            redis_errors,
            redis_reconnects,
            rss,
            progress,
            progress_updates,
        }
    }

    /// Allows the queues of a new configuration as label values.
    pub(crate) fn serve_queues<'a>(&self, queues: impl IntoIterator<Item = &'a String>) {
        self.bounds.serve(queues);
    }

    /// The Prometheus text format (version 0.0.4) of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        let _ = prometheus_text::encode(&mut text, &self.unprefixed);
        text
    }

    /// A slot thread began (it is idle until it fetches a task).
    pub(crate) fn slot_started(&self) {
        self.slots_idle.inc();
    }

    /// A slot thread ended.
    pub(crate) fn slot_ended(&self) {
        self.slots_idle.dec();
    }

    /// A slot fetched a task that has waited `waited` since its enqueue.
    pub(crate) fn task_started(&self, queue: &str, waited: Duration) {
        self.slots_idle.dec();
        self.slots_busy.inc();
        self.task_latency
            .get_or_create(&QueueLabels {
                queue: self.bounds.queue(queue),
            })
            .observe(waited.as_secs_f64());
    }

    /// A slot is done with its task, whether or not its outcome could be
    /// recorded.
    pub(crate) fn task_done(&self) {
        self.slots_busy.dec();
        self.slots_idle.inc();
    }

    /// A slot recorded the end of a task run (`task` is the name a
    /// registered task goes by, else `None`).
    pub(crate) fn task_ended(
        &self,
        queue: &str,
        task: Option<&str>,
        ended: Ended,
        duration: Duration,
    ) {
        let (queue, task) = (self.bounds.queue(queue), self.bounds.task(task));
        self.tasks_ended
            .get_or_create(&EndLabels {
                queue: queue.clone(),
                task: task.clone(),
                outcome: ended.label(),
            })
            .inc();
        self.task_duration
            .get_or_create(&TaskLabels { queue, task })
            .observe(duration.as_secs_f64());
    }

    /// A fetch of this supervisor found a task of `queue` expired and
    /// ended it unstarted: counted under outcome `expired`, with no run
    /// time.
    pub(crate) fn task_expired(&self, queue: &str, task: Option<&str>) {
        let (queue, task) = (self.bounds.queue(queue), self.bounds.task(task));
        self.tasks_ended
            .get_or_create(&EndLabels {
                queue,
                task,
                outcome: Ended::Expired.label(),
            })
            .inc();
    }

    /// Counts what a run's ending says about the worker process: crashes,
    /// timeouts, isolation refusals.
    pub(crate) fn run_ended(&self, queue: &str, task: Option<&str>, outcome: &Outcome) {
        let Outcome::Failure(failure) = outcome else {
            return;
        };
        match &failure.kind {
            FailureKind::Crashed(ExitReason::Signal(n)) => {
                self.crashes
                    .get_or_create(&SignalLabels {
                        signal: signal_name(*n),
                    })
                    .inc();
            }
            FailureKind::Crashed(ExitReason::Code(_)) => {
                self.crashes
                    .get_or_create(&SignalLabels { signal: "exit" })
                    .inc();
            }
            FailureKind::Timeout { .. } => {
                self.timeouts
                    .get_or_create(&TaskLabels {
                        queue: self.bounds.queue(queue),
                        task: self.bounds.task(task),
                    })
                    .inc();
            }
            FailureKind::NotIsolated { restriction, .. } => {
                self.isolation_refusals
                    .get_or_create(&RestrictionLabels {
                        restriction: restriction.clone(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// The task in slot number `slot` reported `ratio` (`None`: no total),
    /// or the slot's task ended (`Some(0.0)`).
    pub(crate) fn slot_progress(&self, slot: usize, ratio: Option<f64>, report: bool) {
        if report {
            self.progress_updates.inc();
        }
        self.progress
            .get_or_create(&SlotLabels {
                slot: slot.to_string(),
            })
            .set(ratio.unwrap_or(0.0));
    }

    /// A worker process started (`true`) or failed to (`false`).
    pub(crate) fn process_started(&self, ok: bool) {
        if ok {
            self.process_starts.inc();
        } else {
            self.process_start_failures.inc();
        }
    }

    /// A Redis connection error.
    pub(crate) fn redis_error(&self) {
        self.redis_errors.inc();
    }

    /// Redis answered again after errors.
    pub(crate) fn redis_reconnected(&self) {
        self.redis_reconnects.inc();
    }

    /// Reads the figures that live elsewhere: queue lengths, the delayed
    /// set's size and registry sizes from Redis (kept as they were when Redis does not answer), and
    /// the process's RSS.
    pub(crate) fn refresh(&self, store: &Store) {
        if let Some(rss) = resident_bytes() {
            self.rss.set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        let read = || -> Result<(), redis_tasks_store::StoreError> {
            let lengths = store.queue_lengths()?;
            // A queue deleted since the last scrape goes away (scrapes are
            // answered one at a time, on the server's thread).
            self.queue_length.clear();
            for (queue, len) in labels::top_queues(lengths, |q| self.bounds.serves(q)) {
                self.queue_length
                    .get_or_create(&QueueLabels { queue })
                    .set(i64::try_from(len).unwrap_or(i64::MAX));
            }
            self.flow.refresh(store)?;
            self.scheduled_tasks
                .set(i64::try_from(store.scheduled_count()?).unwrap_or(i64::MAX));
            for (registry, count) in [
                ("failed", store.failed().count()?),
                ("finished", store.finished().count()?),
            ] {
                self.registry_tasks
                    .get_or_create(&RegistryLabels { registry })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            Ok(())
        };
        if let Err(e) = read() {
            debug!("metrics: cannot read queue lengths from Redis: {e}");
            if e.is_connection_error() {
                self.redis_error();
            }
        }
    }
}

/// The resident set size of this process, from `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_registry_encodes_every_family_with_help_and_type() {
        let metrics = Metrics::new(["default", "q"], ["send", "noop"]);
        metrics.slot_started();
        metrics.task_started("default", Duration::from_millis(2));
        metrics.task_ended(
            "default",
            Some("send"),
            Ended::Finished,
            Duration::from_millis(30),
        );
        metrics.task_done();
        let text = metrics.encode();
        for name in [
            "redis_tasks_tasks_ended_total",
            "redis_tasks_task_duration_seconds",
            "redis_tasks_task_start_latency_seconds",
            "redis_tasks_slots",
            "redis_tasks_worker_process_starts_total",
            "redis_tasks_redis_errors_total",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert!(
            text.contains(
                "redis_tasks_tasks_ended_total{queue=\"default\",task=\"send\",outcome=\"finished\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("redis_tasks_slots{state=\"idle\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("redis_tasks_slots{state=\"busy\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn crashes_are_counted_by_signal_and_unknown_names_share_one_label() {
        let metrics = Metrics::new(["default", "q"], ["send", "noop"]);
        let crash = Outcome::failure(FailureKind::Crashed(ExitReason::Signal(11)));
        metrics.run_ended("q", None, &crash);
        let timeout = Outcome::failure(FailureKind::Timeout { secs: 3 });
        metrics.run_ended("q", None, &timeout);
        metrics.run_ended("made-up", Some("made-up"), &timeout);
        let text = metrics.encode();
        assert!(
            text.contains("redis_tasks_worker_process_crashes_total{signal=\"SIGSEGV\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("redis_tasks_task_timeouts_total{queue=\"q\",task=\"other\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("redis_tasks_task_timeouts_total{queue=\"other\",task=\"other\"} 1"),
            "{text}"
        );
    }

    /// The per-task cost of the metrics on a slot's path, for
    /// docs/performance.md (the bench's end-to-end figures are too noisy on
    /// a shared machine to show 1%).
    #[test]
    #[ignore = "a measurement: cargo test -p redis-tasks-supervisor --release metrics_cost -- --ignored --nocapture"]
    fn metrics_cost_per_task() {
        let metrics = Metrics::new(["default", "q"], ["send", "noop"]);
        metrics.slot_started();
        let n = 200_000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            metrics.task_started("default", Duration::from_micros(50));
            metrics.run_ended("default", Some("noop"), &Outcome::Success);
            metrics.task_ended(
                "default",
                Some("noop"),
                Ended::Finished,
                Duration::from_micros(80),
            );
            metrics.task_done();
            metrics.slot_progress(0, None, false);
        }
        println!("metrics updates per task: {:?}", start.elapsed() / n);
    }

    #[test]
    fn rss_is_read_from_proc() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
