//! Retrying failed tasks: the policy (how many times, how long to wait,
//! which endings) and the record of each attempt.
//!
//! A policy is plain data: the task function's options carry one, and a
//! producer may store one with a single task (the `retry` field of the task
//! hash, as JSON) to override it. The supervisor asks [`RetryPolicy::retries`]
//! whether an ending is retried and [`RetryPolicy::delay`] how long the task
//! waits in the delayed set before its next attempt. Randomness for the
//! jitter is passed in, so the arithmetic is pure and tested here.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::{FailureClass, FailureKind, TaskStatus};

/// How the computed backoff is randomised, so that many tasks that failed
/// together do not all come back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// The delay is exactly the computed backoff.
    None,
    /// Uniform between half the backoff and the whole of it.
    Equal,
    /// Uniform between zero and the backoff (the default; AWS's "full
    /// jitter", Celery's `retry_jitter`).
    Full,
}

/// Which endings of an attempt a retry follows.
///
/// A worker shutdown is never among them: it follows the reentrancy rules
/// (a reentrant task goes back to the front of its queue, another one
/// fails). Cancellation, bad input (unknown task, bad arguments), isolation
/// limits, protocol violations and middleware failures are never retried
/// either: running again would end the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryOn {
    /// The task returned an error.
    pub errors: bool,
    /// The task panicked.
    pub panics: bool,
    /// The worker process died without a result (a signal, `exit`), could
    /// not start, or its supervisor died.
    pub crashes: bool,
    /// The task ran past its timeout.
    pub timeouts: bool,
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn {
            errors: true,
            panics: true,
            crashes: true,
            timeouts: false,
        }
    }
}

impl RetryOn {
    /// Whether an attempt that failed with `kind` is retried.
    pub fn covers(&self, kind: &FailureKind) -> bool {
        match kind.class() {
            FailureClass::Error => self.errors,
            FailureClass::Panic => self.panics,
            FailureClass::Crash => self.crashes,
            FailureClass::Timeout => self.timeouts,
            FailureClass::Shutdown
            | FailureClass::Canceled
            | FailureClass::Expired
            | FailureClass::Invalid
            | FailureClass::Final => false,
        }
    }
}

/// A retry policy: up to `max_retries` further attempts after the first,
/// the n-th one after a backoff of `min(cap, base * factor^(n-1))`,
/// randomised by `jitter`.
///
/// The defaults follow Celery's `retry_backoff`: base 1 s, factor 2, cap
/// 10 minutes, full jitter, retrying errors, panics and crashes. In JSON
/// (the `retry` field of a task hash) every field may be left out and then
/// has its default; `max_retries` defaults to 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// How many times a failed task is tried again (so `max_retries + 1`
    /// attempts in all).
    pub max_retries: u32,
    /// The backoff before the first retry (before jitter).
    #[serde(with = "secs")]
    pub base: Duration,
    /// By how much the backoff grows from one retry to the next (at least 1).
    pub factor: f64,
    /// The longest backoff.
    #[serde(with = "secs")]
    pub cap: Duration,
    /// How the backoff is randomised.
    pub jitter: Jitter,
    /// Which endings are retried.
    pub on: RetryOn,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new(0)
    }
}

// The factor is checked to be finite when a policy is built or read, so
// equality is reflexive.
impl Eq for RetryPolicy {}

/// Why a retry policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry policy: {0}")]
pub struct InvalidRetryPolicy(pub String);

/// The most retries a policy may ask for: every attempt is kept in the
/// task's record, which must stay small.
pub const MAX_RETRIES: u32 = 1000;

/// The longest backoff (`base` or `cap`) a policy may ask for: 30 days.
/// Longer ones are refused at enqueue and when read from a record, so the
/// time of a next attempt is always a plain, near date.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 24 * 3600);

impl RetryPolicy {
    /// Up to `max_retries` retries (at most [`MAX_RETRIES`]) with the
    /// default backoff.
    pub fn new(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries: max_retries.min(MAX_RETRIES),
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(600),
            jitter: Jitter::Full,
            on: RetryOn::default(),
        }
    }

    /// Sets the backoff before the first retry.
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the growth factor of the backoff (values below 1, NaN or
    /// infinite are taken as 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() && factor >= 1.0 {
            factor
        } else {
            1.0
        };
        self
    }

    /// Sets the longest backoff.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets which endings are retried.
    pub fn on(mut self, on: RetryOn) -> Self {
        self.on = on;
        self
    }

    /// Also retries attempts that ran past their timeout.
    pub fn with_timeouts(mut self) -> Self {
        self.on.timeouts = true;
        self
    }

    /// Checks a policy read from outside (a task hash written by another
    /// program): at most [`MAX_RETRIES`] retries, the factor finite and at
    /// least 1, `base` and `cap` at most [`MAX_BACKOFF`].
    pub fn validate(&self) -> Result<(), InvalidRetryPolicy> {
        for (name, value) in [("base", self.base), ("cap", self.cap)] {
            if value > MAX_BACKOFF {
                return Err(InvalidRetryPolicy(format!(
                    "{name} of {} s is over the limit of {} s (30 days)",
                    value.as_secs(),
                    MAX_BACKOFF.as_secs()
                )));
            }
        }
        if self.max_retries > MAX_RETRIES {
            return Err(InvalidRetryPolicy(format!(
                "max_retries {} is over the limit of {MAX_RETRIES}",
                self.max_retries
            )));
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(InvalidRetryPolicy(format!(
                "factor {} is not a finite number of at least 1",
                self.factor
            )));
        }
        Ok(())
    }

    /// Reads a policy from its JSON form (the `retry` field of a task hash).
    pub fn from_json(text: &str) -> Result<Self, InvalidRetryPolicy> {
        let policy: RetryPolicy =
            serde_json::from_str(text).map_err(|e| InvalidRetryPolicy(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// The JSON form stored in a task hash.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers and words cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether an attempt that failed with `kind`, after `retries_done`
    /// earlier retries, is followed by another attempt.
    pub fn retries(&self, kind: &FailureKind, retries_done: usize) -> bool {
        let done = u32::try_from(retries_done).unwrap_or(u32::MAX);
        done < self.max_retries && self.on.covers(kind)
    }

    /// The backoff before retry number `retry` (1 for the first), before
    /// jitter: `min(cap, base * factor^(retry-1))`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exponent);
        let cap = self.cap.as_secs_f64();
        if !secs.is_finite() || secs >= cap {
            return self.cap;
        }
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The wait before retry number `retry`, with jitter drawn from
    /// `random`, a number in `[0, 1)`.
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let backoff = self.backoff(retry);
        let r = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self.jitter {
            Jitter::None => backoff,
            Jitter::Full => backoff.mul_f64(r),
            Jitter::Equal => backoff / 2 + (backoff / 2).mul_f64(r),
        }
    }
}

impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let jitter = match self.jitter {
            Jitter::None => "no",
            Jitter::Equal => "equal",
            Jitter::Full => "full",
        };
        write!(
            f,
            "up to {} retries, backoff {:?} x{} capped at {:?}, {jitter} jitter",
            self.max_retries, self.base, self.factor, self.cap
        )
    }
}

