//! The producer side: putting tasks on queues and looking at queues.
//!
//! Enqueueing writes the task's hash, appends its id to the tail of the
//! queue and records the queue name, in one script. Many tasks can be sent
//! in one round trip with [`Queue::enqueue_many`].

use std::time::Duration;

use jiff::Timestamp;
use redis::Value;
use serde::Serialize;

use super::part::Part;
use super::scripts;
use super::{EnqueueOptions, Enqueued, Store, StoreError, calls, replies};
use redis_tasks_protocol::model::{TaskRecord, describe_call};

/// How many ids one emptying step removes.
pub(crate) const EMPTY_BATCH: usize = 500;

/// A named queue in a [`Store`].
#[derive(Debug, Clone)]
pub struct Queue<'s> {
    store: &'s Store,
    name: String,
}

/// A queue in one partition, where the work of a [`Queue`] is done.
pub(crate) struct PartQueue<'p> {
    part: &'p Part,
    name: &'p str,
}

/// A task ready to be written: id, name, args JSON, description.
pub(crate) struct NewTask {
    pub(crate) id: String,
    pub(crate) task: String,
    pub(crate) args: String,
    pub(crate) description: String,
}

impl Store {
    /// The queue called `name` (it needs no creating).
    pub fn queue(&self, name: impl Into<String>) -> Queue<'_> {
        Queue {
            store: self,
            name: name.into(),
        }
    }

    /// The names of all queues in use, sorted.
    pub fn queues(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.each(Part::queues)?.concat();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

impl Part {
    /// The queue called `name` in this partition.
    pub(crate) fn queue<'p>(&'p self, name: &'p str) -> PartQueue<'p> {
        PartQueue { part: self, name }
    }

    pub(crate) fn queues(&self) -> Result<Vec<String>, StoreError> {
        let key = self.keys().queues();
        let mut names: Vec<String> = self.read(&[(&key, "set")], |c, _| {
            redis::cmd("SMEMBERS").arg(&key).query(c)
        })?;
        names.sort();
        Ok(names)
    }

    /// Sends a planned enqueue ([`calls::plan_enqueue`]); the outcome of a
    /// unique one, `None` for the others (their ids were planned).
    pub(crate) fn send_enqueue(
        &self,
        call: calls::EnqueueCall,
    ) -> Result<Option<Enqueued>, StoreError> {
        match call {
            calls::EnqueueCall::Nothing => {}
            calls::EnqueueCall::One(inv) => {
                self.run(&[], |c, _| inv.invoke::<i64>(c).map(|_| ()))?;
            }
            calls::EnqueueCall::Batch(pipe) => {
                self.run(&[], |c, _| {
                    let values: Vec<Value> = pipe.query(c)?;
                    replies(values).map(|_| ())
                })?;
            }
            calls::EnqueueCall::Unique(inv) => {
                let reply = self.run(&[], |c, _| inv.invoke(c))?;
                return calls::unique_reply(reply).map(Some);
            }
        }
        Ok(None)
    }
}

/// A new task from a call of `task` with `args`, checked (see
/// [`prepare_call`]) and given a fresh id.
pub(crate) fn new_task<A: Serialize + ?Sized>(
    max_args_bytes: u64,
    task: &str,
    args: &A,
) -> Result<NewTask, StoreError> {
    let call = prepare_call(max_args_bytes, task, args)?;
    Ok(NewTask {
        id: uuid::Uuid::new_v4().hyphenated().to_string(),
        task: task.to_owned(),
        description: call.description,
        args: call.args,
    })
}

/// A task call checked the way the producer checks it: the name, the JSON
/// text of the arguments (within `max_args_bytes`), its description.
pub(crate) struct PreparedCall {
    /// The arguments as JSON text.
    pub(crate) args: String,
    /// The readable call string.
    pub(crate) description: String,
}

impl Part {
    /// Checks a task name and serialises its arguments (see [`PreparedCall`]).
    pub(crate) fn prepare_call<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
    ) -> Result<PreparedCall, StoreError> {
        prepare_call(self.max_args_bytes(), task, args)
    }
}

