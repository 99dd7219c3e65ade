//! What the scheduler process needs from Redis: the last run of each
//! schedule entry, and enqueueing one run exactly once.
//!
//! Every write is fenced on the fleet-wide `scheduler` lock (taken with
//! [`Store::try_lock`]): a scheduler that lost the lock (paused for longer
//! than its expiry, say) cannot enqueue any more. Together with the last run
//! kept per entry, this makes each run time of an entry enqueued at most
//! once, also when a second scheduler takes over from a dead one.

use jiff::Timestamp;
use redis::Value;
use serde::Serialize;

use super::producer::{PreparedCall, check_name};
use super::record::{score, text_of, time_text};
use super::{Store, StoreError, scripts};
use crate::part::Part;

/// The name of the scheduler's fleet-wide lock (`P:lock:scheduler`).
pub const SCHEDULER_LOCK: &str = "scheduler";

/// One run of a schedule entry, as the scheduler asks to enqueue it.
#[derive(Debug, Clone, Copy)]
pub struct ScheduledRun<'a, A: ?Sized> {
    /// The entry's id (the `ID` of `[schedule.ID]`).
    pub entry: &'a str,
    /// The run time the schedule named (UTC).
    pub at: Timestamp,
    /// The task function to enqueue.
    pub task: &'a str,
    /// Its arguments.
    pub args: &'a A,
    /// The queue to enqueue into.
    pub queue: &'a str,
    /// Skip the run while the entry's previous task is queued or running.
    pub singleton: bool,
}

/// What [`Store::enqueue_scheduled`] did with a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// The run was enqueued as the task with this id.
    Enqueued(String),
    /// A run at this time or later was handled before (by this scheduler or
    /// another): nothing was written.
    AlreadyDone,
    /// A singleton entry's previous task is still queued or running; the run
    /// is skipped (and counts as handled).
    Busy {
        /// The previous task's id.
        previous: String,
        /// Its status word (`queued` or `running`).
        status: String,
    },
    /// The caller does not hold the scheduler lock: nothing was written.
    LockLost,
    /// The entry is paused: the run is skipped (and counts as handled).
    Paused,
}

/// What an operator asked of a schedule entry at run time, as kept in its
/// hash `P:schedule:<entry>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleControl {
    /// Runs are skipped until the entry is resumed.
    pub paused: bool,
    /// When it was paused (RFC 3339), if it is.
    pub paused_at: Option<String>,
    /// "Run now" requests not yet enqueued by the active scheduler.
    pub run_requests: u64,
}

impl Store {
    /// The last handled run of schedule entry `entry`, if any.
    pub fn schedule_last_run(&self, entry: &str) -> Result<Option<Timestamp>, StoreError> {
        self.zero().schedule_last_run(entry)
    }

    /// Returns the last handled run of `entry`; for an entry seen for the
    /// first time, first stores `now` as its last run (so that runs missed
    /// while no scheduler runs are caught up later). Fenced on the scheduler
    /// lock held by `token`: `Ok(None)` when it is not held.
    pub fn schedule_init(
        &self,
        entry: &str,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.zero().schedule_init(entry, token, now)
    }

    /// Enqueues `run` unless it was handled before, in one atomic step
    /// fenced on the scheduler lock held by `token`. A singleton entry whose
    /// previous task is still queued or running skips the run instead. Either
    /// way the run becomes the entry's last run.
    pub fn enqueue_scheduled<A: Serialize + ?Sized>(
        &self,
        token: &str,
        run: &ScheduledRun<'_, A>,
    ) -> Result<RunResult, StoreError> {
        self.zero().enqueue_scheduled(token, run)
    }
}

impl Store {
    /// The pause state and pending "run now" requests of `entry`.
    pub fn schedule_control(&self, entry: &str) -> Result<ScheduleControl, StoreError> {
        self.zero().schedule_control(entry)
    }

    /// The entry ids the active scheduler registered when it took the lock
    /// (empty when no scheduler has run), sorted.
    pub fn schedule_entries(&self) -> Result<Vec<String>, StoreError> {
        let part = self.zero();
        let key = part.keys().schedule_entries();
        let mut ids: Vec<String> = part.read(&[(&key, "set")], |c, _| {
            redis::cmd("SMEMBERS").arg(&key).query(c)
        })?;
        ids.sort();
        Ok(ids)
    }

