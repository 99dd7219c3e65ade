//! Options of one enqueue call: when the task may run, its own timeout and
//! retry policy, its uniqueness key ([`EnqueueOptions`]); and what an
//! enqueue with options did ([`Enqueued`]).
//!
//! [`Queue::enqueue_with`](crate::Queue::enqueue_with) takes them;
//! [`Queue::enqueue`](crate::Queue::enqueue) is the same call with the
//! defaults (run now, the task function's timeout and retry policy).
//! Each option is stored in the task's hash (`run_at` and the delayed set
//! `P:scheduled`, `timeout`, `retry`, `expires_at`), so a producer in another language
//! can set them with plain commands (see `docs/redis-schema.md`).

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks_protocol::retry::RetryPolicy;

use super::StoreError;
use super::record::{score, time_text};

/// The longest uniqueness key accepted, in bytes.
pub const MAX_UNIQUE_KEY_BYTES: usize = 512;

/// The furthest ahead a task may be delayed (`delay` or `at`): 10 years.
/// Later times are refused at enqueue, so no time derived from a record
/// comes near the end of the calendar.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// A time of an enqueue option: when a task may run, when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// This long after the enqueue.
    In(Duration),
    /// At this instant.
    At(Timestamp),
}

impl When {
    /// The instant, for an enqueue at `now` (the end of time when a
    /// duration overflows it).
    fn after(self, now: Timestamp) -> Timestamp {
        match self {
            When::In(span) => jiff::SignedDuration::try_from(span)
                .ok()
                .and_then(|span| now.checked_add(span).ok())
                .unwrap_or(Timestamp::MAX),
            When::At(at) => at,
        }
    }
}

/// Options of one enqueue call (builder style: each method takes `self`
/// and returns the changed options).
///
/// ```
/// use std::time::Duration;
/// use redis_tasks_store::EnqueueOptions;
/// use redis_tasks_protocol::RetryPolicy;
///
/// let options = EnqueueOptions::new()
///     .delay(Duration::from_secs(600))
///     .timeout(Duration::from_secs(30))
///     .retry(RetryPolicy::new(5));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    timeout: Option<Duration>,
    when: Option<When>,
    retry: Option<RetryPolicy>,
    unique: Option<String>,
    expires: Option<When>,
    traceparent: Option<String>,
}

impl EnqueueOptions {
    /// The defaults: run as soon as a worker is free, with the task
    /// function's timeout and retry policy.
    pub fn new() -> Self {
        EnqueueOptions::default()
    }

