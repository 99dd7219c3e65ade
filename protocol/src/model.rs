//! The task record and the outcomes a run can have.
//!
//! Crashes are values first and words second: [`ExitReason`] and
//! [`FailureKind`] say what happened, and their `Display` impls are the one
//! place where the wording shown to users ("killed by signal 11 (SIGSEGV)",
//! "timeout (30 s) reached") is written.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::retry::{Attempt, RetryPolicy};

/// Where a task is in its life.
///
/// `queued -> running -> finished | failed`, `queued -> canceled`,
/// `queued | scheduled -> expired` (an expiry passed before it started),
/// and `running -> queued` when a reentrant task is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Waiting in a queue (or moved to a slot but not started yet).
    Queued,
    /// A worker process is running it.
    Running,
    /// Ended with success (or a failure a middleware marked as handled).
    Finished,
    /// Ended with a failure; the record holds the error text.
    Failed,
    /// Removed from its queue before it ran, or stopped while running by
    /// a cancel request.
    Canceled,
    /// Waiting in the delayed set for its time (a delayed enqueue, or a
    /// retry after its backoff).
    Scheduled,
    /// Its expiry (`EnqueueOptions::expires_at`) passed before it started
    /// (or before its next attempt was due): it was never run (again).
    Expired,
}

impl TaskStatus {
    /// The word stored in Redis and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Finished => "finished",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status word that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for TaskStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "finished" => TaskStatus::Finished,
            "failed" => TaskStatus::Failed,
            "canceled" => TaskStatus::Canceled,
            "scheduled" => TaskStatus::Scheduled,
            "expired" => TaskStatus::Expired,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

/// An earlier attempt of a reentrant task that was interrupted and requeued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedRun {
    /// When the interrupted attempt started, if it had started.
    pub started_at: Option<Timestamp>,
    /// When the attempt was given up.
    pub ended_at: Timestamp,
    /// Why it ended, in the wording of [`FailureKind`].
    pub reason: String,
}

/// Everything Redis holds about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task id (a UUID in its hyphenated form when we made it).
    pub id: String,
    /// The name the task function is registered under.
    pub task: String,
    /// The arguments, as JSON.
    pub args: serde_json::Value,
    /// Where the task is in its life.
    pub status: TaskStatus,
    /// The queue it was enqueued to, and goes back to when requeued.
    pub queue: String,
    /// A readable call string such as `send_report(42, to="x")`.
    pub description: String,
    /// The failure text, for failed tasks.
    pub error: Option<String>,
    /// When it was enqueued (UTC).
    pub enqueued_at: Timestamp,
    /// When its current or last run started.
    pub started_at: Option<Timestamp>,
    /// When it finished, failed or was canceled.
    pub ended_at: Option<Timestamp>,
    /// A JSON object the task may update while it runs.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// Earlier attempts that were interrupted (reentrant tasks only).
    pub aborted_runs: Vec<AbortedRun>,
    /// This task's own timeout in seconds, set by its producer; `None`:
    /// the task function's option, else the `default_task_timeout` setting.
    pub timeout: Option<u64>,
    /// This task's own retry policy, set by its producer; `None`: the task
    /// function's option.
    pub retry: Option<RetryPolicy>,
    /// The ended attempts of a task that was retried, oldest first (empty
    /// until the first retry).
    pub attempts: Vec<Attempt>,
    /// When a scheduled task is due.
    pub run_at: Option<Timestamp>,
    /// What the task function returned, as JSON, once it finished; `None`
    /// while it has not, and when it returned nothing (`()`).
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// The uniqueness key it was enqueued with (`EnqueueOptions::unique`).
    #[serde(default)]
    pub unique: Option<String>,
    /// When the task expires (`EnqueueOptions::expires_at`): not started
    /// by then, it is never run and ends `expired`.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// The W3C trace context the producer gave (`EnqueueOptions::traceparent`).
    #[serde(default)]
    pub traceparent: Option<String>,
}

impl TaskRecord {
    /// Whether the task has ended for good: finished, failed, canceled or
    /// expired.
    pub fn has_ended(&self) -> bool {
        matches!(
            self.status,
            TaskStatus::Finished | TaskStatus::Failed | TaskStatus::Canceled | TaskStatus::Expired
        )
    }

