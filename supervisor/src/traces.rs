//! Spans of traced tasks, exported over OTLP/HTTP (feature `otlp`;
//! docs/tracing-and-errors.md).
//!
//! A task enqueued with a W3C `traceparent` gets two spans in that trace,
//! children of the producer's span: `queue wait` (from its enqueue to its
//! start) and `run` (from its start to its recorded outcome), with the
//! task name, queue, id, attempt, outcome and, for a crash, the signal as
//! attributes. The task itself is given the context of its `run` span
//! (`TaskContext::traceparent`). The spans are sent as OTLP JSON to
//! `<otlp_endpoint>/v1/traces` by a thread of the supervisor, a batch at
//! a time; when the endpoint is slow or down, spans beyond a bounded
//! backlog are dropped (counted in the log), never the task's outcome.

use jiff::Timestamp;
use redis_tasks_config::Settings;
use redis_tasks_protocol::{TaskRecord, TraceParent};

use crate::outcome::Conclusion;

/// The supervisor's span of one run of a traced task.
#[derive(Debug, Clone)]
pub(crate) struct RunSpan {
    /// The producer's context (trace id, and the parent of both spans).
    parent: TraceParent,
    /// The `run` span's id.
    span_id: String,
}

impl RunSpan {
    /// The run span of `record`, when it was enqueued with a valid trace
    /// context.
    pub(crate) fn of(record: &TaskRecord) -> Option<RunSpan> {
        let parent = TraceParent::parse(record.traceparent.as_deref()?).ok()?;
        Some(RunSpan {
            parent,
            span_id: span_id(),
        })
    }

    /// The id of the trace the run belongs to.
    pub(crate) fn trace_id(&self) -> &str {
        &self.parent.trace_id
    }

    /// The context the task is given: its run span's.
    pub(crate) fn traceparent(&self) -> String {
        self.parent.child_of(&self.span_id).to_string()
    }
}

/// A fresh span id: 16 lowercase hex digits, not all zero.
fn span_id() -> String {
    let id = fastrand::u64(1..);
    format!("{id:016x}")
}

/// How a traced run ended, for its span.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct RunEnd<'a> {
    pub(crate) record: &'a TaskRecord,
    pub(crate) queue: &'a str,
    pub(crate) attempt: usize,
    /// `finished`, `failed`, `retried`, ...
    pub(crate) outcome: &'static str,
    pub(crate) conclusion: &'a Conclusion,
    pub(crate) started_at: Timestamp,
    pub(crate) ended_at: Timestamp,
}

/// Where spans go.
#[derive(Debug, Default)]
pub(crate) struct Tracer {
    #[cfg(feature = "otlp")]
    export: Option<crossbeam_channel::Sender<serde_json::Value>>,
}

impl Tracer {
    /// Exports per `settings` (`otlp_endpoint`): a thread that posts the
    /// spans, when the feature is built in and an endpoint is set.
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        #[cfg(feature = "otlp")]
        {
            let Some(endpoint) = settings.otlp_endpoint.as_deref() else {
                return Tracer::default();
            };
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let (tx, rx) = crossbeam_channel::bounded(BACKLOG);
            let spawned = std::thread::Builder::new()
                .name("otlp-export".into())
                .spawn(move || export_loop(&url, &rx));
            if let Err(e) = spawned {
                tracing::warn!("cannot start the span exporter ({e}); no spans are exported");
                return Tracer::default();
            }
            tracing::info!(endpoint, "spans of traced tasks are exported over OTLP");
            Tracer { export: Some(tx) }
        }
        #[cfg(not(feature = "otlp"))]
        {
            if settings.otlp_endpoint.is_some() {
                tracing::warn!(
                    "otlp_endpoint is set, but this binary was built without the `otlp` feature; no spans are exported"
                );
            }
            Tracer::default()
        }
    }

    /// Exports the two spans of a traced run that ended.
    pub(crate) fn ended(&self, span: &RunSpan, end: &RunEnd<'_>) {
        #[cfg(feature = "otlp")]
        if let Some(tx) = &self.export
            && tx.try_send(spans_of(span, end)).is_err()
        {
            tracing::warn!(task = %end.record.id, "span exporter backlog full; the task's spans are dropped");
        }
        #[cfg(not(feature = "otlp"))]
        let _ = (span, end);
    }
}