    /// The task's own timeout, in place of the task function's option and
    /// the `default_task_timeout` setting. Stored in whole seconds, rounded
    /// up; zero is refused at enqueue.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs the task no earlier than `delay` after the enqueue (RQ's
    /// `enqueue_in`, Celery's `countdown`). A zero delay means now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.when = Some(When::In(delay));
        self
    }

    /// Runs the task no earlier than `at` (RQ's `enqueue_at`, Celery's
    /// `eta`). A time in the past means now. Replaces [`delay`](Self::delay).
    pub fn at(mut self, at: Timestamp) -> Self {
        self.when = Some(When::At(at));
        self
    }

    /// The task's own retry policy, in place of the task function's option.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// The task expires `ttl` after the enqueue: not started by then, it
    /// is never run and ends with status `expired` (Celery's `expires`,
    /// RQ's `ttl`). Retries respect it: an attempt that would start later
    /// is not made. A zero `ttl` is refused at enqueue.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires = Some(When::In(ttl));
        self
    }

    /// The task expires at `at` (as [`expires_in`](Self::expires_in));
    /// replaces it. A time that is not after the enqueue, or not after
    /// the task's [`delay`](Self::delay) or [`at`](Self::at), is refused at
    /// enqueue. Compared with Redis's clock when the task is fetched.
    pub fn expires_at(mut self, at: Timestamp) -> Self {
        self.expires = Some(When::At(at));
        self
    }

    /// The W3C trace context of the request that enqueues the task
    /// (`00-<trace id>-<parent span id>-<flags>`): the supervisor's spans
    /// of its wait and its run become children of it (feature `otlp`,
    /// docs/tracing-and-errors.md), and the task sees its run span's
    /// context. Checked at enqueue.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// These options, with the trace context of the calling code when
    /// none was given (feature `opentelemetry`; without it, these).
    pub(crate) fn or_current_trace(&self) -> std::borrow::Cow<'_, EnqueueOptions> {
        #[cfg(feature = "opentelemetry")]
        if self.traceparent.is_none()
            && let Some(current) = crate::trace_context::current()
        {
            return std::borrow::Cow::Owned(self.clone().traceparent(current));
        }
        std::borrow::Cow::Borrowed(self)
    }

    /// The stored `traceparent` field (empty without one).
    pub(crate) fn traceparent_field(&self) -> &str {
        self.traceparent.as_deref().unwrap_or("")
    }

    /// Whether these are the defaults (the plain enqueue path).
    pub(crate) fn is_plain(&self) -> bool {
        self.timeout.is_none()
            && self.when.is_none()
            && self.retry.is_none()
            && self.unique.is_none()
            && self.expires.is_none()
            && self.traceparent.is_none()
    }

    /// When the task is due, if that is after `now`.
    pub(crate) fn run_at(&self, now: Timestamp) -> Option<Timestamp> {
        let at = self.when?.after(now);
        (at > now).then_some(at)
    }

    /// The `expires_at` field (empty without an expiry): an expiry that
    /// is not after `now`, or not after the time the task is due, is
    /// refused.
    pub(crate) fn expiry_field(&self, now: Timestamp) -> Result<String, StoreError> {
        let Some(expires) = self.expires else {
            return Ok(String::new());
        };
        let at = expires.after(now);
        let refuse = |reason: String| {
            Err(StoreError::InvalidOption {
                option: "expires",
                reason,
            })
        };
        if at <= now {
            return match expires {
                When::In(_) => refuse("the time to live is zero".to_owned()),
                When::At(_) => refuse(format!("{at} is not in the future (now is {now})")),
            };
        }
        if let Some(due) = self.run_at(now)
            && at <= due
        {
            return refuse(format!(
                "the task would expire at {at}, before it is due at {due}"
            ));
        }
        Ok(time_text(at))
    }

    /// The `run_at` field and its score in the delayed set (both empty
    /// when the task is due now); a time more than [`MAX_DELAY`] after
    /// `now` is refused.
    pub(crate) fn when_fields(&self, now: Timestamp) -> Result<(String, String), StoreError> {
        let Some(at) = self.run_at(now) else {
            return Ok((String::new(), String::new()));
        };
        let latest = jiff::SignedDuration::try_from(MAX_DELAY)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX);
        if at > latest {
            return Err(StoreError::InvalidOption {
                option: "delay",
                reason: format!(
                    "{at} is more than {} days ahead",
                    MAX_DELAY.as_secs() / 86_400
                ),
            });
        }
        Ok((time_text(at), score(at)))
    }

    /// The `timeout` field: whole seconds, rounded up; zero, and more than
    /// `max_secs` (the `max_task_timeout` setting), are refused.
    pub(crate) fn timeout_field(&self, max_secs: u64) -> Result<String, StoreError> {
        let Some(timeout) = self.timeout else {
            return Ok(String::new());
        };
        if timeout.is_zero() {
            return Err(StoreError::InvalidOption {
                option: "timeout",
                reason: "it is zero".to_owned(),
            });
        }
        let secs = timeout
            .as_secs()
            .saturating_add(u64::from(timeout.subsec_nanos() > 0));
        if secs > max_secs {
            return Err(StoreError::InvalidOption {
                option: "timeout",
                reason: format!("{secs} s is over max_task_timeout ({max_secs} s)"),
            });
        }
        Ok(secs.to_string())
    }

    /// The `retry` field: the policy's JSON.
    pub(crate) fn retry_field(&self) -> Result<String, StoreError> {
        let Some(policy) = self.retry else {
            return Ok(String::new());
        };
        policy.validate().map_err(|e| StoreError::InvalidOption {
            option: "retry",
            reason: e.to_string(),
        })?;
        Ok(policy.to_json())
    }

    /// A uniqueness key: while a task enqueued with the same key is
    /// queued, scheduled or running, enqueueing again writes nothing and
    /// returns that task's id. The key is freed when that task ends for
    /// good (finished, failed, canceled, expired). Any text of 1 to 512 bytes
    /// without control characters, e.g. `import:42`.
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique = Some(key.into());
        self
    }

    /// The uniqueness key, if any.
    pub fn unique_key(&self) -> Option<&str> {
        self.unique.as_deref()
    }

    /// Refuses options the schema cannot hold.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if let Some(text) = &self.traceparent {
            redis_tasks_protocol::TraceParent::parse(text).map_err(|reason| {
                StoreError::InvalidOption {
                    option: "traceparent",
                    reason,
                }
            })?;
        }
        let Some(key) = &self.unique else {
            return Ok(());
        };
        let reason = if key.is_empty() {
            Some("it is empty")
        } else if key.len() > MAX_UNIQUE_KEY_BYTES {
            Some("it is longer than 512 bytes")
        } else if key.chars().any(char::is_control) {
            Some("it contains a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StoreError::InvalidName {
                what: "uniqueness key",
                name: key.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// What an enqueue with options did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new task was written; its id.
    New(String),
    /// A live task already held the uniqueness key: nothing was written;
    /// the id of that task.
    Existing(String),
}

impl Enqueued {
    /// The task's id, new or existing.
    pub fn id(&self) -> &str {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }

    /// The task's id, new or existing.
    pub fn into_id(self) -> String {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }

    /// Whether a new task was written.
    pub fn is_new(&self) -> bool {
        matches!(self, Enqueued::New(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_in_the_past_or_now_means_now() {
        let now = Timestamp::now();
        assert_eq!(EnqueueOptions::new().run_at(now), None);
        assert_eq!(
            EnqueueOptions::new().delay(Duration::ZERO).run_at(now),
            None
        );
        let past = now - jiff::SignedDuration::from_secs(3600);
        assert_eq!(EnqueueOptions::new().at(past).run_at(now), None);
        let later = EnqueueOptions::new().delay(Duration::from_secs(600));
        assert_eq!(
            later.run_at(now),
            Some(now + jiff::SignedDuration::from_secs(600))
        );
        assert!(
            EnqueueOptions::new()
                .delay(Duration::MAX)
                .run_at(now)
                .is_some()
        );
        assert!(
            EnqueueOptions::new()
                .delay(Duration::MAX)
                .when_fields(now)
                .is_err()
        );
        assert!(
            EnqueueOptions::new()
                .delay(MAX_DELAY)
                .when_fields(now)
                .is_ok()
        );
        assert!(
            EnqueueOptions::new()
                .at(Timestamp::MAX)
                .when_fields(now)
                .is_err()
        );
    }

    #[test]
    fn an_expiry_must_come_after_the_enqueue_and_the_delay() {
        let now = Timestamp::now();
        let secs = |n| jiff::SignedDuration::from_secs(n);
        let field = |o: EnqueueOptions| o.expiry_field(now);
        assert_eq!(field(EnqueueOptions::new()).ok(), Some(String::new()));
        assert_eq!(
            field(EnqueueOptions::new().expires_in(Duration::from_secs(60))).ok(),
            Some(time_text(now + secs(60)))
        );
        for bad in [
            EnqueueOptions::new().expires_in(Duration::ZERO),
            EnqueueOptions::new().expires_at(now - secs(1)),
            EnqueueOptions::new().expires_at(now),
            EnqueueOptions::new()
                .delay(Duration::from_secs(600))
                .expires_in(Duration::from_secs(60)),
            EnqueueOptions::new()
                .at(now + secs(60))
                .expires_at(now + secs(60)),
        ] {
            assert!(
                matches!(
                    field(bad.clone()),
                    Err(StoreError::InvalidOption {
                        option: "expires",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert!(
            field(
                EnqueueOptions::new()
                    .delay(Duration::from_secs(60))
                    .expires_in(Duration::from_secs(120))
            )
            .is_ok()
        );
    }

    #[test]
    fn timeouts_are_whole_seconds_rounded_up_and_never_zero() {
        let t = |d| EnqueueOptions::new().timeout(d).timeout_field(3600);
        assert_eq!(t(Duration::from_secs(30)).ok(), Some("30".to_owned()));
        assert_eq!(t(Duration::from_secs(3600)).ok(), Some("3600".to_owned()));
        for huge in [Duration::from_secs(3601), Duration::MAX] {
            assert!(
                matches!(t(huge), Err(StoreError::InvalidOption { reason, .. }) if reason.contains("max_task_timeout"))
            );
        }
        assert_eq!(t(Duration::from_millis(1500)).ok(), Some("2".to_owned()));
        assert!(matches!(
            t(Duration::ZERO),
            Err(StoreError::InvalidOption {
                option: "timeout",
                ..
            })
        ));
        assert!(EnqueueOptions::new().is_plain());
        assert!(
            !EnqueueOptions::new()
                .expires_in(Duration::from_secs(1))
                .is_plain()
        );
        assert!(!EnqueueOptions::new().retry(RetryPolicy::new(1)).is_plain());
    }
}
