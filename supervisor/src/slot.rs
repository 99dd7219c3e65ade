//! One slot: a thread that fetches a task, runs it on its worker process,
//! and records the outcome, until told to stop.
//!
//! The slot owns its Redis connection (fetching blocks), its worker process
//! (re-used for up to `max_tasks_per_child` tasks, replaced after a reload)
//! and nothing else; the control loop registers it in Redis, heartbeats it,
//! and deregisters it when the thread has ended. At the top of its loop the
//! slot looks at the shared state: stopping, a retirement to claim, quiet.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use jiff::Timestamp;
use redis_tasks_config::settings::Isolation;
use redis_tasks_protocol::{FailureKind, Outcome, Progress, TaskRecord};
use redis_tasks_store::{Fetched, Store, StoreError};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::control::ControlEvent;
use crate::execute::{RunHooks, SlotCommand, run_on};
use crate::isolation::{self, Plan};
use crate::metrics::Ended;
use crate::outcome::{Conclusion, Policy, conclude};
use crate::shared::{Current, Mode, Shared, SlotView};
use crate::worker_process::{SpawnError, WorkerProcess};

/// How long an idle slot blocks on Redis before it looks at the shared
/// state again (the longest a graceful shutdown, a retirement or a reload
/// waits for an idle slot).
const FETCH_BLOCK: Duration = Duration::from_millis(500);

/// Consecutive failed starts of worker processes (over all slots) after
/// which the supervisor stops instead of failing task after task.
pub(crate) const MAX_START_FAILURES: u32 = 5;

/// One slot's thread state.
pub(crate) struct Slot {
    pub id: String,
    /// The slot's number within its supervisor (the end of its id); picks
    /// its uid for `user = "dynamic"` profiles.
    pub index: usize,
    pub shared: Arc<Shared>,
    pub store: Store,
    pub commands: Receiver<SlotCommand>,
    pub events: Sender<ControlEvent>,
    pub process: Option<WorkerProcess>,
    pub view: Arc<Mutex<SlotView>>,
}

/// What the end-of-task log line says about the run.
struct RunInfo<'a> {
    name: &'a str,
    /// The name, when this binary registers it (for metric labels).
    known: Option<&'a str>,
    queue: &'a str,
    duration: Duration,
}

struct MetaToRedis<'a> {
    store: &'a Store,
    /// The task's return value, if it sent one.
    result: Option<String>,
    shared: &'a Shared,
    /// The slot's number (the `slot` label of the progress metric).
    slot: usize,
}

impl RunHooks for MetaToRedis<'_> {
    fn set_result(&mut self, result_json: String) {
        self.result = Some(result_json);
    }

    fn update_meta(&mut self, task_id: &str, meta_json: &str) {
        let meta = match serde_json::from_str::<serde_json::Value>(meta_json) {
            Ok(serde_json::Value::Object(meta)) => meta,
            _ => {
                warn!(
                    task = task_id,
                    "ignoring a meta update that is not a JSON object"
                );
                return;
            }
        };
        if let Err(e) = self.store.update_meta(task_id, &meta) {
            warn!(task = task_id, "meta update not stored: {e}");
        }
    }

    fn update_progress(&mut self, task_id: &str, progress: Progress) {
        self.shared
            .metrics
            .slot_progress(self.slot, progress.ratio(), true);
        if let Err(e) = self.store.set_progress(task_id, &progress) {
            warn!(task = task_id, "progress report not stored: {e}");
        }
    }
}

