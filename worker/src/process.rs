//! The worker-process loop.
//!
//! A worker process is the user's binary started again by its supervisor,
//! with [`WORKER_FD_ARG`](redis_tasks_protocol::ipc::WORKER_FD_ARG) naming
//! the inherited socket. It says hello, then runs one task at a time: read
//! [`ToWorker::Run`], run the middleware chain around the task inside
//! `catch_unwind`, reply [`FromWorker::Finished`]. Its two threads take
//! turns at the socket ([`Turns`]): while one runs a task the other reads,
//! so a shutdown request is seen at once. The
//! process never opens a Redis connection: meta updates go to the
//! supervisor, which writes them.

use std::io;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use redis_tasks_protocol::Progress;
use redis_tasks_protocol::ipc::{
    ChildRequest, FrameError, FromWorker, MAX_FRAME_BYTES, PROTOCOL_VERSION, RunTask, TaskResult,
    ToWorker, recv, send,
};
use serde_json::{Map, Value};

use crate::context::{MetaSink, TaskContext};
use crate::middleware::{Middleware, MiddlewareChain, MiddlewareError};
use crate::panic;
use crate::registry::{TaskError, TaskRegistry};
use crate::setup::SetupState;
use crate::shutdown::{ShutdownState, Trigger};
use crate::sys;

/// Exit code of a worker process ended by a shutdown request.
pub const EXIT_SHUTDOWN: i32 = 75;
/// How long a task whose last postpone-shutdown guard was dropped during a
/// shutdown may take to return and report before the process exits.
pub const GUARD_RELEASE_GRACE: Duration = Duration::from_millis(200);
/// Exit code of a worker process whose supervisor closed the channel.
pub const EXIT_CHANNEL_CLOSED: i32 = 76;
/// Exit code of a worker process that received a frame it cannot read.
pub const EXIT_PROTOCOL: i32 = 77;

/// Why a worker process could not serve.
#[derive(Debug, thiserror::Error)]
pub enum WorkerProcessError {
    /// The inherited descriptor is not a usable socket.
    #[error("cannot use the inherited ipc descriptor {fd}: {error}")]
    Descriptor {
        /// The descriptor number.
        fd: i32,
        /// Why.
        error: io::Error,
    },
    /// Talking to the supervisor failed.
    #[error("ipc with the supervisor failed: {0}")]
    Ipc(FrameError),
    /// The supervisor asked for middleware this binary does not have.
    #[error(transparent)]
    Middleware(#[from] MiddlewareError),
    /// Setting up the process failed.
    #[error("worker process set-up failed: {0}")]
    Io(io::Error),
}

impl From<FrameError> for WorkerProcessError {
    fn from(e: FrameError) -> Self {
        WorkerProcessError::Ipc(e)
    }
}

impl From<io::Error> for WorkerProcessError {
    fn from(e: io::Error) -> Self {
        WorkerProcessError::Io(e)
    }
}

/// Sends meta updates and enqueue requests to the supervisor over the
/// socket; the thread reading the socket hands back the answers to
/// enqueue requests.
struct IpcMeta {
    writer: Arc<Mutex<UnixStream>>,
    answers: Mutex<mpsc::Receiver<Result<String, String>>>,
}

impl MetaSink for IpcMeta {
    fn send_meta(&self, task_id: &str, meta: &Map<String, Value>) -> Result<(), String> {
        let msg = FromWorker::Meta {
            task_id: task_id.to_owned(),
            meta_json: Value::Object(meta.clone()).to_string(),
        };
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        send(&mut *w, &msg).map_err(|e| e.to_string())
    }

    fn send_progress(&self, task_id: &str, progress: &Progress) -> Result<(), String> {
        let msg = FromWorker::Progress {
            task_id: task_id.to_owned(),
            progress: progress.clone(),
        };
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        send(&mut *w, &msg).map_err(|e| e.to_string())
    }

    fn enqueue(&self, task_id: &str, request: &ChildRequest) -> Result<String, String> {
        // One request at a time: its answer is the next one to arrive.
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        while answers.try_recv().is_ok() {}
        let msg = FromWorker::Enqueue {
            task_id: task_id.to_owned(),
            request: request.clone(),
        };
        send(
            &mut *self.writer.lock().unwrap_or_else(PoisonError::into_inner),
            &msg,
        )
        .map_err(|e| e.to_string())?;
        answers
            .recv()
            .map_err(|_| "the supervisor's channel closed".to_owned())?
    }
}

/// Serves tasks on the inherited socket `fd` until told to exit. The
/// supervisor's `Setup` answer chooses which of `middleware` are active.
pub fn serve(
    registry: &TaskRegistry,
    middleware: &[Arc<dyn Middleware>],
    fd: i32,
) -> Result<(), WorkerProcessError> {
    let stream = sys::take_inherited_socket(fd)
        .map_err(|error| WorkerProcessError::Descriptor { fd, error })?;
    // Before any task: a task of another slot running as the same user
    // must not trace this process, read its memory or copy its socket.
    sys::forbid_inspection()?;
    panic::install_hook();
    let mut reader = stream.try_clone()?;
    let writer = Arc::new(Mutex::new(stream));
    send(
        &mut *writer.lock().unwrap_or_else(PoisonError::into_inner),
        &FromWorker::Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
        },
    )?;
    let chain = match recv::<ToWorker>(&mut reader)? {
        Some(ToWorker::Setup {
            middleware: names,
            confine,
        }) => {
            if let Some(confine) = confine {
                // Before the chain is built or any thread started: nothing
                // of the task's side runs unconfined.
                let refused = crate::confine::apply(&confine).err();
                let failed = refused.is_some();
                send(
                    &mut *writer.lock().unwrap_or_else(PoisonError::into_inner),
                    &FromWorker::Confined { refused },
                )?;
                if failed {
                    return Ok(());
                }
            }
            MiddlewareChain::select(middleware, &names)?
        }
        Some(other) => {
            return Err(
                FrameError::Malformed(format!("expected Setup first, got {other:?}")).into(),
            );
        }
        None => return Ok(()),
    };

