//! The producer's requests to Redis, built without a connection: which
//! script (or pipeline) an enqueue, a cancel or a wait sends, with which
//! keys and arguments, and what its reply means.
//!
//! The sync [`Store`](crate::Store) and the async
//! [`AsyncStore`](crate::AsyncStore) (feature `async`) both send exactly
//! what these functions build and read the replies through them; they
//! differ only in how the bytes travel (a blocking connection, or a
//! multiplexed Tokio one). Each function works on one partition's
//! [`Keys`]; which partition is the router's choice (`route`).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis::{Cmd, Pipeline, ScriptInvocation, Value};
use redis_tasks_protocol::model::{TaskRecord, TaskStatus};
use serde::Serialize;

use crate::keys::Keys;
use crate::part::Options;
use crate::producer::{NewTask, check_name, new_task};
use crate::record::{hash_from_value, parse_record, score, text_of, time_text};
use crate::{EnqueueOptions, Enqueued, StoreError, scripts};

/// How many tasks one enqueue script writes (a batch is split into scripts
/// of this size, all sent in one round trip).
const ENQUEUE_CHUNK: usize = 500;

/// What one enqueue call sends, built before anything is sent.
pub(crate) enum EnqueueCall {
    /// Nothing to write (an empty batch).
    Nothing,
    /// One task without options: one EVALSHA of the enqueue script
    /// (loading it only if Redis does not know it yet), the common path.
    One(ScriptInvocation<'static>),
    /// Several tasks, or tasks with options: one pipeline that loads the
    /// script and runs it on chunks of tasks, errors collected (read the
    /// reply with [`crate::replies`]).
    Batch(Pipeline),
    /// A task with a uniqueness key: the reply (`new` or `dup`, and an id)
    /// is read by [`unique_reply`].
    Unique(ScriptInvocation<'static>),
}

/// An enqueue ready to send: the request and the ids of the new tasks.
pub(crate) struct PlannedEnqueue {
    /// The request.
    pub(crate) call: EnqueueCall,
    /// The ids the request writes, in order (for a unique enqueue, the id
    /// it writes if no live task holds the key).
    pub(crate) ids: Vec<String>,
}

/// One call of `task` with `args` and `options` on `queue`, in the
/// partition `keys` names (for a unique task, that of its key).
pub(crate) fn plan_enqueue<A: Serialize + ?Sized>(
    keys: &Keys,
    opts: &Options,
    queue: &str,
    task: &str,
    args: &A,
    options: &EnqueueOptions,
) -> Result<PlannedEnqueue, StoreError> {
    let options = options.or_current_trace();
    let options = options.as_ref();
    options.check()?;
    let t = new_task(opts.max_args_bytes, task, args)?;
    let Some(unique) = options.unique_key() else {
        return plan_write(keys, opts, queue, vec![t], options);
    };
    check_name("queue", queue)?;
    let timeout = options.timeout_field(opts.max_task_timeout)?;
    let retry = options.retry_field()?;
    let now = Timestamp::now();
    let (run_at, run_score) = options.when_fields(now)?;
    let expires_at = options.expiry_field(now)?;
    let mut inv = scripts::ENQUEUE_UNIQUE.prepare_invoke();
    inv.key(keys.queues())
        .key(keys.scheduled())
        .arg(keys.prefix())
        .arg(&t.id)
        .arg(&t.task)
        .arg(&t.args)
        .arg(queue)
        .arg(&t.description)
        .arg(time_text(now))
        .arg(unique)
        .arg(&run_at)
        .arg(&run_score)
        .arg(&timeout)
        .arg(&retry)
        .arg(&expires_at)
        .arg(options.traceparent_field());
    Ok(PlannedEnqueue {
        call: EnqueueCall::Unique(inv),
        ids: vec![t.id],
    })
}

/// Many calls with the same `options` (no uniqueness key) on `queue`, in
/// the partition `keys` names. Arguments are all checked first.
pub(crate) fn plan_enqueue_many<T: AsRef<str>, A: Serialize>(
    keys: &Keys,
    opts: &Options,
    queue: &str,
    calls: &[(T, A)],
    options: &EnqueueOptions,
) -> Result<PlannedEnqueue, StoreError> {
    let options = options.or_current_trace();
    let options = options.as_ref();
    options.check()?;
    if options.unique_key().is_some() {
        return Err(StoreError::InvalidOption {
            option: "unique",
            reason: "a uniqueness key names one task; enqueue it with enqueue_with".to_owned(),
        });
    }
    let tasks = calls
        .iter()
        .map(|(task, args)| new_task(opts.max_args_bytes, task.as_ref(), args))
        .collect::<Result<Vec<_>, _>>()?;
    plan_write(keys, opts, queue, tasks, options)
}

/// Writes checked tasks without a uniqueness key: plain ones with the
/// enqueue script, ones with options with the options' script.
fn plan_write(
    keys: &Keys,
    opts: &Options,
    queue: &str,
    tasks: Vec<NewTask>,
    options: &EnqueueOptions,
) -> Result<PlannedEnqueue, StoreError> {
    check_name("queue", queue)?;
    let call = if options.is_plain() {
        plan_plain(keys, queue, &tasks)
    } else {
        plan_with_options(keys, opts, queue, &tasks, options)?
    };
    Ok(PlannedEnqueue {
        call,
        ids: tasks.into_iter().map(|t| t.id).collect(),
    })
}

fn plan_plain(keys: &Keys, queue: &str, tasks: &[NewTask]) -> EnqueueCall {
    if tasks.is_empty() {
        return EnqueueCall::Nothing;
    }
    let now = time_text(Timestamp::now());
    if let [t] = tasks {
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        inv.key(keys.queues())
            .arg(keys.prefix())
            .arg(&t.id)
            .arg(&t.task)
            .arg(&t.args)
            .arg(queue)
            .arg(&t.description)
            .arg(&now);
        return EnqueueCall::One(inv);
    }
    let mut pipe = redis::pipe();
    pipe.load_script(&scripts::ENQUEUE).ignore();
    for chunk in tasks.chunks(ENQUEUE_CHUNK) {
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        inv.key(keys.queues()).arg(keys.prefix());
        for t in chunk {
            inv.arg(&t.id)
                .arg(&t.task)
                .arg(&t.args)
                .arg(queue)
                .arg(&t.description)
                .arg(&now);
        }
        pipe.invoke_script(&inv);
    }
    pipe.ignore_errors();
    EnqueueCall::Batch(pipe)
}

/// Tasks with `options`: each queued at the tail of `queue`, or, when due
/// later, put in the delayed set.
fn plan_with_options(
    keys: &Keys,
    opts: &Options,
    queue: &str,
    tasks: &[NewTask],
    options: &EnqueueOptions,
) -> Result<EnqueueCall, StoreError> {
    let timeout = options.timeout_field(opts.max_task_timeout)?;
    let retry = options.retry_field()?;
    if tasks.is_empty() {
        return Ok(EnqueueCall::Nothing);
    }
    let now = Timestamp::now();
    let (run_at, run_score) = options.when_fields(now)?;
    let expires_at = options.expiry_field(now)?;
    let enqueued_at = time_text(now);
    let mut pipe = redis::pipe();
    pipe.load_script(&scripts::ENQUEUE_WITH).ignore();
    for chunk in tasks.chunks(ENQUEUE_CHUNK) {
        let mut inv = scripts::ENQUEUE_WITH.prepare_invoke();
        inv.key(keys.queues())
            .key(keys.scheduled())
            .arg(keys.prefix());
        for t in chunk {
            inv.arg(&t.id)
                .arg(&t.task)
                .arg(&t.args)
                .arg(queue)
                .arg(&t.description)
                .arg(&enqueued_at)
                .arg(&run_at)
                .arg(&run_score)
                .arg(&timeout)
                .arg(&retry)
                .arg(&expires_at)
                .arg(options.traceparent_field());
        }
        pipe.invoke_script(&inv);
    }
    pipe.ignore_errors();
    Ok(EnqueueCall::Batch(pipe))
}

/// The unique enqueue script's reply: a new task, or the live one holding
/// the key.
pub(crate) fn unique_reply((what, id): (String, String)) -> Result<Enqueued, StoreError> {
    match what.as_str() {
        "new" => Ok(Enqueued::New(id)),
        "dup" => Ok(Enqueued::Existing(id)),
        other => Err(StoreError::UnexpectedReply {
            what: "unique enqueue",
            detail: format!("unknown answer {other:?}"),
        }),
    }
}

/// The first id of an enqueue of one task that was not unique.
pub(crate) fn first_id(ids: Vec<String>) -> Result<Enqueued, StoreError> {
    ids.into_iter()
        .next()
        .map(Enqueued::New)
        .ok_or_else(|| StoreError::UnexpectedReply {
            what: "enqueue",
            detail: "no id written".to_owned(),
        })
}

/// `HGETALL` of task `id`'s record.
pub(crate) fn read_task(keys: &Keys, id: &str) -> Cmd {
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(keys.task(id));
    cmd
}

/// The record in the reply of [`read_task`] (an empty hash: not found).
pub(crate) fn task_reply(id: &str, value: Value) -> Result<TaskRecord, StoreError> {
    parse_record(id, &hash_from_value("HGETALL", value)?)
}

/// `EXISTS` of task `id`'s record (which partition holds it).
pub(crate) fn task_exists(keys: &Keys, id: &str) -> Cmd {
    let mut cmd = redis::cmd("EXISTS");
    cmd.arg(keys.task(id));
    cmd
}

/// The cancel script for a task waiting in its queue.
pub(crate) fn cancel(keys: &Keys, id: &str, registry_ttl: u64) -> ScriptInvocation<'static> {
    let now = Timestamp::now();
    let mut inv = scripts::CANCEL.prepare_invoke();
    inv.key(keys.task(id))
        .arg(keys.prefix())
        .arg(id)
        .arg(time_text(now))
        .arg(registry_ttl)
        .arg(score(now));
    inv
}

/// What the cancel script found, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CancelReply {
    /// Canceled.
    Done,
    /// The task is in another status (a scheduled one is canceled by
    /// [`cancel_scheduled`]; others are refused).
    Status(TaskStatus),
}