    /// The result read as `T`: `Ok(None)` when there is none (yet).
    pub fn result_as<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Option<T>, serde_json::Error> {
        self.result.clone().map(serde_json::from_value).transpose()
    }
}

/// Builds the readable call string stored as a task's description.
///
/// A JSON array becomes positional arguments, an object keyword arguments
/// (`key=value`), `null` no arguments, and any other value one argument; each
/// value is written as JSON, so `["x", 2]` reads `send("x", 2)`.
pub fn describe_call(task: &str, args: &serde_json::Value) -> String {
    use serde_json::Value;
    let inner = match args {
        Value::Null => String::new(),
        Value::Array(items) => items
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    format!("{task}({inner})")
}

/// How a worker process ended, read from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// It called `exit` with this code.
    Code(i32),
    /// A signal with this number ended it.
    Signal(i32),
}

/// The conventional name of a signal number, such as `SIGSEGV`.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => "unknown signal",
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitReason::Code(code) => write!(f, "exited with code {code}"),
            ExitReason::Signal(9) => {
                write!(f, "killed by signal 9 (SIGKILL) - out of memory?")
            }
            ExitReason::Signal(sig) => {
                write!(f, "killed by signal {sig} ({})", signal_name(sig))
            }
        }
    }
}

/// Why a run failed. The `Display` output is the error text recorded in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The task function returned an error.
    Error(String),
    /// The task function panicked; the text holds message and location.
    Panic(String),
    /// The worker process ended without reporting an outcome.
    Crashed(ExitReason),
    /// The task ran past its timeout and its process group was killed.
    Timeout { secs: u64 },
    /// A shutdown interrupted the task.
    Shutdown,
    /// The supervisor killed the worker process for the reason given (not
    /// a limit, not a crash of its own).
    KilledBySupervisor(String),
    /// Maintenance found the slot running the task dead.
    WorkerDied,
    /// The worker process sent something that is not a valid frame.
    ProtocolViolation(String),
    /// The worker process could not be started or did not answer its handshake.
    StartFailed(String),
    /// The task could not be run as enqueued: unknown name, bad arguments,
    /// a corrupt record.
    Invalid(String),
    /// A reentrant task was interrupted too many times.
    TooManyAbortedRuns { runs: u32, last: String },
    /// A `process_outcome` middleware turned the outcome into a failure or
    /// panicked.
    Middleware(String),
    /// A cancel request stopped the running task: its worker process and
    /// everything it started were killed. Recorded with status `canceled`.
    Canceled,
    /// A limit of the task's isolation profile stopped it.
    LimitExceeded(LimitHit),
    /// A restriction of the task's isolation profile could not be applied,
    /// so the task was not run (never unconfined).
    NotIsolated {
        /// The restriction, as named in the settings (`user`, `network`,
        /// `read_only_paths`...).
        restriction: String,
        /// Why it could not be applied.
        reason: String,
    },
    /// The task's expiry passed before it started, or before its next
    /// attempt was due: it was not run (again). Recorded with status
    /// `expired`; never retried.
    Expired {
        /// The task's expiry.
        at: Timestamp,
        /// The error of its last attempt, when a retry would have come
        /// after the expiry.
        last_error: Option<String>,
    },
}

/// The families of [`FailureKind`], the one grouping that the retry
/// policy (`retry_on`), the settling of reentrant tasks and the metrics
/// read: a new kind of failure is placed here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The task returned an error.
    Error,
    /// The task panicked.
    Panic,
    /// The worker process ended, was killed or never started: not the
    /// task's own report. Retried under `crashes`; a reentrant task goes
    /// back to its queue (bounded by `max_aborted_runs`).
    Crash,
    /// The task's timeout ran out.
    Timeout,
    /// A shutdown stopped the task: a reentrant task always goes back.
    Shutdown,
    /// A cancel request stopped it (status `canceled`).
    Canceled,
    /// Its expiry passed before it (or its next attempt) started (status
    /// `expired`): never retried.
    Expired,
    /// The task could not be run as enqueued: the producer's fault.
    Invalid,
    /// Anything else final: a protocol violation, a middleware's verdict,
    /// a limit, an isolation refusal, too many aborted runs.
    Final,
}