impl Slot {
    /// The slot's loop; returns when the supervisor stops, when the slot
    /// retires, or, in burst mode, when the queues are empty.
    pub(crate) fn run(mut self) {
        let mut backoff = Backoff::new();
        self.shared.metrics.slot_started();
        loop {
            let mode = self.shared.mode();
            if mode.stopping() {
                break;
            }
            if self.shared.claim_retirement() {
                self.update_view(|v| v.retiring = true);
                info!(slot = %self.id, "slot retiring (SIGTTOU)");
                break;
            }
            let current = self.shared.current();
            self.replace_outdated_process(&current);
            if !mode.fetches() {
                let _ = self.commands.recv_timeout(FETCH_BLOCK);
                continue;
            }
            let block = if current.config.burst {
                Duration::ZERO
            } else {
                FETCH_BLOCK
            };
            match self.store.fetch(&self.id, &current.config.queues, block) {
                Ok(Some(fetched)) => {
                    backoff.reset();
                    self.shared.note_redis_ok();
                    self.handle(&current, fetched);
                }
                Ok(None) if current.config.burst => break,
                Ok(None) => {}
                Err(StoreError::SlotBusy { ids, .. }) => {
                    // A fetch whose reply never arrived (a dropped
                    // connection, a failover, a durable-mode WAIT that
                    // timed out) left ids in this slot's list. The slot
                    // fetches only when idle, so none of them started:
                    // they go back to the front of their queue.
                    if !self.release_lost_fetches(&ids) {
                        let _ = self.commands.recv_timeout(backoff.next_wait());
                    }
                }
                Err(e @ (StoreError::ForeignTask { .. } | StoreError::ForeignSchema { .. })) => {
                    // Data of another format under our prefix: never touch
                    // it, and do not spin on it either.
                    let _ = self.events.send(ControlEvent::Fatal(e.to_string()));
                    let _ = self.commands.recv_timeout(FETCH_BLOCK);
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    self.shared.note_redis_error(&e);
                    warn!(slot = %self.id, "cannot fetch from Redis ({e}); retrying in {wait:?}");
                    // Waits, but wakes for a command; the loop head then
                    // looks at the shared state.
                    let _ = self.commands.recv_timeout(wait);
                }
            }
        }
        if let Some(process) = self.process.take() {
            self.shared.retire(process);
        }
        self.shared.metrics.slot_ended();
        let _ = self.events.send(ControlEvent::SlotEnded {
            id: self.id.clone(),
        });
    }

    /// Hands `ids` (in this slot's list, never started) back to the
    /// front of their queues; returns whether all went back.
    fn release_lost_fetches(&self, ids: &[String]) -> bool {
        let mut all = true;
        for id in ids {
            match self.store.release_unstarted(&self.id, id, Timestamp::now()) {
                Ok(_) => warn!(
                    slot = %self.id,
                    task = %id,
                    "the reply to a fetch was lost; the task, never started, is back at the front of its queue"
                ),
                Err(e) => {
                    all = false;
                    warn!(slot = %self.id, task = %id, "cannot hand back a task whose fetch reply was lost: {e}");
                }
            }
        }
        all
    }

