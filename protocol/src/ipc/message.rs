//! The messages a supervisor and a worker process exchange.
//!
//! One conversation: the worker process sends [`FromWorker::Hello`], the
//! supervisor answers [`ToWorker::Setup`] (when that carries a
//! [`Confine`], the worker process applies it and answers
//! [`FromWorker::Confined`] before anything else; a binary with a setup
//! hook then runs it and answers [`FromWorker::SetUp`]), and the worker
//! process says [`FromWorker::Ready`] once it waits for work; then, for
//! each task, the supervisor sends [`ToWorker::Run`], the worker process
//! may send any number of [`FromWorker::Meta`] and [`FromWorker::Progress`]
//! updates and any number of [`FromWorker::Enqueue`] requests (each answered
//! by [`ToWorker::Enqueued`] before the next), and ends with
//! [`FromWorker::Finished`], which carries the task's return value on a
//! success. [`ToWorker::Shutdown`] may arrive at any time
//! while a task runs; [`ToWorker::Exit`] asks an idle worker process to
//! leave. Anything else is a protocol violation.

use std::io::{Read, Write};
use std::path::PathBuf;

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::frame::{FrameError, MAX_FRAME_BYTES, read_frame, write_frame};

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 8;

/// One task to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTask {
    /// The task id.
    pub task_id: String,
    /// The registered name of the task function.
    pub task: String,
    /// The arguments as JSON text, exactly as stored in Redis.
    pub args_json: String,
    /// The task's meta object as JSON text.
    pub meta_json: String,
    /// The W3C trace context of the supervisor's span of this run, when
    /// the task was enqueued with one (`TaskContext::traceparent`).
    pub traceparent: Option<String>,
}

/// A task the running task asks its supervisor to enqueue
/// (`TaskContext::enqueue`): the producer API's options, checked by the
/// supervisor against the task's profile before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRequest {
    /// The registered name of the task function to run.
    pub task: String,
    /// Its arguments as JSON text.
    pub args_json: String,
    /// The queue; `None`: the queue of the task that asks.
    pub queue: Option<String>,
    /// Run no earlier than this many milliseconds after it is written.
    pub delay_ms: Option<u64>,
    /// Its own timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// Its own retry policy, as the JSON the `retry` field of a record holds.
    pub retry_json: Option<String>,
    /// A uniqueness key (only with [`ChildMode::Now`]).
    pub unique_key: Option<String>,
    /// Not started this many milliseconds after it is written, it never
    /// runs and ends `expired`.
    pub expires_in_ms: Option<u64>,
    /// When it is written.
    pub mode: ChildMode,
}

/// When a requested task is written to Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildMode {
    /// At once; the request's answer is its id.
    #[default]
    Now,
    /// Held by the supervisor and written by the same Redis transition
    /// that records the asking task finished; never written if it fails,
    /// crashes, times out or is retried.
    OnSuccess,
}

/// What a task run came to, as the worker process saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskResult {
    /// The chain and the task returned `Ok`.
    Success {
        /// The task's return value as JSON text; `None` when it returned
        /// nothing (`()`, JSON `null`).
        output: Option<String>,
    },
    /// The chain or the task returned an error with this text.
    Error(String),
    /// The task panicked: message and location.
    Panic(String),
    /// The task could not be run: unknown name, arguments of the wrong shape.
    Invalid(String),
}

impl TaskResult {
    /// A success without a return value.
    pub const DONE: TaskResult = TaskResult::Success { output: None };

    /// What the worker process reported, as the outcome `process_outcome`
    /// sees, and the return value of a success.
    pub fn into_parts(self) -> (crate::model::Outcome, Option<String>) {
        use crate::model::{FailureKind, Outcome};
        match self {
            TaskResult::Success { output } => (Outcome::Success, output),
            TaskResult::Error(text) => (Outcome::failure(FailureKind::Error(text)), None),
            TaskResult::Panic(text) => (Outcome::failure(FailureKind::Panic(text)), None),
            TaskResult::Invalid(text) => (Outcome::failure(FailureKind::Invalid(text)), None),
        }
    }
}

impl From<TaskResult> for crate::model::Outcome {
    /// What the worker process reported, as the outcome `process_outcome`
    /// sees (the return value dropped).
    fn from(result: TaskResult) -> Self {
        result.into_parts().0
    }
}

/// Restrictions a worker process applies to itself right after `Setup`,
/// before it runs any task: those that need allocation to build and so
/// cannot be applied between `fork` and `exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confine {
    /// Landlock: whether to restrict the filesystem at all.
    pub landlock: bool,
    /// Landlock: paths readable (and executable) below.
    pub read_only_paths: Vec<PathBuf>,
    /// Landlock: paths readable and writable below.
    pub read_write_paths: Vec<PathBuf>,
    /// Whether to install the seccomp deny list.
    pub seccomp: bool,
    /// `network = false`: `socket(AF_UNIX, ...)` fails (a network
    /// namespace does not hide Unix sockets in the filesystem, such as
    /// Redis's), and so does io_uring, which could open one unseen.
    pub deny_unix_sockets: bool,
}

/// A restriction a worker process could not apply to itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The restriction, as the settings name it (`read_only_paths`,
    /// `seccomp`...).
    pub restriction: String,
    /// Why it could not be applied.
    pub reason: String,
}