impl FailureKind {
    /// The family this failure belongs to.
    pub fn class(&self) -> FailureClass {
        match self {
            FailureKind::Error(_) => FailureClass::Error,
            FailureKind::Panic(_) => FailureClass::Panic,
            FailureKind::Crashed(_)
            | FailureKind::KilledBySupervisor(_)
            | FailureKind::WorkerDied
            | FailureKind::StartFailed(_) => FailureClass::Crash,
            FailureKind::Timeout { .. } => FailureClass::Timeout,
            FailureKind::Shutdown => FailureClass::Shutdown,
            FailureKind::Canceled => FailureClass::Canceled,
            FailureKind::Expired { .. } => FailureClass::Expired,
            FailureKind::Invalid(_) => FailureClass::Invalid,
            FailureKind::ProtocolViolation(_)
            | FailureKind::TooManyAbortedRuns { .. }
            | FailureKind::Middleware(_)
            | FailureKind::LimitExceeded(_)
            | FailureKind::NotIsolated { .. } => FailureClass::Final,
        }
    }
}

/// Which limit of an isolation profile a task hit, with the limit in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitHit {
    /// `memory_limit`, in bytes; `how` is how the process ended.
    Memory {
        /// The limit.
        bytes: u64,
        /// How the worker process ended.
        how: ExitReason,
    },
    /// `cpu_time_limit`, in seconds.
    CpuTime {
        /// The limit.
        secs: u64,
    },
    /// `process_limit`; `detail` is the task's own error text.
    Processes {
        /// The limit.
        max: u64,
        /// What the task reported.
        detail: String,
    },
    /// A system call of the seccomp deny list, by name when known.
    BlockedSyscall {
        /// The call's name, or a list of the denied calls when the kernel
        /// did not say which one.
        name: String,
    },
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Memory { bytes, how } => write!(
                f,
                "memory limit ({}) exceeded: worker process {how}",
                Bytes(*bytes)
            ),
            LimitHit::CpuTime { secs } => write!(f, "CPU time limit ({secs} s) exceeded"),
            LimitHit::Processes { max, detail } => {
                write!(f, "process limit ({max}) reached: {detail}")
            }
            LimitHit::BlockedSyscall { name } => write!(f, "blocked system call {name}"),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Error(text) => f.write_str(text),
            FailureKind::Panic(text) => write!(f, "panicked: {text}"),
            FailureKind::Crashed(reason) => write!(f, "worker process {reason}"),
            FailureKind::Timeout { secs } => write!(f, "timeout ({secs} s) reached"),
            FailureKind::Shutdown => f.write_str("worker shutdown"),
            FailureKind::KilledBySupervisor(why) => {
                write!(f, "worker process killed by the supervisor: {why}")
            }
            FailureKind::WorkerDied => f.write_str("worker died"),
            FailureKind::ProtocolViolation(detail) => write!(f, "protocol violation: {detail}"),
            FailureKind::StartFailed(detail) => write!(f, "worker failed to start: {detail}"),
            FailureKind::Invalid(detail) => f.write_str(detail),
            FailureKind::TooManyAbortedRuns { runs, last } => {
                write!(f, "gave up after {runs} aborted runs (last: {last})")
            }
            FailureKind::Middleware(detail) => write!(f, "middleware: {detail}"),
            FailureKind::Canceled => f.write_str("canceled while running"),
            FailureKind::LimitExceeded(hit) => hit.fmt(f),
            FailureKind::NotIsolated {
                restriction,
                reason,
            } => write!(
                f,
                "isolation not applied ({restriction}: {reason}); the task was not run"
            ),
            FailureKind::Expired {
                at,
                last_error: None,
            } => write!(f, "expired at {at} before it started; the task was not run"),
            FailureKind::Expired {
                at,
                last_error: Some(last),
            } => write!(
                f,
                "expired at {at} before its next attempt; not retried (last error: {last})"
            ),
        }
    }
}

/// A failed run: what happened, and the text recorded for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What happened.
    pub kind: FailureKind,
    /// When the task's retry policy gives it another attempt: when that
    /// attempt is due. `process_outcome` sees it set on a failure that is
    /// not final, and may set it to `None` to make the failure final (or
    /// return a success to mark the failure handled: no retry then either).
    pub next_attempt: Option<Timestamp>,
}