/// Reads the cancel script's reply.
pub(crate) fn cancel_reply(id: &str, reply: Vec<Value>) -> Result<CancelReply, StoreError> {
    let mut it = reply.into_iter();
    let kind = match it.next() {
        Some(v) => text_of("cancel", v)?,
        None => String::new(),
    };
    let corrupt = |field: &str, reason: String| StoreError::Corrupt {
        id: id.to_owned(),
        field: field.to_owned(),
        reason,
    };
    match kind.as_str() {
        "ok" => Ok(CancelReply::Done),
        "missing" => Err(StoreError::NotFound { id: id.to_owned() }),
        "taken" => Err(StoreError::Taken { id: id.to_owned() }),
        "noqueue" => Err(corrupt("queue", "missing".to_owned())),
        "status" => {
            let word = match it.next() {
                Some(v) => text_of("cancel", v)?,
                None => String::new(),
            };
            if word.is_empty() {
                return Err(corrupt("status", "missing".to_owned()));
            }
            let status: TaskStatus =
                word.parse()
                    .map_err(|e: redis_tasks_protocol::model::UnknownStatus| {
                        corrupt("status", e.to_string())
                    })?;
            Ok(CancelReply::Status(status))
        }
        other => Err(StoreError::UnexpectedReply {
            what: "cancel",
            detail: format!("unknown answer {other:?}"),
        }),
    }
}