/// Supervisor to worker process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// The answer to `Hello`: how to set the worker process up.
    Setup {
        /// The names of the active middleware, in chain order.
        middleware: Vec<String>,
        /// Restrictions to apply before any task runs; the worker process
        /// answers [`FromWorker::Confined`].
        confine: Option<Confine>,
    },
    /// Run this task.
    Run(RunTask),
    /// A shutdown was requested: stop the running task as soon as no
    /// postpone-shutdown guard is held.
    Shutdown,
    /// No more work: exit.
    Exit,
    /// The answer to [`FromWorker::Enqueue`]: the new task's id, or why
    /// the supervisor refused or could not write it.
    Enqueued(Result<String, String>),
}

/// Worker process to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The first frame: who is speaking and which protocol it speaks.
    Hello {
        /// [`PROTOCOL_VERSION`] of the worker process.
        version: u32,
        /// Its process id as it sees it: in the worker processes' PID
        /// namespace when they have one, so not a pid the supervisor may
        /// signal (it uses the pid its `fork`, or the fork server's, gave).
        pid: u32,
    },
    /// The answer to a `Setup` with restrictions: `None` when every one was
    /// applied; else the one that could not be, and the process exits.
    Confined {
        /// What could not be applied.
        refused: Option<Refusal>,
    },
    /// The running task replaced its meta object.
    Meta {
        /// The task id.
        task_id: String,
        /// The whole meta object as JSON text.
        meta_json: String,
    },
    /// The running task ended: how, with its return value on a success.
    Finished {
        /// The task id.
        task_id: String,
        /// How it ended.
        result: TaskResult,
    },
    /// Set-up is over and the process waits for its first task: the
    /// supervisor counts its threads now, before any task code ran, so that
    /// a task that leaves a thread behind is noticed.
    Ready,
    /// The answer to `Setup` (after `Confined`, when that was asked for)
    /// from a binary with a per-process setup hook, once the hook ran:
    /// `None` when it succeeded; else its error, and the process exits.
    SetUp {
        /// The hook's error text.
        error: Option<String>,
    },
    /// The running task reported its progress (rate-limited by the worker
    /// process; the supervisor cuts the message again).
    Progress {
        /// The task id.
        task_id: String,
        /// How far it is.
        progress: crate::Progress,
    },
    /// The running task asks for another task to be enqueued; the
    /// supervisor answers [`ToWorker::Enqueued`].
    Enqueue {
        /// The id of the task that asks.
        task_id: String,
        /// What to enqueue.
        request: ChildRequest,
    },
}

type Wire = Configuration<LittleEndian, Varint, Limit<{ MAX_FRAME_BYTES as usize }>>;

/// The bincode configuration of every frame. The limit stops a length field
/// inside a hostile payload from claiming more memory than a frame can hold.
fn wire() -> Wire {
    config::standard().with_limit::<{ MAX_FRAME_BYTES as usize }>()
}

/// Encodes `msg` as one payload.
pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, FrameError> {
    bincode::serde::encode_to_vec(msg, wire())
        .map_err(|e| FrameError::Malformed(format!("cannot encode: {e}")))
}

/// Encodes `msg` into one frame and writes it.
pub fn send<M: Serialize>(w: &mut impl Write, msg: &M) -> Result<(), FrameError> {
    write_frame(w, &encode(msg)?, MAX_FRAME_BYTES)
}

/// Reads and decodes one frame; `Ok(None)` at a clean end of stream.
pub fn recv<M: DeserializeOwned>(r: &mut impl Read) -> Result<Option<M>, FrameError> {
    let Some(payload) = read_frame(r, MAX_FRAME_BYTES)? else {
        return Ok(None);
    };
    decode(&payload).map(Some)
}

/// Decodes one payload; trailing bytes are an error.
pub fn decode<M: DeserializeOwned>(payload: &[u8]) -> Result<M, FrameError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, wire())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run() -> ToWorker {
        ToWorker::Run(RunTask {
            task_id: "0b1c".into(),
            task: "sleep".into(),
            args_json: r#"{"secs":1}"#.into(),
            meta_json: "{}".into(),
            traceparent: None,
        })
    }

    #[test]
    fn messages_round_trip() {
        let mut buf = Vec::new();
        send(&mut buf, &run()).expect("encode");
        send(&mut buf, &ToWorker::Shutdown).expect("encode");
        let mut r = buf.as_slice();
        assert_eq!(recv::<ToWorker>(&mut r).expect("decode"), Some(run()));
        assert_eq!(
            recv::<ToWorker>(&mut r).expect("decode"),
            Some(ToWorker::Shutdown)
        );
        assert_eq!(recv::<ToWorker>(&mut r).expect("eof"), None);
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        let err = decode::<FromWorker>(&[0xff, 0xff, 0xff]).expect_err("garbage");
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        let mut payload = bincode::serde::encode_to_vec(ToWorker::Exit, wire()).expect("encode");
        payload.push(0);
        let err = decode::<ToWorker>(&payload).expect_err("trailing");
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn a_huge_claimed_string_length_does_not_allocate() {
        // Variant 1 (Meta), then a string length of 2^62.
        let payload = [1u8, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x40];
        assert!(decode::<FromWorker>(&payload).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<FromWorker>(&bytes);
            let _ = decode::<ToWorker>(&bytes);
            let mut r = bytes.as_slice();
            let _ = recv::<FromWorker>(&mut r);
        }

        #[test]
        fn any_run_message_round_trips(id in ".*", task in ".*", args in ".*") {
            let msg = ToWorker::Run(RunTask { task_id: id, task, args_json: args, meta_json: "{}".into(), traceparent: None });
            let mut buf = Vec::new();
            send(&mut buf, &msg).expect("encode");
            prop_assert_eq!(recv::<ToWorker>(&mut buf.as_slice()).expect("decode"), Some(msg));
        }
    }
}
