//! One slot: a thread that fetches a task, runs it on its worker process,
//! and records the outcome, until told to stop.
//!
//! The slot owns its Redis connection (fetching blocks), its worker process
//! (re-used for up to `max_tasks_per_child` tasks, replaced after a reload)
//! and nothing else; the control loop registers it in Redis, heartbeats it,
//! and deregisters it when the thread has ended. At the top of its loop the
//! slot looks at the shared state: stopping, a retirement to claim, quiet.
//!
//! `hooks.rs` takes a running task's meta, progress and result;
//! `record.rs` writes, counts and logs what became of the task;
//! `expired.rs` reports the tasks a fetch ended unstarted, expired.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use jiff::Timestamp;
use redis_tasks_config::settings::Isolation;
use redis_tasks_protocol::{FailureKind, Outcome, TaskRecord};
use redis_tasks_store::{Fetched, Lease, Store, StoreError};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::bell::RingingReceiver;
use crate::children::Children;
use crate::control::ControlEvent;
use crate::execute::{SlotCommand, run_on};
use crate::isolation::{self, Plan};
use crate::outcome::{Conclusion, Policy, conclude};
use crate::shared::{Current, Shared, SlotView};
use crate::worker_process::{Spare, SpareKind, SpawnError, WorkerProcess};

mod expired;
mod hooks;
mod record;

use hooks::MetaToRedis;
use record::PendingEnd;
use record::RunInfo;

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
    pub commands: RingingReceiver<SlotCommand>,
    pub events: Sender<ControlEvent>,
    pub process: Option<WorkerProcess>,
    /// The next worker process, prepared while a task runs on one that
    /// will not run another.
    pub spare: Spare,
    pub view: Arc<Mutex<SlotView>>,
    /// The next task, taken when the last one's end was recorded
    /// ([`Store::finish_and_fetch`]): run before fetching again.
    pub next: Option<Fetched>,
    /// The lease of the slot's last task: where its next fetch looks
    /// first for an id a lost reply left behind (`Store::fetch_after`).
    pub last: Option<Lease>,
    /// The last task's end, written once the next task (`next`) runs.
    pub pending: Option<PendingEnd>,
    /// Whether the task running came from `next` (the slot is busy): its
    /// run is when the slot takes the one after ahead.
    pub reading_ahead: bool,
}