/// Checks a task name and serialises its arguments within
/// `max_args_bytes` (see [`PreparedCall`]).
pub(crate) fn prepare_call<A: Serialize + ?Sized>(
    max_args_bytes: u64,
    task: &str,
    args: &A,
) -> Result<PreparedCall, StoreError> {
    check_name("task", task)?;
    let text = serde_json::to_string(args).map_err(StoreError::Args)?;
    let size = text.len() as u64;
    if size > max_args_bytes {
        return Err(StoreError::ArgsTooLarge {
            size,
            limit: max_args_bytes,
        });
    }
    let value: serde_json::Value = serde_json::from_str(&text).map_err(StoreError::Args)?;
    Ok(PreparedCall {
        description: describe_call(task, &value),
        args: text,
    })
}

impl<'s> Queue<'s> {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Enqueues one call of `task` with `args` (any serde-serialisable
    /// value, stored as JSON) at the tail of this queue; returns the new id.
    pub fn enqueue<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
    ) -> Result<String, StoreError> {
        self.enqueue_with(task, args, &EnqueueOptions::default())
    }

    /// Enqueues one call of `task` with `args` and `options` (a delay, its
    /// own timeout or retry policy, a uniqueness key); returns the task's
    /// id. A task due later gets status `scheduled` and waits in the
    /// delayed set until a supervisor moves it to the tail of this queue.
    ///
    /// With a uniqueness key ([`EnqueueOptions::unique`]) and a live task
    /// (queued, scheduled or running) already holding it, nothing is
    /// written and **the existing task's id is returned**; use
    /// [`enqueue_with_outcome`](Queue::enqueue_with_outcome) to tell the
    /// two cases apart. The decision is taken inside the enqueue script, so
    /// it holds for any number of racing producers.
    pub fn enqueue_with<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
        options: &EnqueueOptions,
    ) -> Result<String, StoreError> {
        self.enqueue_with_outcome(task, args, options)
            .map(Enqueued::into_id)
    }

    /// Like [`enqueue_with`](Queue::enqueue_with), saying whether a new
    /// task was written or an existing one holds the uniqueness key.
    pub fn enqueue_with_outcome<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
        options: &EnqueueOptions,
    ) -> Result<Enqueued, StoreError> {
        // A unique task lives with its key, so that one script decides.
        self.store
            .home(options.unique_key().unwrap_or(&self.name))
            .queue(&self.name)
            .enqueue_with_outcome(task, args, options)
    }

    /// Enqueues one call to run no earlier than `delay` from now.
    pub fn enqueue_in<A: Serialize + ?Sized>(
        &self,
        delay: Duration,
        task: &str,
        args: &A,
    ) -> Result<String, StoreError> {
        self.enqueue_with(task, args, &EnqueueOptions::new().delay(delay))
    }

    /// Enqueues one call to run no earlier than `at` (at once when `at` has
    /// passed).
    pub fn enqueue_at<A: Serialize + ?Sized>(
        &self,
        at: Timestamp,
        task: &str,
        args: &A,
    ) -> Result<String, StoreError> {
        self.enqueue_with(task, args, &EnqueueOptions::new().at(at))
    }

    /// Enqueues many calls in one round trip; returns their ids in order.
    ///
    /// Arguments are all checked first; if one is refused nothing is written.
    pub fn enqueue_many<T: AsRef<str>, A: Serialize>(
        &self,
        calls: &[(T, A)],
    ) -> Result<Vec<String>, StoreError> {
        self.enqueue_many_with(calls, &EnqueueOptions::default())
    }

    /// [`enqueue_many`](Self::enqueue_many) with the same `options` for
    /// every call (all delayed by the same time, say).
    pub fn enqueue_many_with<T: AsRef<str>, A: Serialize>(
        &self,
        calls: &[(T, A)],
        options: &EnqueueOptions,
    ) -> Result<Vec<String>, StoreError> {
        self.store
            .home(&self.name)
            .queue(&self.name)
            .enqueue_many_with(calls, options)
    }

    /// How many tasks wait in the queue.
    pub fn count(&self) -> Result<u64, StoreError> {
        let counts = self.store.each(|p| p.queue(&self.name).count())?;
        Ok(counts.into_iter().sum())
    }

    /// Up to `len` ids from position `offset` (0 = next to run). With
    /// partitioned data, the queue's home partition comes first, then the
    /// others in turn.
    pub fn ids(&self, offset: usize, len: usize) -> Result<Vec<String>, StoreError> {
        let mut skip = offset;
        let mut ids = Vec::new();
        for part in self.store.around(&self.name) {
            if ids.len() >= len {
                break;
            }
            let queue = part.queue(&self.name);
            if skip > 0 {
                // Pass over the tasks of the partitions before the page.
                let here = usize::try_from(queue.count()?).unwrap_or(usize::MAX);
                if skip >= here {
                    skip -= here;
                    continue;
                }
            }
            ids.extend(queue.ids(skip, len - ids.len())?);
            skip = 0;
        }
        Ok(ids)
    }

    /// The records of up to `len` tasks from position `offset`; a record
    /// that cannot be read is an `Err` in its place.
    pub fn tasks(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<Vec<Result<TaskRecord, StoreError>>, StoreError> {
        let ids = self.ids(offset, len)?;
        self.store.tasks(&ids)
    }

    /// Removes every task of the queue, ids and records; returns how many.
    pub fn empty(&self) -> Result<u64, StoreError> {
        let counts = self.store.each(|p| p.queue(&self.name).empty())?;
        Ok(counts.into_iter().sum())
    }

    /// Empties the queue and removes its name from the set of queues;
    /// returns how many tasks were removed.
    pub fn delete(&self) -> Result<u64, StoreError> {
        let counts = self.store.each(|p| p.queue(&self.name).delete())?;
        Ok(counts.into_iter().sum())
    }
}