    fn update_view(&self, change: impl FnOnce(&mut SlotView)) {
        change(&mut self.view.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn handle(&mut self, current: &Current, fetched: Fetched) {
        let Fetched {
            id,
            record,
            unknown_fields,
        } = fetched;
        self.shared.report_unknown_fields(&id, &unknown_fields);
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                error!(slot = %self.id, task = %id, "cannot run a corrupt task record: {e}");
                let conclusion = Conclusion::unreadable(format!("corrupt task record: {e}"));
                self.write(&id, "task with a corrupt record", &conclusion, None, None);
                return;
            }
        };
        if !self.shared.mode().fetches() {
            // Fetched while a shutdown or a pause began: give it back as if
            // it had never been taken.
            let released = self.with_redis("hand back an unstarted task", |store, now| {
                store.release_unstarted(&self.id, &record.id, now)
            });
            if released == Some(true) {
                debug!(task = %record.id, "handed back unstarted to the front of {:?}", record.queue);
            }
            return;
        }
        let started = Instant::now();
        info!(task = %record.id, name = %record.task, queue = %record.queue, slot = %self.id, "task started");
        let waited = Timestamp::now().duration_since(record.enqueued_at);
        self.shared.metrics.task_started(
            &record.queue,
            Duration::try_from(waited).unwrap_or(Duration::ZERO),
        );
        let def = self.shared.registry.get(&record.task);
        // For metric labels: only names this binary registers.
        let registered = def.is_some();
        // The producer's timeout for this task, else the task function's,
        // else the setting.
        let timeout = record
            .timeout
            .map(Duration::from_secs)
            .or_else(|| def.and_then(|d| d.options().timeout))
            .unwrap_or_else(|| current.config.default_timeout());
        self.update_view(|v| {
            v.task = Some((
                record.id.clone(),
                record.description.clone(),
                Instant::now(),
            ));
        });
        let limit = current.config.settings.max_args_bytes;
        let args_bytes = record.args.to_string().len();
        let profile = isolation::effective(
            &current.config.settings,
            &record.queue,
            def.and_then(|d| d.options().isolation.as_deref()),
        );
        let (ended, result) = if u64::try_from(args_bytes).unwrap_or(u64::MAX) > limit {
            // A producer that bypassed the Rust one (raw commands): refused
            // before any worker process is asked to decode them.
            warn!(task = %record.id, "arguments of {args_bytes} bytes are over max_args_bytes ({limit}); not run");
            let refused = Outcome::failure(FailureKind::Invalid(format!(
                "arguments of {args_bytes} bytes are over max_args_bytes ({limit}); the task was not run"
            )));
            (refused, None)
        } else if profile.is_unrestricted() {
            self.execute(current, &record, timeout)
        } else {
            let (ended, result, oom_killed) =
                self.execute_isolated(current, &record, timeout, &profile);
            (isolation::explain(ended, &profile, oom_killed), result)
        };
        let (ended, result) =
            crate::results::checked(ended, result, current.config.settings.max_result_bytes);
        let known = registered.then_some(record.task.as_str());
        self.shared.metrics.run_ended(&record.queue, known, &ended);
        let policy = Policy::for_task(
            &self.shared.registry,
            &record.task,
            current.config.settings.max_aborted_runs,
        );
        let conclusion = conclude(&record, ended, policy, &current.chain);
        let run = RunInfo {
            name: &record.task,
            known,
            queue: &record.queue,
            duration: started.elapsed(),
        };
        self.write(
            &record.id,
            &record.description,
            &conclusion,
            result.as_deref(),
            Some(&run),
        );
        self.shared.metrics.task_done();
        self.shared.metrics.slot_progress(self.index, None, false);
        self.update_view(|v| v.task = None);
        self.refresh_process(current);
    }

    /// Runs the task, starting a worker process first when the slot has
    /// none ready.
    fn execute(
        &mut self,
        current: &Current,
        record: &TaskRecord,
        timeout: Duration,
    ) -> (Outcome, Option<String>) {
        let ready = self.process.take().and_then(|mut process| {
            if let Err(not_alone) = process.still_alone() {
                // Something else may hold its socket, or have stopped it.
                warn!(slot = %self.id, pid = process.pid(), "{not_alone}; its worker process is killed, the next task gets a fresh one");
                process.kill_and_reap();
                return None;
            }
            if process.has_stray_input() {
                // A frame between tasks: a thread of the last task (or a
                // forger) is still at work in it. Only that process pays.
                warn!(slot = %self.id, pid = process.pid(), "worker process sent frames after its task ended; retiring it");
                self.shared.retire(process);
                return None;
            }
            // A process that died while idle is reaped here (on drop).
            process.is_alive().then_some(process)
        });
        let mut process = match ready {
            Some(process) => process,
            None => match self.start_process(current) {
                Ok(process) => process,
                Err(text) => return (Outcome::failure(FailureKind::StartFailed(text)), None),
            },
        };
        let mut hooks = MetaToRedis {
            store: &self.store,
            result: None,
            shared: &self.shared,
            slot: self.index,
        };
        let (end, reusable) = run_on(&mut process, record, timeout, &self.commands, &mut hooks);
        if reusable {
            self.process = Some(process);
        } else {
            self.update_view(|v| v.pid = None);
        }
        (end, hooks.result)
    }

