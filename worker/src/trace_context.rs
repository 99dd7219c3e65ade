//! A task's `task` span as a child of its run's span (feature
//! `opentelemetry`): with a `tracing-opentelemetry` layer installed in the
//! application, what a task traces lands in the trace of the request that
//! enqueued it, under the supervisor's `run` span.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use redis_tasks_protocol::TraceParent;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the run span named by `traceparent` (as the supervisor sent it)
/// the remote parent of `span`. A missing or unreadable value leaves the
/// span a root.
pub(crate) fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(parent) = traceparent.and_then(|t| TraceParent::parse(t).ok()) else {
        return;
    };
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(&parent.trace_id),
        SpanId::from_hex(&parent.parent_id),
        u8::from_str_radix(&parent.flags, 16),
    ) else {
        return;
    };
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    // Fails only when no OpenTelemetry layer is installed: nothing to join.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}