impl Failure {
    /// A failure of this kind (final: no retry planned).
    pub fn new(kind: FailureKind) -> Self {
        Failure {
            kind,
            next_attempt: None,
        }
    }

    /// The error text recorded in the task record.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

/// The final outcome of a task run, as `process_outcome` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The task succeeded (or a middleware marked its failure as handled).
    Success,
    /// The task failed.
    Failure(Failure),
}

impl Outcome {
    /// A failure of this kind.
    pub fn failure(kind: FailureKind) -> Self {
        Outcome::Failure(Failure::new(kind))
    }

    /// Whether this is a success.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The status a task with this final outcome gets.
    pub fn status(&self) -> TaskStatus {
        match self {
            Outcome::Success => TaskStatus::Finished,
            Outcome::Failure(f) if f.kind.class() == FailureClass::Canceled => TaskStatus::Canceled,
            Outcome::Failure(f) if f.kind.class() == FailureClass::Expired => TaskStatus::Expired,
            Outcome::Failure(_) => TaskStatus::Failed,
        }
    }

    /// When the next attempt is due, for a failure that a retry follows.
    pub fn next_attempt(&self) -> Option<Timestamp> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(f) => f.next_attempt,
        }
    }

    /// The error text, for failures.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(f) => Some(f.message()),
        }
    }
}

/// A byte count as people write it: `256 MiB`, `1.5 GiB`, `512 KiB`, `10 B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (size, unit) in UNITS {
            if self.0 >= size {
                return if self.0.is_multiple_of(size) {
                    write!(f, "{} {unit}", self.0 / size)
                } else {
                    // Precision loss is irrelevant for a message.
                    #[allow(clippy::cast_precision_loss)]
                    let value = self.0 as f64 / size as f64;
                    write!(f, "{value:.1} {unit}")
                };
            }
        }
        write!(f, "{} B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_read_as_documented() {
        assert_eq!(
            ExitReason::Signal(11).to_string(),
            "killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(ExitReason::Code(3).to_string(), "exited with code 3");
        assert_eq!(
            ExitReason::Signal(9).to_string(),
            "killed by signal 9 (SIGKILL) - out of memory?"
        );
        assert_eq!(
            FailureKind::Timeout { secs: 30 }.to_string(),
            "timeout (30 s) reached"
        );
    }

    #[test]
    fn limit_hits_read_as_documented() {
        let memory = LimitHit::Memory {
            bytes: 256 << 20,
            how: ExitReason::Signal(6),
        };
        assert_eq!(
            memory.to_string(),
            "memory limit (256 MiB) exceeded: worker process killed by signal 6 (SIGABRT)"
        );
        let cpu = FailureKind::LimitExceeded(LimitHit::CpuTime { secs: 10 });
        assert_eq!(cpu.to_string(), "CPU time limit (10 s) exceeded");
        let syscall = LimitHit::BlockedSyscall {
            name: "ptrace".into(),
        };
        assert_eq!(syscall.to_string(), "blocked system call ptrace");
        let refused = FailureKind::NotIsolated {
            restriction: "network".into(),
            reason: "operation not permitted".into(),
        };
        assert_eq!(
            refused.to_string(),
            "isolation not applied (network: operation not permitted); the task was not run"
        );
    }

    #[test]
    fn status_round_trips_through_its_word() {
        for s in [
            TaskStatus::Queued,
            TaskStatus::Running,
            TaskStatus::Finished,
            TaskStatus::Failed,
            TaskStatus::Canceled,
            TaskStatus::Scheduled,
            TaskStatus::Expired,
        ] {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
        }
        assert!("done".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn descriptions_read_like_calls() {
        let args = serde_json::json!([42, "x"]);
        assert_eq!(describe_call("send", &args), r#"send(42, "x")"#);
        let args = serde_json::json!({"secs": 1});
        assert_eq!(describe_call("sleep", &args), "sleep(secs=1)");
        assert_eq!(describe_call("noop", &serde_json::Value::Null), "noop()");
        assert_eq!(describe_call("one", &serde_json::json!(7)), "one(7)");
    }
}