/// The script canceling a task of the delayed set; its reply is 1 when it
/// did.
pub(crate) fn cancel_scheduled(
    keys: &Keys,
    id: &str,
    registry_ttl: u64,
) -> ScriptInvocation<'static> {
    let now = Timestamp::now();
    let mut inv = scripts::CANCEL_SCHEDULED.prepare_invoke();
    inv.key(keys.task(id))
        .key(keys.scheduled())
        .arg(keys.prefix())
        .arg(id)
        .arg(time_text(now))
        .arg(registry_ttl)
        .arg(score(now));
    inv
}

/// The script recording a cancel request for a running task.
pub(crate) fn request_cancel(keys: &Keys, id: &str) -> ScriptInvocation<'static> {
    let mut inv = scripts::REQUEST_CANCEL.prepare_invoke();
    inv.key(keys.task(id))
        .key(keys.cancel_requests())
        .arg(keys.prefix())
        .arg(id)
        .arg(time_text(Timestamp::now()));
    inv
}

/// Reads the reply of [`request_cancel`]: `Ok` with the supervisor whose
/// wake list was poked (if any), `Err(status)` when the task is not
/// running.
pub(crate) fn request_cancel_reply(
    id: &str,
    reply: Vec<Value>,
) -> Result<Result<Option<String>, TaskStatus>, StoreError> {
    let mut it = reply.into_iter();
    let kind = match it.next() {
        Some(v) => text_of("cancel", v)?,
        None => String::new(),
    };
    match kind.as_str() {
        "ok" => {
            let woken = it.next().map(|v| text_of("cancel", v)).transpose()?;
            Ok(Ok(woken.filter(|s| !s.is_empty())))
        }
        "missing" => Err(StoreError::NotFound { id: id.to_owned() }),
        "status" => {
            let word = match it.next() {
                Some(v) => text_of("cancel", v)?,
                None => String::new(),
            };
            let status = word
                .parse::<TaskStatus>()
                .map_err(|e| StoreError::Corrupt {
                    id: id.to_owned(),
                    field: "status".to_owned(),
                    reason: e.to_string(),
                })?;
            Ok(Err(status))
        }
        other => Err(StoreError::UnexpectedReply {
            what: "cancel",
            detail: format!("unknown answer {other:?}"),
        }),
    }
}