impl Slot {
    /// The slot's loop; returns when the supervisor stops, when the slot
    /// retires, or, in burst mode, when the queues are empty.
    pub(crate) fn run(mut self) {
        let mut backoff = Backoff::new();
        self.shared.metrics.slot_started();
        loop {
            let mode = self.shared.mode();
            self.reading_ahead = false;
            if mode.stopping() {
                self.release_next();
                break;
            }
            if self.shared.claim_retirement() {
                self.release_next();
                self.update_view(|v| v.retiring = true);
                info!(slot = %self.id, "slot retiring (SIGTTOU)");
                break;
            }
            let current = self.shared.current();
            self.replace_outdated_process(&current);
            if !mode.fetches() {
                self.release_next();
                let _ = self.commands.rx.recv_timeout(FETCH_BLOCK);
                continue;
            }
            let block = if current.config.burst {
                Duration::ZERO
            } else {
                FETCH_BLOCK
            };
            let fetched = match self.next.take() {
                Some(next) => {
                    self.reading_ahead = true;
                    Ok(Some(next))
                }
                None => {
                    self.write_pending();
                    self.store.fetch_after(
                        &self.id,
                        &current.config.fetch_order(random),
                        block,
                        self.last.as_ref(),
                    )
                }
            };
            // Tasks this fetch, or the finish that took `next`, found
            // expired (ended unstarted in Redis already).
            self.report_expired(&current);
            match fetched {
                Ok(Some(fetched)) => {
                    backoff.reset();
                    self.shared.note_redis_ok();
                    let lease = fetched.lease.clone();
                    self.last = Some(lease.clone());
                    let handled = catch_unwind(AssertUnwindSafe(|| self.handle(&current, fetched)));
                    if let Err(panic) = handled {
                        self.after_panic(&lease, panic.as_ref());
                    }
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
                        let _ = self.commands.rx.recv_timeout(backoff.next_wait());
                    }
                }
                Err(e @ (StoreError::ForeignTask { .. } | StoreError::ForeignSchema { .. })) => {
                    // Data of another format under our prefix: never touch
                    // it, and do not spin on it either.
                    let _ = self.events.send(ControlEvent::Fatal(e.to_string()));
                    let _ = self.commands.rx.recv_timeout(FETCH_BLOCK);
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    self.shared.note_redis_error(&e);
                    warn!(slot = %self.id, "cannot fetch from Redis ({e}); retrying in {wait:?}");
                    // Waits, but wakes for a command; the loop head then
                    // looks at the shared state.
                    let _ = self.commands.rx.recv_timeout(wait);
                }
            }
        }
        self.write_pending();
        // Those a last finish found expired while the slot was stopping.
        self.report_expired(&self.shared.current());
        if let Some(process) = self.process.take() {
            self.shared.retire(process);
        }
        // Kills and reaps a spare, prepared or under way.
        self.spare = Spare::new();
        self.shared.metrics.slot_ended();
        let _ = self.events.send(ControlEvent::SlotEnded {
            id: self.id.clone(),
        });
    }

    /// Hands the task taken with the last end (if any) back to the front
    /// of its queue, unstarted, when the slot is not going to run it.
    fn release_next(&mut self) {
        self.write_pending();
        let Some(next) = self.next.take() else {
            return;
        };
        let lease = next.lease;
        let released = self.with_redis("hand back an unstarted task", |store, now| {
            store
                .leased(&lease)
                .release_unstarted(&self.id, &lease.id, now)
        });
        if released == Some(true) {
            debug!(task = %lease.id, "handed back unstarted to the front of {:?}", lease.queue);
        }
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
            lease,
            record,
            unknown_fields,
            ..
        } = fetched;
        self.shared
            .report_unknown_fields(&lease.id, &unknown_fields);
        // Labels, logs and the profile use the queue the task was fetched
        // from; the record was checked to name the same one.
        let queue = lease.queue.as_str();
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let text = match e {
                    StoreError::RecordTooLarge { .. } => format!("{e}; the task was not run"),
                    _ => format!("corrupt task record: {e}"),
                };
                // Counted like every ending (under the fetched queue; the
                // record's own task name is not to be trusted), and logged
                // once, by the write, as a warning naming the producer.
                let conclusion = Conclusion::unreadable(text);
                let run = RunInfo {
                    name: String::new(),
                    known: false,
                    queue: queue.to_owned(),
                    duration: Duration::ZERO,
                    attempt: 1,
                    trace_id: None,
                };
                self.write(
                    &lease,
                    "task with a bad record",
                    &conclusion,
                    (None, &[]),
                    Some(&run),
                );
                return;
            }
        };
        if !self.shared.mode().fetches() {
            // Fetched while a shutdown or a pause began: give it back as if
            // it had never been taken.
            self.write_pending();
            let released = self.with_redis("hand back an unstarted task", |store, now| {
                store
                    .leased(&lease)
                    .release_unstarted(&self.id, &lease.id, now)
            });
            if released == Some(true) {
                debug!(task = %lease.id, "handed back unstarted to the front of {queue:?}");
            }
            return;
        }
        let started = Instant::now();
        info!(task = %record.id, name = %record.task, queue, slot = %self.id, "task started");
        let waited = Timestamp::now().duration_since(record.enqueued_at);
        self.shared
            .metrics
            .task_started(queue, Duration::try_from(waited).unwrap_or(Duration::ZERO));
        #[cfg(debug_assertions)]
        test_hook_panic(&record.task);
        let def = self.shared.registry.get(&record.task);
        // For metric labels: only names this binary registers.
        let registered = def.is_some();
        let timeout = self.timeout_of(current, &record, def.and_then(|d| d.options().timeout));
        self.update_view(|v| {
            v.task = Some((
                record.id.clone(),
                record.description.clone(),
                Instant::now(),
            ));
        });
        let profile = isolation::effective(
            &current.config.settings,
            queue,
            def.and_then(|d| d.options().isolation.as_deref()),
        );
        // Arguments over max_args_bytes never get here: the fetch script
        // refuses the record before it is loaded.
        // A task enqueued with a trace context gets the context of the
        // supervisor's span of this run (docs/tracing-and-errors.md), and
        // so do the tasks it enqueues.
        let run_span = crate::traces::RunSpan::of(&record);
        let traceparent = run_span.as_ref().map(crate::traces::RunSpan::traceparent);
        let children = Children::new(
            profile.clone(),
            queue,
            current.config.settings.max_children_per_task,
            traceparent.clone(),
        );
        let inputs = RunInputs {
            children,
            traceparent,
        };
        let (ended, made) = if profile.is_unrestricted() {
            self.execute(current, &lease, &record, timeout, inputs)
        } else {
            let (ended, made, oom_killed) =
                self.execute_isolated(current, &lease, &record, timeout, &profile, inputs);
            (isolation::explain(ended, &profile, oom_killed), made)
        };
        let (ended, result) =
            crate::results::checked(ended, made.result, current.config.settings.max_result_bytes);
        // Held children exist only if the run itself succeeded (not when a
        // middleware turns its failure into a success).
        let children = if ended.is_success() {
            made.children.into_held()
        } else {
            Vec::new()
        };
        let known = registered.then_some(record.task.as_str());
        self.shared.metrics.run_ended(queue, known, &ended);
        let policy = Policy::for_task(
            &self.shared.registry,
            &record.task,
            current.config.settings.max_aborted_runs,
        );
        let conclusion = conclude(&record, ended, policy, &current.chain);
        let run = RunInfo {
            name: record.task.clone(),
            known: registered,
            queue: queue.to_owned(),
            duration: started.elapsed(),
            attempt: record.attempts.len() + 1,
            trace_id: run_span.as_ref().map(|span| span.trace_id().to_owned()),
        };
        // The call text carries the arguments: logged only when asked for.
        let call = if current.config.settings.log_task_args {
            &record.description
        } else {
            &record.task
        };
        if let Some(span) = &run_span {
            self.shared.tracer.ended(
                span,
                &crate::traces::RunEnd {
                    record: &record,
                    queue,
                    attempt: run.attempt,
                    outcome: conclusion.ended().label(),
                    conclusion: &conclusion,
                    started_at: record.started_at.unwrap_or(record.enqueued_at),
                    ended_at: Timestamp::now(),
                },
            );
        }
        if self.next.is_some() && self.shared.mode().fetches() {
            // The next task was read ahead: it starts first, and this end
            // is written while it runs (`overlap`).
            self.pending = Some(PendingEnd {
                lease,
                description: call.clone(),
                conclusion,
                result,
                children,
                run: Some(run),
            });
        } else {
            self.write(
                &lease,
                call,
                &conclusion,
                (result.as_deref(), &children),
                Some(&run),
            );
        }
        self.shared.metrics.task_done();
        self.shared.metrics.slot_progress(self.index, None, false);
        self.update_view(|v| v.task = None);
        self.refresh_process(current);
    }

    /// The task's timeout: the producer's for this task, else the task
    /// function's, else `default_task_timeout`; never over
    /// `max_task_timeout` (a raw producer may write any number).
    fn timeout_of(
        &self,
        current: &Current,
        record: &TaskRecord,
        function: Option<Duration>,
    ) -> Duration {
        let max = current.config.settings.max_task_timeout();
        let asked = record
            .timeout
            .map(Duration::from_secs)
            .or(function)
            .unwrap_or_else(|| current.config.default_timeout());
        if asked > max {
            warn!(task = %record.id, "timeout of {} s is over max_task_timeout; {} s it is", asked.as_secs(), max.as_secs());
        }
        capped_timeout(asked, max)
    }

    /// Runs the task, starting a worker process first when the slot has
    /// none ready.
    fn execute(
        &mut self,
        current: &Current,
        lease: &Lease,
        record: &TaskRecord,
        timeout: Duration,
        inputs: RunInputs,
    ) -> (Outcome, Made) {
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
        let mut process = match ready.or_else(|| self.take_spare(&SpareKind::Plain, current)) {
            Some(process) => process,
            None => match self.start_process(current) {
                Ok(process) => process,
                Err(text) => {
                    return (
                        Outcome::failure(FailureKind::StartFailed(text)),
                        Made::nothing(inputs.children),
                    );
                }
            },
        };
        if process.tasks_run + 1 >= current.config.max_tasks_per_child.max(1) {
            // Its last task: the next process starts while this one runs.
            let (spec, generation) = (current.spawn.clone(), current.generation);
            self.order_spare(
                SpareKind::Plain,
                generation,
                Box::new(move || WorkerProcess::spawn(&spec, generation)),
            );
        }
        let (end, reusable, made) =
            self.run_leased(current, lease, record, timeout, &mut process, inputs);
        if reusable {
            self.process = Some(process);
        } else {
            self.update_view(|v| v.pid = None);
        }
        (end, made)
    }

    /// Runs the task on a worker process of its own, started under
    /// `profile` and retired (its whole process group killed) after this
    /// one task. The slot's ready, unrestricted process stays ready.
    fn execute_isolated(
        &mut self,
        current: &Current,
        lease: &Lease,
        record: &TaskRecord,
        timeout: Duration,
        profile: &Isolation,
        inputs: RunInputs,
    ) -> (Outcome, Made, Option<bool>) {
        let kind = SpareKind::Isolated(Box::new(profile.clone()));
        let spare = self.take_spare(&kind, current);
        let slot_profile = isolation::for_slot(
            profile,
            current.config.settings.dynamic_user_base,
            self.index,
        );
        let plan = match Plan::build(&slot_profile, &current.spawn.env) {
            Ok(plan) => plan,
            Err(not) => {
                warn!(task = %record.id, "isolation not applied ({not}); the task is not run");
                return (
                    Outcome::failure(not.failure()),
                    Made::nothing(inputs.children),
                    None,
                );
            }
        };
        let started = match spare {
            Some(process) => Ok(process),
            None => WorkerProcess::spawn_isolated(&current.spawn, current.generation, Some(&plan)),
        };
        if started.is_ok() && plan.child.namespaces.is_some() && profile.process_limit.is_none() {
            self.order_spare(
                kind,
                current.generation,
                isolated_start(current, profile, self.index),
            );
        }
        let mut process = match started {
            Ok(process) => process,
            Err(SpawnError::NotIsolated(not)) => {
                warn!(task = %record.id, "isolation not applied ({not}); the task is not run");
                return (
                    Outcome::failure(not.failure()),
                    Made::nothing(inputs.children),
                    None,
                );
            }
            Err(e) => {
                error!(slot = %self.id, "isolated worker process failed to start: {e}");
                return (
                    Outcome::failure(FailureKind::StartFailed(e.to_string())),
                    Made::nothing(inputs.children),
                    None,
                );
            }
        };
        self.shared.metrics.process_started(true);
        let ready = self.process.as_ref().map(WorkerProcess::pid);
        let pid = process.pid();
        self.update_view(|v| v.pid = Some(pid));
        let (end, reusable, made) =
            self.run_leased(current, lease, record, timeout, &mut process, inputs);
        let oom_killed = process.oom_killed();
        if reusable {
            self.shared.retire(process);
        }
        self.update_view(|v| v.pid = ready);
        (end, made, oom_killed)
    }

    /// Runs `record` on `process`: its meta and progress go to the lease's
    /// partition, held to the supervisor's rates; the tasks it asks for
    /// are answered by `children`. Returns how the run ended, whether the
    /// process may take another task, and what the run made.
    ///
    /// Once the task is sent, and before its run is watched, the slot
    /// does its Redis work for what comes next (`overlap`).
    fn run_leased(
        &mut self,
        current: &Current,
        lease: &Lease,
        record: &TaskRecord,
        timeout: Duration,
        process: &mut WorkerProcess,
        inputs: RunInputs,
    ) -> (Outcome, bool, Made) {
        let RunInputs {
            children,
            traceparent,
        } = inputs;
        let settings = &current.config.settings;
        let keep =
            usize::try_from(settings.task_log_kib.saturating_mul(1024)).unwrap_or(usize::MAX);
        process
            .output()
            .begin(&record.id, keep, settings.task_output_to_log);
        if let Err(end) = crate::execute::send_run(process, record, traceparent) {
            self.save_output(lease, &process.output().finish());
            return (end, false, Made::nothing(children));
        }
        self.overlap(current, lease);
        let mut hooks = MetaToRedis {
            store: self.store.leased(lease),
            result: None,
            shared: &self.shared,
            slot: self.index,
            producer: &self.store,
            children,
            slot_id: &self.id,
            hand_back_at: self
                .next
                .is_some()
                .then(|| Instant::now() + hooks::read_ahead_wait()),
            waiting: self.next.take(),
        };
        let (end, reusable) = run_on(
            process,
            record,
            timeout,
            &self.commands,
            &mut hooks,
            settings.max_args_bytes,
        );
        let MetaToRedis {
            result,
            children,
            waiting,
            ..
        } = hooks;
        self.next = waiting;
        self.save_output(lease, &process.output().finish());
        (end, reusable, Made { result, children })
    }

    /// The slot's Redis work while the task of `running` starts: the end
    /// of the task before it, left pending, is written, and takes the
    /// task after this one ahead in the same round trip; without one, a
    /// busy slot (this task was read ahead too) takes it alone. Both are
    /// tried once: an error leaves the end pending, or nothing read ahead.
    fn overlap(&mut self, current: &Current, running: &Lease) {
        if self.pending.is_some() {
            self.write_pending_beside(&running.id);
            return;
        }
        if !self.reading_ahead || self.next.is_some() || !self.shared.mode().fetches() {
            return;
        }
        let queues = current.config.fetch_order(random);
        match self.store.fetch_ahead(running, &queues) {
            Ok(next) => self.next = next,
            Err(e) => debug!(slot = %self.id, "nothing read ahead ({e})"),
        }
    }

    /// Stores what the task of `lease` wrote, before its ending is
    /// recorded (so whoever sees it end finds its output). One try: the
    /// output is not worth holding up the outcome for. A run that wrote
    /// nothing costs nothing.
    fn save_output(&self, lease: &Lease, captured: &crate::task_output::Captured) {
        if captured.is_empty() {
            return;
        }
        if let Err(e) = self.store.save_output(lease, &captured.stored()) {
            warn!(task = %lease.id, "the task's output was not stored: {e}");
        }
    }

    /// The slot's spare if it is of `kind` and of the configuration in
    /// effect, counted and shown like a process started now.
    fn take_spare(&mut self, kind: &SpareKind, current: &Current) -> Option<WorkerProcess> {
        let process = self.spare.take(kind, current.generation)?;
        debug!(slot = %self.id, pid = process.pid(), "worker process prepared while the last task ran");
        self.shared.metrics.process_started(true);
        self.shared.start_failures.store(0, Ordering::SeqCst);
        if *kind == SpareKind::Plain {
            let pid = process.pid();
            self.update_view(|v| v.pid = Some(pid));
        }
        Some(process)
    }

    /// Has the next worker process prepared (see `worker_process::spare`).
    fn order_spare(
        &mut self,
        kind: SpareKind,
        generation: u64,
        start: crate::worker_process::SpareStart,
    ) {
        self.spare.order(kind, generation, start);
    }

    /// An idle worker process started before the last reload is replaced.
    fn replace_outdated_process(&mut self, current: &Current) {
        self.spare.discard_before(current.generation);
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
        let prepared = self.spare.is_ordered();
        if self.process.is_none() && !prepared && !self.shared.mode().stopping() {
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
}

/// What a run is given besides its record: what it may enqueue, and the
/// trace context of its span (when the task was enqueued with one).
pub(super) struct RunInputs {
    children: Children,
    traceparent: Option<String>,
}

/// What a run made besides its outcome: the task's return value (JSON
/// text) and the tasks it asked to enqueue (those held for its end among
/// them).
pub(super) struct Made {
    result: Option<String>,
    children: Children,
}

impl Made {
    /// A run that never reached a worker process.
    fn nothing(children: Children) -> Self {
        Made {
            result: None,
            children,
        }
    }
}

/// Starts a worker process of `profile` for slot `index` (on the spare's
/// thread: the plan is built there).
fn isolated_start(
    current: &Current,
    profile: &Isolation,
    index: usize,
) -> crate::worker_process::SpareStart {
    let (spec, generation) = (current.spawn.clone(), current.generation);
    let (profile, base) = (profile.clone(), current.config.settings.dynamic_user_base);
    Box::new(move || {
        let profile = isolation::for_slot(&profile, base, index);
        let plan = Plan::build(&profile, &spec.env).map_err(SpawnError::NotIsolated)?;
        WorkerProcess::spawn_isolated(&spec, generation, Some(&plan))
    })
}

/// The timeout a task runs with: the one `asked` (a record's, a task
/// function's, or the setting's), at most `max` (`max_task_timeout`).
pub(crate) fn capped_timeout(asked: Duration, max: Duration) -> Duration {
    asked.min(max)
}

/// Debug builds only: a panic in the slot thread for tasks of the function
/// named by `REDIS_TASKS_TEST_SLOT_PANIC`, so the tests can show that a
/// panic ends the task and leaves the supervisor serving (no record
/// triggers one any more).
#[cfg(debug_assertions)]
fn test_hook_panic(task: &str) {
    if std::env::var_os("REDIS_TASKS_TEST_SLOT_PANIC").is_some_and(|name| name == task) {
        panic!("test hook REDIS_TASKS_TEST_SLOT_PANIC for {task:?}");
    }
}

/// A uniform 64-bit number for drawing the weighted order of the queues
/// (xorshift64 per thread, seeded from the clock and the thread; not for
/// secrets).
pub(crate) fn random() -> u64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}