    // The setup hook, after confinement and before the first task; the
    // supervisor waits for its answer as part of the handshake.
    let state = match registry.setup() {
        None => None,
        Some(hook) => {
            let ran = hook.run();
            let error = ran.as_ref().err().cloned();
            send(
                &mut *writer.lock().unwrap_or_else(PoisonError::into_inner),
                &FromWorker::SetUp { error },
            )?;
            match ran {
                Ok(state) => Some(state),
                Err(_) => return Ok(()),
            }
        }
    };

    let shutdown = ShutdownState::with_effect(|trigger| match trigger {
        Trigger::Request => std::process::exit(EXIT_SHUTDOWN),
        // The task may be returning right now: let it report, then exit
        // (the loop below exits after reporting when a shutdown is pending).
        Trigger::GuardReleased => {
            let _ = thread::Builder::new().spawn(|| {
                thread::sleep(GUARD_RELEASE_GRACE);
                std::process::exit(EXIT_SHUTDOWN)
            });
        }
    });
    let (answer, answers) = mpsc::channel::<Result<String, String>>();
    let sink: Arc<dyn MetaSink> = Arc::new(IpcMeta {
        writer: Arc::clone(&writer),
        answers: Mutex::new(answers),
    });
    let turns = Turns {
        reader: Mutex::new(reader),
        stop: AtomicBool::new(false),
        writer,
        answer,
        registry,
        chain: &chain,
        sink,
        shutdown,
        state,
    };
    thread::scope(|scope| {
        let other = thread::Builder::new()
            .name("worker-turns".into())
            .stack_size(TASK_STACK_BYTES)
            .spawn_scoped(scope, || turns.take())?;
        // Every thread of an idle worker process exists now; the supervisor
        // counts them, and a task that leaves one more behind costs the
        // process.
        send(&mut *turns.writer(), &FromWorker::Ready)?;
        let mine = turns.take();
        let theirs = other.join().unwrap_or(Ok(()));
        mine.and(theirs)
    })
}

/// The stack of the worker process's second thread, which runs every other
/// task: the size of a main thread's stack under the usual `ulimit -s`, so
/// that a task does not depend on the thread it lands on.
const TASK_STACK_BYTES: usize = 8 << 20;

/// The worker process's two threads take turns at the socket. Whichever
/// holds the read half reads the next frame; on a `Run` it lets go of the
/// socket and runs the task itself, while the other thread takes up the
/// reading (a shutdown request or an enqueue's answer is seen at once).
/// So a task starts on the thread the kernel woke with its frame, with no
/// hand-over between threads on the way (docs/performance.md).
struct Turns<'a> {
    reader: Mutex<UnixStream>,
    /// Set by the thread that ends the loop (the supervisor said `Exit`, or
    /// a reply could not be sent): the other one stops at its next turn.
    stop: AtomicBool,
    writer: Arc<Mutex<UnixStream>>,
    answer: mpsc::Sender<Result<String, String>>,
    registry: &'a TaskRegistry,
    chain: &'a MiddlewareChain,
    sink: Arc<dyn MetaSink>,
    shutdown: Arc<ShutdownState>,
    state: Option<SetupState>,
}