/// How many times a cancel looks again at a task that moved on between
/// two steps (fetched, promoted), and how long it pauses before round
/// `round` (a fetch marks the task running a moment after it took it).
pub(crate) const CANCEL_ROUNDS: u32 = 5;

/// The pause before cancel round `round` (none before the first).
pub(crate) fn cancel_pause(round: u32) -> Option<Duration> {
    (round > 0).then(|| Duration::from_millis(10 << round))
}

/// Wakes supervisor `supervisor`'s promoter through its wake list.
pub(crate) fn wake(keys: &Keys, supervisor: &str) -> Pipeline {
    let key = keys.wake(supervisor);
    let mut pipe = redis::pipe();
    pipe.cmd("DEL")
        .arg(&key)
        .ignore()
        .cmd("RPUSH")
        .arg(&key)
        .arg("1")
        .ignore()
        .cmd("EXPIRE")
        .arg(&key)
        .arg(60)
        .ignore();
    pipe
}

/// The shortest blocking wait asked of Redis (it counts in seconds with
/// decimals; `0` would mean "forever").
const MIN_BLOCK: Duration = Duration::from_millis(10);

/// The longest one blocking call waits; a longer wait is several calls
/// (any timeout is accepted, up to "forever" in practice).
const MAX_BLOCK: Duration = Duration::from_secs(3600);

/// How long the next blocking call of a wait for a task's end may block
/// before `deadline` (none: no deadline); `None` when too little is left
/// and the wait is over.
pub(crate) fn block_for(deadline: Option<Instant>) -> Option<Duration> {
    let left = deadline.map_or(MAX_BLOCK, |d| d.saturating_duration_since(Instant::now()));
    (left >= MIN_BLOCK).then(|| left.min(MAX_BLOCK))
}

/// The blocking wait for task `id`'s end: `BLMOVE` of `P:done:<id>` onto
/// itself for up to `left`, which returns at once when the element is
/// there and leaves it for every other waiter (nil: timed out).
pub(crate) fn await_done(keys: &Keys, id: &str, left: Duration) -> Cmd {
    let done = keys.done(id);
    let mut cmd = redis::cmd("BLMOVE");
    cmd.arg(&done)
        .arg(&done)
        .arg("LEFT")
        .arg("LEFT")
        .arg(left.as_secs_f64());
    cmd
}