/// Span batches waiting for the exporter at most.
#[cfg(feature = "otlp")]
const BACKLOG: usize = 1000;

/// Posts each batch (what arrived since the last post, up to 100 runs).
#[cfg(feature = "otlp")]
fn export_loop(url: &str, rx: &crossbeam_channel::Receiver<serde_json::Value>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build()
        .into();
    while let Ok(first) = rx.recv() {
        let mut spans: Vec<serde_json::Value> = vec![first];
        while spans.len() < 100 {
            match rx.try_recv() {
                Ok(more) => spans.push(more),
                Err(_) => break,
            }
        }
        let spans: Vec<serde_json::Value> = spans
            .into_iter()
            .flat_map(|pair| pair.as_array().cloned().unwrap_or_default())
            .collect();
        let body = serde_json::json!({
            "resourceSpans": [{
                "resource": {"attributes": [attr("service.name", "redis-tasks")]},
                "scopeSpans": [{
                    "scope": {"name": "redis-tasks", "version": env!("CARGO_PKG_VERSION")},
                    "spans": spans,
                }],
            }],
        });
        let sent = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        if let Err(e) = sent {
            tracing::warn!("cannot export spans to {url}: {e}");
        }
    }
}

/// The `queue wait` and `run` spans of a run, as OTLP JSON.
#[cfg(feature = "otlp")]
fn spans_of(span: &RunSpan, end: &RunEnd<'_>) -> serde_json::Value {
    let nanos = |t: Timestamp| t.as_nanosecond().max(0).to_string();
    let r = end.record;
    let mut run_attrs = vec![
        attr("task.name", &r.task),
        attr("task.queue", end.queue),
        attr("task.id", &r.id),
        attr("task.attempt", &end.attempt.to_string()),
        attr("task.outcome", end.outcome),
    ];
    use redis_tasks_protocol::{ExitReason, FailureKind, Outcome};
    let failure = match end.conclusion {
        Conclusion::Record(Outcome::Success) => None,
        Conclusion::Record(Outcome::Failure(f)) | Conclusion::Retry { failure: f } => Some(f),
        Conclusion::Requeue { .. } => None,
    };
    if let Some(FailureKind::Crashed(ExitReason::Signal(sig))) = failure.map(|f| &f.kind) {
        run_attrs.push(attr(
            "task.signal",
            redis_tasks_protocol::model::signal_name(*sig),
        ));
    }
    let (code, message) = match (end.conclusion, failure) {
        (_, Some(f)) => (2, f.to_string()),
        (Conclusion::Requeue { reason }, None) => (2, reason.clone()),
        _ => (1, String::new()),
    };
    serde_json::json!([
        {
            "traceId": span.parent.trace_id,
            "spanId": span_id(),
            "parentSpanId": span.parent.parent_id,
            "name": "queue wait",
            "kind": 1,
            "startTimeUnixNano": nanos(r.enqueued_at),
            "endTimeUnixNano": nanos(end.started_at),
            "attributes": [attr("task.name", &r.task), attr("task.queue", end.queue), attr("task.id", &r.id)],
        },
        {
            "traceId": span.parent.trace_id,
            "spanId": span.span_id,
            "parentSpanId": span.parent.parent_id,
            "name": "run",
            "kind": 5,
            "startTimeUnixNano": nanos(end.started_at),
            "endTimeUnixNano": nanos(end.ended_at),
            "attributes": run_attrs,
            "status": {"code": code, "message": message},
        },
    ])
}

#[cfg(feature = "otlp")]
fn attr(key: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"key": key, "value": {"stringValue": value}})
}
