//! Feature `opentelemetry` (issue 24, point 4): an enqueue inside a span
//! traced by `tracing-opentelemetry` stores that span's context without
//! being told, a traceparent given explicitly wins, and the task's own
//! span is in the trace of its run.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use redis_tasks::testing::run_queued;
use redis_tasks::{App, EnqueueOptions, TaskContext};
use serde_json::{Value, json};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::RedisServer;

/// Runs `f` with a subscriber that turns `tracing` spans into OpenTelemetry
/// spans, as a traced service would.
fn traced<T>(f: impl FnOnce() -> T) -> T {
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")));
    tracing::subscriber::with_default(subscriber, f)
}

/// Trace id and span id of the current span.
fn current_ids() -> (String, String) {
    let context = tracing::Span::current().context();
    let span = context.span();
    let c = span.span_context();
    (c.trace_id().to_string(), c.span_id().to_string())
}

#[test]
fn an_enqueue_in_a_traced_span_carries_it_to_the_task() {
    let redis = RedisServer::start();
    let store = redis.store();
    let queue = store.queue("default");
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (trace, span_id, captured, explicit) = traced(|| {
        let _request = tracing::info_span!("request").entered();
        let (trace, span_id) = current_ids();
        let captured = queue.enqueue("seen", &json!(null)).expect("enqueue");
        let explicit = queue
            .enqueue_with(
                "seen",
                &json!(null),
                &EnqueueOptions::new().traceparent(given),
            )
            .expect("enqueue");
        (trace, span_id, captured, explicit)
    });
    assert_ne!(trace, "0".repeat(32), "the test's tracer made a real span");
    let untraced = queue.enqueue("seen", &json!(null)).expect("enqueue");

    let record = |id: &str| store.task(id).expect("record");
    assert_eq!(
        record(&captured).traceparent.as_deref(),
        Some(format!("00-{trace}-{span_id}-01").as_str())
    );
    assert_eq!(record(&explicit).traceparent.as_deref(), Some(given));
    assert_eq!(record(&untraced).traceparent, None);

    // The task's span joins the trace of its run (here, in-process, the
    // producer's context: no supervisor span in between).
    let app = App::new("tests").task("seen", |ctx: &TaskContext, _: Value| {
        let (trace, span) = current_ids();
        Ok::<_, String>(json!({"trace": trace, "span": span, "given": ctx.traceparent()}))
    });
    let report = traced(|| run_queued(&app, &store, &["default"])).expect("run");
    assert_eq!(report.succeeded.len(), 3, "{report:?}");
    let seen = |id: &str| record(id).result.expect("a result");
    let inside = seen(&captured);
    assert_eq!(inside["trace"], trace.as_str());
    assert_ne!(inside["span"], span_id.as_str(), "a span of its own");
    assert_eq!(seen(&explicit)["trace"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(seen(&explicit)["given"], given);
    // Without a context the task's span starts a trace of its own.
    assert_ne!(seen(&untraced)["trace"], trace.as_str());
    assert_eq!(seen(&untraced)["given"], Value::Null);
}
