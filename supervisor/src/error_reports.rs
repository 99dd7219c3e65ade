//! Failed endings reported to Sentry (feature `sentry`; docs/tracing-and-errors.md).
//!
//! The supervisor reports, once, every task that failed for good: an error
//! or a panic the worker process returned, and also what only the
//! supervisor sees (a crash, a timeout, a dead worker found by recovery, a
//! protocol violation). Each event carries the task name, queue, id and
//! attempt as tags, and the trace id of a task enqueued with a
//! `traceparent`. Without the feature, or without a DSN (`sentry_dsn`,
//! `SENTRY_DSN`), reporting does nothing.

use redis_tasks_config::Settings;
use redis_tasks_protocol::Failure;

/// One failed ending, as reported.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "sentry"), allow(dead_code))]
pub(crate) struct FailedEnding<'a> {
    pub(crate) id: &'a str,
    pub(crate) task: &'a str,
    pub(crate) queue: &'a str,
    /// 1 for the first run.
    pub(crate) attempt: usize,
    pub(crate) failure: &'a Failure,
    /// The trace the task was enqueued in (its `traceparent`), if any.
    pub(crate) trace_id: Option<&'a str>,
}

/// Where failed endings go.
#[derive(Debug, Default)]
pub(crate) struct ErrorReports {
    #[cfg(feature = "sentry")]
    client: Option<std::sync::Arc<sentry::Client>>,
}

impl ErrorReports {
    /// Reports per `settings` (a client when a DSN is set and the feature
    /// is built in; a bad DSN is logged and reports nothing).
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        #[cfg(feature = "sentry")]
        {
            let Some(dsn) = settings.sentry_dsn.as_deref() else {
                return ErrorReports::default();
            };
            let dsn = match dsn.parse::<sentry::types::Dsn>() {
                Ok(dsn) => dsn,
                Err(e) => {
                    tracing::warn!("sentry_dsn is not a DSN ({e}); failed tasks are not reported");
                    return ErrorReports::default();
                }
            };
            let options = sentry::ClientOptions {
                dsn: Some(dsn),
                release: Some(env!("CARGO_PKG_VERSION").into()),
                ..sentry::ClientOptions::default()
            };
            // The default transport (ureq, blocking, on a thread of its own);
            // no integrations are built in.
            let client = sentry::Client::from_config(sentry::apply_defaults(options));
            tracing::info!("failed tasks are reported to Sentry");
            ErrorReports {
                client: Some(std::sync::Arc::new(client)),
            }
        }
        #[cfg(not(feature = "sentry"))]
        {
            if settings.sentry_dsn.is_some() {
                tracing::warn!(
                    "sentry_dsn is set, but this binary was built without the `sentry` feature; failed tasks are not reported"
                );
            }
            ErrorReports::default()
        }
    }

    /// Reports one failed ending.
    pub(crate) fn failed(&self, ending: FailedEnding<'_>) {
        #[cfg(feature = "sentry")]
        if let Some(client) = &self.client {
            client.capture_event(event_of(&ending), None);
        }
        #[cfg(not(feature = "sentry"))]
        let _ = ending;
    }

    /// Sends what is pending (at shutdown), waiting at most two seconds.
    pub(crate) fn flush(&self) {
        #[cfg(feature = "sentry")]
        if let Some(client) = &self.client {
            client.flush(Some(std::time::Duration::from_secs(2)));
        }
    }
}

/// The Sentry event of a failed ending: the failure as its message, the
/// kind of failure as its exception type, the task's coordinates as tags.
#[cfg(feature = "sentry")]
fn event_of(ending: &FailedEnding<'_>) -> sentry::protocol::Event<'static> {
    use sentry::protocol::{Event, Exception, Level, Values};
    let kind = format!("{:?}", ending.failure.kind.class());
    let mut event = Event {
        level: Level::Error,
        message: Some(format!("task {} failed: {}", ending.task, ending.failure)),
        exception: Values {
            values: vec![Exception {
                ty: kind.clone(),
                value: Some(ending.failure.to_string()),
                ..Exception::default()
            }],
        },
        logger: Some("redis-tasks".into()),
        ..Event::default()
    };
    if let Some(trace_id) = ending.trace_id {
        event.tags.insert("trace_id".into(), trace_id.to_owned());
    }
    for (key, value) in [
        ("task", ending.task.to_owned()),
        ("queue", ending.queue.to_owned()),
        ("task_id", ending.id.to_owned()),
        ("attempt", ending.attempt.to_string()),
        ("failure", kind),
    ] {
        event.tags.insert(key.into(), value);
    }
    event
}