    /// Runs the task on a worker process of its own, started under
    /// `profile` and retired (its whole process group killed) after this
    /// one task. The slot's ready, unrestricted process stays ready.
    fn execute_isolated(
        &mut self,
        current: &Current,
        record: &TaskRecord,
        timeout: Duration,
        profile: &Isolation,
    ) -> (Outcome, Option<String>, Option<bool>) {
        let profile = isolation::for_slot(
            profile,
            current.config.settings.dynamic_user_base,
            self.index,
        );
        let plan = match Plan::build(&profile, &current.spawn.env) {
            Ok(plan) => plan,
            Err(not) => {
                warn!(task = %record.id, "isolation not applied ({not}); the task is not run");
                return (Outcome::failure(not.failure()), None, None);
            }
        };
        let mut process =
            match WorkerProcess::spawn_isolated(&current.spawn, current.generation, Some(&plan)) {
                Ok(process) => process,
                Err(SpawnError::NotIsolated(not)) => {
                    warn!(task = %record.id, "isolation not applied ({not}); the task is not run");
                    return (Outcome::failure(not.failure()), None, None);
                }
                Err(e) => {
                    error!(slot = %self.id, "isolated worker process failed to start: {e}");
                    return (
                        Outcome::failure(FailureKind::StartFailed(e.to_string())),
                        None,
                        None,
                    );
                }
            };
        self.shared.metrics.process_started(true);
        let ready = self.process.as_ref().map(WorkerProcess::pid);
        let pid = process.pid();
        self.update_view(|v| v.pid = Some(pid));
        let mut hooks = MetaToRedis {
            store: &self.store,
            result: None,
            shared: &self.shared,
            slot: self.index,
        };
        let (end, reusable) = run_on(&mut process, record, timeout, &self.commands, &mut hooks);
        let oom_killed = process.oom_killed();
        if reusable {
            self.shared.retire(process);
        }
        self.update_view(|v| v.pid = ready);
        (end, hooks.result, oom_killed)
    }

    /// An idle worker process started before the last reload is replaced.
    fn replace_outdated_process(&mut self, current: &Current) {
        if let Some(process) = self.process.take_if(|p| p.generation < current.generation) {
            debug!(slot = %self.id, pid = process.pid(), "replacing worker process after reload");
            self.shared.retire(process);
            self.update_view(|v| v.pid = None);
            self.process = self.start_process(current).ok();
        }
    }

    /// After a task: retire a process that reached its task budget or
    /// predates a reload, and have the next one ready before fetching again.
    fn refresh_process(&mut self, current: &Current) {
        let latest = self.shared.current();
        let budget = latest.config.max_tasks_per_child.max(1);
        if let Some(process) = self
            .process
            .take_if(|p| p.tasks_run >= budget || p.generation < latest.generation)
        {
            self.shared.retire(process);
            self.update_view(|v| v.pid = None);
        }
        let _ = current;
        if self.process.is_none() && !self.shared.mode().stopping() {
            self.process = self.start_process(&latest).ok();
        }
    }

    fn start_process(&mut self, current: &Current) -> Result<WorkerProcess, String> {
        match WorkerProcess::spawn(&current.spawn, current.generation) {
            Ok(process) => {
                self.shared.metrics.process_started(true);
                self.shared.start_failures.store(0, Ordering::SeqCst);
                let pid = process.pid();
                debug!(slot = %self.id, pid, "worker process ready");
                self.update_view(|v| v.pid = Some(pid));
                Ok(process)
            }
            Err(e) => {
                self.shared.metrics.process_started(false);
                let failures = self.shared.start_failures.fetch_add(1, Ordering::SeqCst) + 1;
                error!(slot = %self.id, "worker process failed to start: {e}");
                if failures >= MAX_START_FAILURES {
                    let _ = self.events.send(ControlEvent::Fatal(format!(
                        "{failures} worker processes in a row failed to start; last: {e}"
                    )));
                }
                Err(e.to_string())
            }
        }
    }