impl PartQueue<'_> {
    pub(crate) fn enqueue_with_outcome<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
        options: &EnqueueOptions,
    ) -> Result<Enqueued, StoreError> {
        let planned = calls::plan_enqueue(
            self.part.keys(),
            &self.part.opts,
            self.name,
            task,
            args,
            options,
        )?;
        match self.part.send_enqueue(planned.call)? {
            Some(enqueued) => Ok(enqueued),
            None => calls::first_id(planned.ids),
        }
    }

    pub(crate) fn enqueue_many_with<T: AsRef<str>, A: Serialize>(
        &self,
        calls: &[(T, A)],
        options: &EnqueueOptions,
    ) -> Result<Vec<String>, StoreError> {
        let planned =
            calls::plan_enqueue_many(self.part.keys(), &self.part.opts, self.name, calls, options)?;
        self.part.send_enqueue(planned.call)?;
        Ok(planned.ids)
    }

    pub(crate) fn count(&self) -> Result<u64, StoreError> {
        let key = self.part.keys().queue(self.name);
        self.part.read(&[(&key, "list")], |c, _| {
            redis::cmd("LLEN").arg(&key).query(c)
        })
    }

    pub(crate) fn ids(&self, offset: usize, len: usize) -> Result<Vec<String>, StoreError> {
        let key = self.part.keys().queue(self.name);
        self.part.id_range(&key, "list", offset, len)
    }

    pub(crate) fn empty(&self) -> Result<u64, StoreError> {
        let key = self.part.keys().queue(self.name);
        let mut total = 0;
        loop {
            let n: u64 = self.part.run(&[], |c, keys| {
                scripts::EMPTY_QUEUE
                    .key(&key)
                    .arg(keys.prefix())
                    .arg(EMPTY_BATCH)
                    .invoke(c)
            })?;
            total += n;
            if n < EMPTY_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    pub(crate) fn delete(&self) -> Result<u64, StoreError> {
        let removed = self.empty()?;
        let key = self.part.keys().queue(self.name);
        self.part.run(&[], |c, keys| {
            scripts::FORGET_QUEUE
                .key(&key)
                .key(keys.queues())
                .arg(keys.prefix())
                .arg(self.name)
                .invoke::<i64>(c)
        })?;
        Ok(removed)
    }
}

/// Refuses names the schema cannot hold: empty ones, and ones with
/// whitespace, commas (slot hashes list queues comma-joined) or control
/// characters.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else if name.contains(',') {
        Some("it contains a comma")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
