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

use super::producer::check_name;
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

impl Part {
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
        check_name("queue", run.queue)?;
        let call = self.prepare_call(run.task, run.args)?;
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let now = time_text(Timestamp::now());
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
        let what = "enqueue scheduled run";
        let mut it = reply.into_iter();
        match next_text(&mut it, what)?.as_str() {
            "nolock" => Ok(RunResult::LockLost),
            "done" => Ok(RunResult::AlreadyDone),
            "enqueued" => Ok(RunResult::Enqueued(next_text(&mut it, what)?)),
            "busy" => Ok(RunResult::Busy {
                previous: next_text(&mut it, what)?,
                status: next_text(&mut it, what)?,
            }),
            other => Err(unexpected(what, other)),
        }
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