impl Turns<'_> {
    fn writer(&self) -> std::sync::MutexGuard<'_, UnixStream> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One thread's loop: read a frame when it is this thread's turn, act
    /// on it; returns when the supervisor says `Exit` or a reply fails.
    fn take(&self) -> Result<(), WorkerProcessError> {
        let ended = self.serve_frames();
        self.stop.store(true, Ordering::SeqCst);
        ended
    }

    fn serve_frames(&self) -> Result<(), WorkerProcessError> {
        loop {
            let frame = {
                let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let frame = recv::<ToWorker>(&mut *reader);
                if matches!(frame, Ok(Some(ToWorker::Exit))) {
                    // Said before the socket is let go: the other thread,
                    // waiting for its turn, must not go on to read a frame
                    // that never comes (the process would never exit).
                    self.stop.store(true, Ordering::SeqCst);
                }
                frame
            };
            match frame {
                Ok(Some(ToWorker::Run(run))) => self.run(run)?,
                Ok(Some(ToWorker::Shutdown)) => self.shutdown.request(),
                Ok(Some(ToWorker::Enqueued(reply))) => {
                    let _ = self.answer.send(reply);
                }
                Ok(Some(ToWorker::Exit)) => return Ok(()),
                Ok(Some(ToWorker::Setup { .. })) => {
                    crate::stderr_line("redis-tasks worker process: a second Setup");
                    std::process::exit(EXIT_PROTOCOL)
                }
                Ok(None) => std::process::exit(EXIT_CHANNEL_CLOSED),
                Err(e) => {
                    crate::stderr_line(&format!("redis-tasks worker process: {e}"));
                    std::process::exit(EXIT_PROTOCOL)
                }
            }
        }
    }

    /// Runs one task and reports its end.
    fn run(&self, run: RunTask) -> Result<(), WorkerProcessError> {
        let result = run_one_with_result(
            self.registry,
            self.chain,
            &run,
            Arc::clone(&self.sink),
            Arc::clone(&self.shutdown),
            self.state.clone(),
        );
        // What the task printed without a line end is still in this
        // process's buffer: written now, it is in the pipe before the
        // supervisor hears of the end, and counted as the task's.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let msg = FromWorker::Finished {
            task_id: run.task_id,
            result,
        };
        send(&mut *self.writer(), &msg)?;
        Ok(())
    }
}

/// The largest result (JSON bytes) a worker process hands over: it must
/// fit one IPC frame with room for the rest of the message. The
/// supervisor applies the `max_result_bytes` setting on top.
pub const MAX_OUTPUT_BYTES: usize = MAX_FRAME_BYTES as usize - 4096;

/// Like [`run_one`], with the task's return value as JSON text inside a
/// success (`None` for `()`). A value too large for one IPC frame turns
/// the success into an error naming `max_result_bytes`.
///
/// `state` is what the setup hook built, for [`TaskContext::state`].
pub fn run_one_with_result(
    registry: &TaskRegistry,
    chain: &MiddlewareChain,
    run: &RunTask,
    sink: Arc<dyn MetaSink>,
    shutdown: Arc<ShutdownState>,
    state: Option<SetupState>,
) -> TaskResult {
    match run_inner(registry, chain, run, sink, shutdown, state) {
        TaskResult::Success { output: Some(text) } if text.len() > MAX_OUTPUT_BYTES => {
            TaskResult::Error(format!(
                "result of {} bytes is over max_result_bytes (and over the {MAX_OUTPUT_BYTES} bytes a worker process can hand over)",
                text.len()
            ))
        }
        other => other,
    }
}

/// Runs one task through the chain and turns whatever happened into a
/// [`TaskResult`].
pub fn run_one(
    registry: &TaskRegistry,
    chain: &MiddlewareChain,
    run: &RunTask,
    sink: Arc<dyn MetaSink>,
    shutdown: Arc<ShutdownState>,
) -> TaskResult {
    run_inner(registry, chain, run, sink, shutdown, None)
}

fn run_inner(
    registry: &TaskRegistry,
    chain: &MiddlewareChain,
    run: &RunTask,
    sink: Arc<dyn MetaSink>,
    shutdown: Arc<ShutdownState>,
    state: Option<SetupState>,
) -> TaskResult {
    let Some(def) = registry.get(&run.task) else {
        return TaskResult::Invalid(format!(
            "unknown task function {:?} (this binary knows: {})",
            run.task,
            registry.names().join(", ")
        ));
    };
    let args: Value = match serde_json::from_str(&run.args_json) {
        Ok(args) => args,
        Err(e) => return TaskResult::Invalid(format!("arguments are not valid JSON: {e}")),
    };
    let meta = match serde_json::from_str::<Value>(&run.meta_json) {
        Ok(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    let mut ctx = TaskContext::new(&run.task_id, &run.task, meta, sink, shutdown);
    ctx.set_state(state);
    ctx.set_traceparent(run.traceparent.clone());
    // The task's own `tracing` events carry its run's trace context (and,
    // with OpenTelemetry, are children of its run span).
    let span = tracing::info_span!(
        "task",
        id = %run.task_id,
        traceparent = run.traceparent.as_deref().unwrap_or("")
    );
    #[cfg(feature = "opentelemetry")]
    crate::trace_context::adopt(&span, run.traceparent.as_deref());
    let _span = span.entered();
    panic::clear_last();
    match catch_unwind(AssertUnwindSafe(|| chain.run_task(def, &ctx, args))) {
        Ok(Ok(())) => TaskResult::Success {
            output: ctx.take_result().map(|value| value.to_string()),
        },
        Ok(Err(TaskError::Failed(text))) => TaskResult::Error(text),
        Ok(Err(e @ TaskError::InvalidArgs { .. })) => TaskResult::Invalid(e.to_string()),
        Err(payload) => TaskResult::Panic(panic::last_or(payload.as_ref())),
    }
}
