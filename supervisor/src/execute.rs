//! Running one task on a worker process and watching it end.
//!
//! The slot waits on four things at once, with one `poll` on its own
//! thread: the worker process's frames (read from its socket right there),
//! its exit (watched directly, not through the socket), its own commands
//! from the control loop (shutdown, kill, cancel), and the task's
//! deadline. Whatever comes first decides how the run ends; a run always
//! ends, and the worker process is always reaped when it does not survive.

use std::io;
use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;
use redis_tasks_protocol::ipc::{
    ChildRequest, FrameError, FromWorker, RunTask, TaskResult, ToWorker,
};
use redis_tasks_protocol::{ExitReason, FailureKind, Outcome, Progress, TaskRecord};
use tracing::{debug, error, info, warn};

use crate::bell::RingingReceiver;
use crate::rates::Rates;
use crate::worker_process::{SEND_TIMEOUT, WorkerEvent, WorkerProcess};

/// What the control loop can ask of a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotCommand {
    /// Graceful shutdown: stop fetching; interrupt the running task unless
    /// it holds a postpone-shutdown guard.
    Shutdown,
    /// Immediate shutdown: kill the running task's process tree now.
    Kill,
    /// Look at the shared state again (a reload, a retirement, a drain);
    /// ignored while a task runs.
    Wake,
    /// A cancel request for the task with this id: if it is the one
    /// running, kill its worker process and everything it started, and end
    /// the run as canceled. Ignored otherwise (the task ended meanwhile).
    Cancel(String),
}

/// How long a worker process that closed its channel gets to exit on its
/// own before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How long, after the worker process exited, frames it wrote before are
/// still awaited (its result may be among them).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Hooks the run needs from its slot.
pub(crate) trait RunHooks {
    /// Stores a meta update sent by the task.
    fn update_meta(&mut self, task_id: &str, meta_json: &str);
    /// Keeps the task's return value (JSON text), sent just before its
    /// successful end.
    fn set_result(&mut self, result_json: String);

    /// Stores a progress report sent by the task.
    fn update_progress(&mut self, task_id: &str, progress: Progress) {
        let _ = (task_id, progress);
    }

    /// Answers the task's request to enqueue a task: its id, or why not.
    fn enqueue(&mut self, task_id: &str, request: ChildRequest) -> Result<String, String> {
        let _ = (task_id, request);
        Err("this supervisor does not enqueue tasks for tasks".to_owned())
    }

    /// When the task read ahead, waiting for this run to end, is to be
    /// handed back to its queue (`None`: no task waits).
    fn waiting_until(&self) -> Option<Instant> {
        None
    }

    /// Hands the waiting task back to the front of its queue (its
    /// [`waiting_until`](RunHooks::waiting_until) came).
    fn hand_back_waiting(&mut self) {}

    /// A cancel request for task `id`, not the one running: it ends the
    /// waiting task, unstarted, if that is the one.
    fn cancel_waiting(&mut self, id: &str) {
        let _ = id;
    }
}

/// Sends `record` to `process` to run, with the trace context
/// `traceparent`; on a failed send, the run's end (the process is reaped).
pub(crate) fn send_run(
    process: &mut WorkerProcess,
    record: &TaskRecord,
    traceparent: Option<String>,
) -> Result<(), Outcome> {
    let run = ToWorker::Run(RunTask {
        task_id: record.id.clone(),
        task: record.task.clone(),
        args_json: record.args.to_string(),
        meta_json: serde_json::Value::Object(record.meta.clone()).to_string(),
        traceparent,
    });
    if let Err(e) = process.send_task(&run) {
        let reason = process.reap_within(EXIT_GRACE);
        return Err(Outcome::failure(FailureKind::StartFailed(format!(
            "worker process {reason} before taking the task ({e})"
        ))));
    }
    debug!(task = %record.id, pid = process.pid(), "task started");
    Ok(())
}

/// Watches the run of `record` that [`send_run`] began on `process` until
/// it ends. On return the process is either still usable (`true`) or has
/// been killed and reaped (`false`).
///
/// A shutdown reaches the run only as a [`SlotCommand`]: one sent before
/// the run began waits in the channel and is seen at once, and with a drain
/// period the control loop sends it only when the period is over.
///
/// Progress and meta updates reach `hooks` at most once per
/// [`MIN_INTERVAL`](crate::rates::MIN_INTERVAL) each, meta updates over
/// `max_meta_bytes` not at all (see `rates.rs`); the last waiting ones are
/// written before this returns.
pub(crate) fn run_on(
    process: &mut WorkerProcess,
    record: &TaskRecord,
    timeout: Duration,
    commands: &RingingReceiver<SlotCommand>,
    hooks: &mut dyn RunHooks,
    max_meta_bytes: u64,
) -> (Outcome, bool) {
    let mut rates = Rates::new(max_meta_bytes);
    let ended = watch(process, record, timeout, commands, hooks, &mut rates);
    rates.flush(&record.id, hooks);
    ended
}