/// Durations as seconds with a fraction in JSON (`1.5`), so that producers
/// in other languages can write them.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// One ended attempt of a task that was retried, as kept in its record
/// (`attempts`, oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the attempt started, if it had started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Timestamp,
    /// How it ended: `finished`, `failed` or `canceled`.
    pub status: TaskStatus,
    /// The failure text, for a failed attempt.
    #[serde(default)]
    pub error: Option<String>,
    /// When the next attempt is due, when one follows.
    #[serde(default)]
    pub next_attempt_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExitReason;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_cap() {
        let p = RetryPolicy::new(10)
            .base(100 * MS)
            .factor(3.0)
            .cap(Duration::from_secs(2))
            .jitter(Jitter::None);
        assert_eq!(p.delay(1, 0.7), 100 * MS);
        assert_eq!(p.delay(2, 0.7), 300 * MS);
        assert_eq!(p.delay(3, 0.7), 900 * MS);
        assert_eq!(p.delay(4, 0.7), Duration::from_secs(2));
        assert_eq!(p.delay(u32::MAX, 0.7), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_within_its_range() {
        let p = RetryPolicy::new(3).base(Duration::from_secs(8));
        assert_eq!(p.delay(1, 0.0), Duration::ZERO);
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(4));
        let equal = p.jitter(Jitter::Equal);
        assert_eq!(equal.delay(1, 0.0), Duration::from_secs(4));
        assert_eq!(equal.delay(1, 1.0), Duration::from_secs(8));
        assert_eq!(p.delay(1, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn the_default_retries_errors_panics_and_crashes_not_timeouts() {
        let p = RetryPolicy::new(2);
        assert!(p.retries(&FailureKind::Error("x".into()), 0));
        assert!(p.retries(&FailureKind::Panic("x".into()), 1));
        assert!(p.retries(&FailureKind::Crashed(ExitReason::Signal(11)), 1));
        assert!(p.retries(&FailureKind::WorkerDied, 0));
        assert!(!p.retries(&FailureKind::Error("x".into()), 2));
        assert!(!p.retries(&FailureKind::Timeout { secs: 1 }, 0));
        assert!(
            p.with_timeouts()
                .retries(&FailureKind::Timeout { secs: 1 }, 0)
        );
        for never in [
            FailureKind::Shutdown,
            FailureKind::Canceled,
            FailureKind::Invalid("unknown task".into()),
            FailureKind::Middleware("no".into()),
        ] {
            assert!(!p.with_timeouts().retries(&never, 0), "{never:?}");
        }
    }

    #[test]
    fn a_policy_round_trips_through_json_and_bad_ones_are_refused() {
        let p = RetryPolicy::new(4)
            .base(Duration::from_millis(1500))
            .jitter(Jitter::Equal);
        assert_eq!(RetryPolicy::from_json(&p.to_json()), Ok(p));
        let text = r#"{"max_retries":1,"base":1,"factor":0.5,"cap":10,"jitter":"none",
            "on":{"errors":true,"panics":true,"crashes":true,"timeouts":false}}"#;
        assert!(RetryPolicy::from_json(text).is_err());
        assert!(RetryPolicy::from_json(r#"{"max_retries":-1}"#).is_err());
        assert!(RetryPolicy::from_json(r#"{"max_retries":1001}"#).is_err());
        assert!(RetryPolicy::from_json(r#"{"max_retries":1,"cap":1e18}"#).is_err());
        assert!(RetryPolicy::from_json(r#"{"max_retries":1,"base":2592001}"#).is_err());
        assert!(RetryPolicy::from_json(r#"{"max_retries":1,"cap":2592000}"#).is_ok());
        assert_eq!(RetryPolicy::new(u32::MAX).max_retries, MAX_RETRIES);
        assert_eq!(RetryPolicy::new(1).factor(f64::NAN).factor, 1.0);
    }
}
