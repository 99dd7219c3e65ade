//! The trace context of the code that enqueues a task (feature
//! `opentelemetry`): an enqueue given no `traceparent` takes the one of
//! the caller's current span, so a service traced with
//! `tracing-opentelemetry` needs no extra line to follow its tasks.

use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C `traceparent` of the current `tracing` span (through the
/// `tracing-opentelemetry` layer), else of the current OpenTelemetry
/// context; `None` when neither is a valid, recording-or-not span.
pub(crate) fn current() -> Option<String> {
    let of_span = tracing::Span::current().context();
    let context = of_span.span().span_context().clone();
    let context = if context.is_valid() {
        context
    } else {
        opentelemetry::Context::current()
            .span()
            .span_context()
            .clone()
    };
    context.is_valid().then(|| traceparent(&context))
}

fn traceparent(c: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        c.trace_id(),
        c.span_id(),
        c.trace_flags().to_u8()
    )
}