fn watch(
    process: &mut WorkerProcess,
    record: &TaskRecord,
    timeout: Duration,
    commands: &RingingReceiver<SlotCommand>,
    hooks: &mut dyn RunHooks,
    rates: &mut Rates,
) -> (Outcome, bool) {
    let pid = process.pid();
    // No deadline at all rather than an overflow, should a timeout ever
    // reach past the end of `Instant` (it is capped at max_task_timeout).
    let deadline = Instant::now().checked_add(timeout);
    let exits = process.exits();
    let mut exits_open = true;
    let mut shutdown_sent = false;
    loop {
        // One turn looks at everything, a frame first: a result that is
        // here wins over an exit seen at the same time, and a process that
        // floods frames still meets its deadline and its commands.
        let event = process.next_event_now();
        let had_event = event.is_some();
        if let Some(event) = event
            && let Some(ended) = on_event(process, record, event, shutdown_sent, hooks, rates)
        {
            return ended;
        }
        if exits_open {
            match exits.try_recv() {
                Ok(exit) => return on_exit(process, record, exit, shutdown_sent, hooks),
                Err(TryRecvError::Disconnected) => exits_open = false,
                Err(TryRecvError::Empty) => {}
            }
        }
        loop {
            match commands.rx.try_recv() {
                Ok(SlotCommand::Shutdown) => {
                    if !shutdown_sent {
                        shutdown_sent = process.send(&ToWorker::Shutdown).is_ok();
                    }
                }
                Ok(SlotCommand::Wake) => {}
                Ok(SlotCommand::Cancel(id)) => {
                    if id == record.id {
                        process.kill_and_reap();
                        info!(task = %record.id, pid, "task canceled: worker process and its descendants killed");
                        return (Outcome::failure(FailureKind::Canceled), false);
                    }
                    hooks.cancel_waiting(&id);
                }
                Ok(SlotCommand::Kill) | Err(TryRecvError::Disconnected) => {
                    process.kill_and_reap();
                    info!(task = %record.id, pid, "task killed by immediate shutdown");
                    return (Outcome::failure(FailureKind::Shutdown), false);
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        if rates.due().is_some_and(|due| due <= now) {
            rates.write_due(&record.id, now, hooks);
        }
        if hooks.waiting_until().is_some_and(|due| due <= now) {
            hooks.hand_back_waiting();
        }
        if deadline.is_some_and(|deadline| deadline <= now) {
            process.kill_and_reap();
            let secs = timeout.as_secs();
            warn!(task = %record.id, pid, "timeout ({secs} s) reached, process group killed");
            return (Outcome::failure(FailureKind::Timeout { secs }), false);
        }
        if had_event {
            // More frames may be waiting: look again before sleeping.
            continue;
        }
        let until = [deadline, rates.due(), hooks.waiting_until()]
            .into_iter()
            .flatten()
            .min();
        let woken = process.wait(&commands.bell, until);
        if woken.bells[1] {
            // Drained before the commands are looked at, at the top: one
            // sent after that look rings again.
            commands.bell.drain();
        }
    }
}

/// What a frame (or the end of the stream) does to the run: its end, or
/// `None` to go on watching.
fn on_event(
    process: &mut WorkerProcess,
    record: &TaskRecord,
    event: WorkerEvent,
    shutdown_sent: bool,
    hooks: &mut dyn RunHooks,
    rates: &mut Rates,
) -> Option<(Outcome, bool)> {
    let pid = process.pid();
    match event {
        WorkerEvent::Message(FromWorker::Finished { task_id, result }) if task_id == record.id => {
            let result = ended(result, hooks);
            // Nothing the task started outlives it, even on a process that
            // is used again.
            let left = process.kill_descendants();
            if left.processes > 0 {
                warn!(task = %record.id, pid, "killed {} process(es) the task left running", left.processes);
            }
            if let Err(not_alone) = process.make_alone() {
                // Something outside its tree may hold its socket, or have
                // stopped it: only a fresh process runs the next task.
                warn!(task = %record.id, pid, "{not_alone}; its worker process is not used again");
                process.kill_and_reap();
                return Some((result, false));
            }
            if process.left_threads(&left) {
                // A thread of this task could forge frames or touch the
                // next task's memory: only a fresh process runs it.
                warn!(task = %record.id, pid, "the task left threads running; its worker process is not used again");
                process.kill_and_reap();
                return Some((result, false));
            }
            Some((result, true))
        }
        WorkerEvent::Message(FromWorker::Meta { task_id, meta_json }) if task_id == record.id => {
            rates.meta(&task_id, meta_json, Instant::now(), hooks);
            None
        }
        WorkerEvent::Message(FromWorker::Progress { task_id, progress })
            if task_id == record.id =>
        {
            rates.progress(&task_id, progress.bounded(), Instant::now(), hooks);
            None
        }
        WorkerEvent::Message(FromWorker::Enqueue { task_id, request }) if task_id == record.id => {
            let answer = hooks.enqueue(&task_id, request);
            match process.send(&ToWorker::Enqueued(answer)) {
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // It has not read its answers for SEND_TIMEOUT.
                    process.kill_and_reap();
                    let secs = SEND_TIMEOUT.as_secs();
                    let detail = format!("did not read the supervisor's answers for {secs} s");
                    error!(task = %record.id, pid, "worker process {detail}; killed");
                    Some((
                        Outcome::failure(FailureKind::ProtocolViolation(detail)),
                        false,
                    ))
                }
                // Answered even when the process is going away: any other
                // failed send shows as its exit or a closed stream.
                _ => None,
            }
        }
        WorkerEvent::Message(other) => {
            let reason = process.kill_and_reap();
            error!(task = %record.id, pid, %reason, "worker process sent an unexpected message: {other:?}");
            Some((
                Outcome::failure(FailureKind::ProtocolViolation(format!(
                    "unexpected message {}",
                    message_name(&other)
                ))),
                false,
            ))
        }
        WorkerEvent::Violation(detail) => {
            process.kill_and_reap();
            error!(task = %record.id, pid, "worker process broke the protocol: {detail}");
            Some((
                Outcome::failure(FailureKind::ProtocolViolation(detail)),
                false,
            ))
        }
        WorkerEvent::Closed => {
            let reason = process.reap_within(EXIT_GRACE);
            if shutdown_sent {
                info!(task = %record.id, pid, %reason, "task interrupted by shutdown");
                return Some((Outcome::failure(FailureKind::Shutdown), false));
            }
            if process.killed_by_us() {
                let secs = EXIT_GRACE.as_secs();
                error!(task = %record.id, pid, %reason, "worker process closed its channel without an outcome and did not exit; killed");
                let why = format!(
                    "it closed its channel without a result and did not exit within {secs} s"
                );
                return Some((
                    Outcome::failure(FailureKind::KilledBySupervisor(why)),
                    false,
                ));
            }
            error!(task = %record.id, pid, %reason, "worker process ended without an outcome");
            Some((Outcome::failure(FailureKind::Crashed(reason)), false))
        }
    }
}

/// The process is gone, whoever still holds its socket: kill what is left
/// of its tree and reap it now, then read what it wrote before (its
/// result may be there).
fn on_exit(
    process: &mut WorkerProcess,
    record: &TaskRecord,
    exit: ExitReason,
    shutdown_sent: bool,
    hooks: &mut dyn RunHooks,
) -> (Outcome, bool) {
    let pid = process.pid();
    process.note_exit(exit);
    let reason = process.kill_and_reap();
    if let Some(result) = drain_result(process, &record.id, hooks) {
        return (result, false);
    }
    if shutdown_sent {
        info!(task = %record.id, pid, %reason, "task interrupted by shutdown");
        return (Outcome::failure(FailureKind::Shutdown), false);
    }
    error!(task = %record.id, pid, %reason, "worker process ended without an outcome");
    (Outcome::failure(FailureKind::Crashed(reason)), false)
}

/// The result of task `id` among the frames a worker process that has
/// exited wrote before (meta updates after its end are dropped), read until
/// the stream ends or [`DRAIN_AFTER_EXIT`] passes.
fn drain_result(
    process: &mut WorkerProcess,
    id: &str,
    hooks: &mut dyn RunHooks,
) -> Option<Outcome> {
    let deadline = Instant::now() + DRAIN_AFTER_EXIT;
    loop {
        match process.next_event_until(Some(deadline)) {
            Some(WorkerEvent::Message(FromWorker::Finished { task_id, result }))
                if task_id == id =>
            {
                return Some(ended(result, hooks));
            }
            Some(WorkerEvent::Message(_)) => {}
            Some(WorkerEvent::Closed | WorkerEvent::Violation(_)) | None => return None,
        }
    }
}

/// The outcome of a `Finished` frame, its return value handed to `hooks`.
fn ended(result: TaskResult, hooks: &mut dyn RunHooks) -> Outcome {
    let (outcome, output) = result.into_parts();
    if let Some(json) = output {
        hooks.set_result(json);
    }
    outcome
}

fn message_name(msg: &FromWorker) -> &'static str {
    match msg {
        FromWorker::Hello { .. } => "Hello",
        FromWorker::Confined { .. } => "Confined",
        FromWorker::Meta { .. } => "Meta for another task",
        FromWorker::Finished { .. } => "Finished for another task",
        FromWorker::Ready => "Ready",
        FromWorker::SetUp { .. } => "SetUp",
        FromWorker::Progress { .. } => "Progress for another task",
        FromWorker::Enqueue { .. } => "Enqueue for another task",
    }
}