    /// Replaces the registered entry ids with `ids`, fenced on the scheduler
    /// lock held by `token`; `false` when it is not held.
    pub fn register_schedule_entries(
        &self,
        token: &str,
        ids: &[String],
    ) -> Result<bool, StoreError> {
        let done: i64 = self.zero().run(&[], |c, keys| {
            let mut call = scripts::SCHEDULE_REGISTER.prepare_invoke();
            call.key(keys.schedule_entries())
                .key(keys.lock(SCHEDULER_LOCK))
                .arg(keys.prefix())
                .arg(token);
            for id in ids {
                call.arg(id);
            }
            call.invoke(c)
        })?;
        Ok(done == 1)
    }

    /// Pauses (`paused`) or resumes schedule entry `entry` and wakes the
    /// active scheduler. Resuming moves the entry's last run up to now, so
    /// the runs due while it was paused are skipped, not caught up.
    /// `true` when the state changed.
    pub fn set_schedule_paused(&self, entry: &str, paused: bool) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let changed: i64 = self.zero().run(&[], |c, keys| {
            scripts::SCHEDULE_PAUSE
                .key(keys.schedule_entry(entry))
                .key(keys.schedule_wake())
                .arg(keys.prefix())
                .arg(if paused { "1" } else { "0" })
                .arg(time_text(now))
                .arg(score(now))
                .invoke(c)
        })?;
        Ok(changed == 1)
    }

    /// Asks the active scheduler to enqueue one run of `entry` now (whether
    /// or not it is paused) and wakes it; returns the requests pending.
    pub fn request_schedule_run(&self, entry: &str) -> Result<u64, StoreError> {
        self.zero().run(&[], |c, keys| {
            scripts::SCHEDULE_REQUEST_RUN
                .key(keys.schedule_entry(entry))
                .key(keys.schedule_wake())
                .arg(keys.prefix())
                .invoke(c)
        })
    }

    /// Enqueues one pending "run now" request of `run.entry` (its `at` and
    /// `singleton` are not used), fenced on the scheduler lock held by
    /// `token`. [`RunResult::AlreadyDone`] when no request is pending.
    pub fn enqueue_requested_run<A: Serialize + ?Sized>(
        &self,
        token: &str,
        run: &ScheduledRun<'_, A>,
    ) -> Result<RunResult, StoreError> {
        self.zero().enqueue_requested_run(token, run)
    }

    /// Waits up to `wait` for a poke of the scheduler's wake list (a pause,
    /// resume or "run now"); `true` when poked.
    pub fn wait_for_schedule_wake(&self, wait: std::time::Duration) -> Result<bool, StoreError> {
        let part = self.zero();
        let key = part.keys().schedule_wake();
        // Redis reads a timeout of 0 as "forever": never send less than 1 ms.
        let secs = wait.as_secs_f64().max(0.001);
        let popped: Option<(String, String)> =
            part.run_blocking(wait, &[(&key, "list")], |c, _| {
                redis::cmd("BLPOP")
                    .arg(&key)
                    .arg(format!("{secs:.3}"))
                    .query(c)
            })?;
        Ok(popped.is_some())
    }
}

impl Part {
    pub(crate) fn schedule_control(&self, entry: &str) -> Result<ScheduleControl, StoreError> {
        let key = self.keys().schedule_entry(entry);
        let (paused, paused_at, requests): (Option<String>, Option<String>, Option<String>) = self
            .read(&[(&key, "hash")], |c, _| {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("paused")
                    .arg("paused_at")
                    .arg("run_requests")
                    .query(c)
            })?;
        Ok(ScheduleControl {
            paused: paused.as_deref() == Some("1"),
            paused_at,
            run_requests: requests.and_then(|n| n.parse().ok()).unwrap_or(0),
        })
    }