    /// Writes a conclusion (retrying while Redis fails), counts it and
    /// logs it (at info, with the run's duration, see
    /// docs/observability.md).
    fn write(
        &self,
        id: &str,
        description: &str,
        conclusion: &Conclusion,
        result: Option<&str>,
        run: Option<&RunInfo>,
    ) {
        let written = self.with_redis("record an outcome", |store, now| {
            conclusion.write_with_result(store, &self.id, id, result, now)
        });
        let (name, queue, secs) = run.map_or(("", "", 0.0), |r| {
            (r.name, r.queue, r.duration.as_secs_f64())
        });
        let slot = self.id.as_str();
        if let (Some(run), Some(true)) = (run, written) {
            let ended = match conclusion {
                Conclusion::Requeue { .. } => Ended::Requeued,
                Conclusion::Record(Outcome::Success) => Ended::Finished,
                Conclusion::Retry { .. } => Ended::Retried,
                Conclusion::Record(Outcome::Failure(f)) if f.kind == FailureKind::Canceled => {
                    Ended::Canceled
                }
                Conclusion::Record(Outcome::Failure(_)) => Ended::Failed,
            };
            self.shared
                .metrics
                .task_ended(run.queue, run.known, ended, run.duration);
        }
        match (written, conclusion) {
            (Some(true), Conclusion::Requeue { reason }) => {
                self.shared
                    .counters
                    .requeued
                    .fetch_add(1, Ordering::Relaxed);
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "requeued", "{description} requeued at the front of its queue after {secs:.3} s: {reason}");
            }
            (Some(true), Conclusion::Record(Outcome::Success)) => {
                self.shared
                    .counters
                    .finished
                    .fetch_add(1, Ordering::Relaxed);
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "finished", "{description} finished in {secs:.3} s");
            }
            (Some(true), Conclusion::Retry { failure }) => {
                let at = failure
                    .next_attempt
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "retried", "{description} failed after {secs:.3} s: {failure}; retry due at {at}");
            }
            (Some(true), Conclusion::Record(Outcome::Failure(failure)))
                if failure.kind == FailureKind::Canceled =>
            {
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "canceled", "{description} canceled while running after {secs:.3} s");
            }
            (Some(true), Conclusion::Record(Outcome::Failure(failure))) => {
                self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                info!(task = %id, name, queue, slot, duration_s = secs, outcome = "failed", "{description} failed after {secs:.3} s: {failure}");
            }
            (Some(false), _) => warn!(
                task = %id,
                "outcome not recorded: this slot no longer holds the task (recovered elsewhere)"
            ),
            (None, _) => {}
        }
    }

    /// Runs a Redis write, retrying with [`Backoff`] until it works: while
    /// Redis is unreachable, and also on other errors (a key of the wrong
    /// type under our prefix, say), which someone may mend; the task stays
    /// in this slot's list meanwhile and the slot fetches nothing else.
    /// It gives up (returning `None`) on a permanent error during a
    /// graceful shutdown, and after a few attempts of any kind during an
    /// immediate one: the task then stays in this slot's list, where
    /// recovery finds it at the next start.
    fn with_redis<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&Store, Timestamp) -> Result<T, StoreError>,
    ) -> Option<T> {
        let mut backoff = Backoff::new();
        loop {
            match op(&self.store, Timestamp::now()) {
                Ok(value) => {
                    self.shared.note_redis_ok();
                    return Some(value);
                }
                Err(e) => {
                    let connection = e.is_connection_error();
                    if connection {
                        self.shared.note_redis_error(&e);
                    }
                    // An outage during a graceful stop is waited out (the
                    // outcome is worth it); an immediate stop waits less.
                    let give_up = match self.shared.mode() {
                        Mode::StoppingNow => backoff.failures() >= 3,
                        Mode::Stopping => !connection && backoff.failures() >= 1,
                        Mode::Serving | Mode::Quiet => false,
                    };
                    if give_up {
                        error!(slot = %self.id, "giving up: cannot {what} ({e}); recovery will handle the task at the next start");
                        return None;
                    }
                    let wait = backoff.next_wait();
                    if connection {
                        warn!(slot = %self.id, "cannot {what} ({e}); retrying in {wait:?}");
                    } else {
                        error!(slot = %self.id, "cannot {what} ({e}); retrying in {wait:?} (mend the data, or stop the supervisor: recovery takes over at the next start)");
                    }
                    // Waits, but wakes for a command (a shutdown).
                    let _ = self.commands.recv_timeout(wait);
                }
            }
        }
    }
}