    pub(crate) fn enqueue_requested_run<A: Serialize + ?Sized>(
        &self,
        token: &str,
        run: &ScheduledRun<'_, A>,
    ) -> Result<RunResult, StoreError> {
        let (call, id, now) = self.prepare_run(run)?;
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            scripts::SCHEDULE_RUN_NOW
                .key(keys.schedule_entry(run.entry))
                .key(keys.lock(SCHEDULER_LOCK))
                .key(keys.queues())
                .arg(keys.prefix())
                .arg(token)
                .arg(&id)
                .arg(run.task)
                .arg(&call.args)
                .arg(run.queue)
                .arg(&call.description)
                .arg(&now)
                .invoke(c)
        })?;
        run_result(reply, "enqueue requested run")
    }

    /// What both enqueues of a run need: the queue name checked, the call
    /// prepared as an enqueue does, a new id and the time now.
    fn prepare_run<A: Serialize + ?Sized>(
        &self,
        run: &ScheduledRun<'_, A>,
    ) -> Result<(PreparedCall, String, String), StoreError> {
        check_name("queue", run.queue)?;
        let call = self.prepare_call(run.task, run.args)?;
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        Ok((call, id, time_text(Timestamp::now())))
    }

    pub(crate) fn schedule_last_run(&self, entry: &str) -> Result<Option<Timestamp>, StoreError> {
        let key = self.keys().schedule_entry(entry);
        let text: Option<String> = self.read(&[(&key, "hash")], |c, _| {
            redis::cmd("HGET").arg(&key).arg("last_run").query(c)
        })?;
        text.map(|t| parse_time(entry, &t)).transpose()
    }

    pub(crate) fn schedule_init(
        &self,
        entry: &str,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            scripts::SCHEDULE_INIT
                .key(keys.schedule_entry(entry))
                .key(keys.lock(SCHEDULER_LOCK))
                .arg(keys.prefix())
                .arg(token)
                .arg(time_text(now))
                .arg(score(now))
                .invoke(c)
        })?;
        let mut it = reply.into_iter();
        match next_text(&mut it, "schedule init")?.as_str() {
            "nolock" => Ok(None),
            "ok" => {
                let text = next_text(&mut it, "schedule init")?;
                parse_time(entry, &text).map(Some)
            }
            other => Err(unexpected("schedule init", other)),
        }
    }

    pub(crate) fn enqueue_scheduled<A: Serialize + ?Sized>(
        &self,
        token: &str,
        run: &ScheduledRun<'_, A>,
    ) -> Result<RunResult, StoreError> {
        let (call, id, now) = self.prepare_run(run)?;
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            scripts::SCHEDULE_RUN
                .key(keys.schedule_entry(run.entry))
                .key(keys.lock(SCHEDULER_LOCK))
                .key(keys.queues())
                .arg(keys.prefix())
                .arg(token)
                .arg(score(run.at))
                .arg(time_text(run.at))
                .arg(if run.singleton { "1" } else { "0" })
                .arg(&id)
                .arg(run.task)
                .arg(&call.args)
                .arg(run.queue)
                .arg(&call.description)
                .arg(&now)
                .invoke(c)
        })?;
        run_result(reply, "enqueue scheduled run")
    }
}

pub(crate) fn next_text(
    it: &mut impl Iterator<Item = Value>,
    what: &'static str,
) -> Result<String, StoreError> {
    match it.next() {
        Some(v) => text_of(what, v),
        None => Err(StoreError::UnexpectedReply {
            what,
            detail: "reply too short".to_owned(),
        }),
    }
}

pub(crate) fn unexpected(what: &'static str, word: &str) -> StoreError {
    StoreError::UnexpectedReply {
        what,
        detail: format!("unknown answer {word:?}"),
    }
}

fn parse_time(entry: &str, text: &str) -> Result<Timestamp, StoreError> {
    text.parse()
        .map_err(|e: jiff::Error| StoreError::UnexpectedReply {
            what: "schedule last run",
            detail: format!("entry {entry}: last_run {text:?}: {e}"),
        })
}

/// The answer of the scripts that enqueue a run of a schedule entry.
fn run_result(reply: Vec<Value>, what: &'static str) -> Result<RunResult, StoreError> {
    let mut it = reply.into_iter();
    match next_text(&mut it, what)?.as_str() {
        "nolock" => Ok(RunResult::LockLost),
        // `done` from the timed run, `none` from a run asked for now.
        "done" | "none" => Ok(RunResult::AlreadyDone),
        "paused" => Ok(RunResult::Paused),
        "enqueued" => Ok(RunResult::Enqueued(next_text(&mut it, what)?)),
        "busy" => Ok(RunResult::Busy {
            previous: next_text(&mut it, what)?,
            status: next_text(&mut it, what)?,
        }),
        other => Err(unexpected(what, other)),
    }
}
