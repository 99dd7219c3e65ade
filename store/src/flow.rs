//! Flow control of queues and task functions, fleet-wide: pause and resume
//! a queue, a concurrency limit (at most N running at once) and a rate
//! limit (at most N starts in any window of a period) on a queue or on a
//! task function. The settings live in Redis (`P:flow`), so
//! every supervisor sharing the prefix obeys the same numbers and a change
//! takes effect at the next fetch; the fetch script decides
//! (`scripts::transitions`), never a client. See docs/flow-control.md.
//!
//! On partitioned data each partition holds the settings (they are written
//! to every one) and keeps its own permits and window: a queue's tasks sit
//! in its home partition, so its limits are exact there; tasks a unique
//! enqueue put in another partition are limited there separately.

use std::time::Duration;

pub use redis_tasks_config::{Rate, RateError};

use crate::part::Part;
use crate::producer::check_name;
use crate::{Store, StoreError, scripts};

/// The flow settings of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFlow {
    /// Paused: its tasks stay queued, running ones finish.
    pub paused: bool,
    /// At most this many of its tasks run at once, fleet-wide.
    pub concurrency: Option<u32>,
    /// At most this many starts in any window of the period.
    pub rate: Option<Rate>,
}

/// A queue as `queue list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// The queue's name.
    pub name: String,
    /// Tasks waiting in it.
    pub length: u64,
    /// Its tasks running now (in the slots' lists, status running).
    pub running: u64,
    /// Its flow settings.
    pub flow: QueueFlow,
}

/// The limits of one task function, whatever queue its tasks are on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFlow {
    /// At most this many of its tasks run at once, fleet-wide.
    pub concurrency: Option<u32>,
    /// At most this many starts in any window of the period.
    pub rate: Option<Rate>,
    /// Its tasks held back by these limits now (out of their queue,
    /// waiting in order for a permit or the window).
    pub held: u64,
}

/// A change of a queue's or a task function's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Set the concurrency limit.
    Concurrency(u32),
    /// Set the rate limit.
    Rate(Rate),
    /// Remove both limits (a pause stays).
    Clear,
}

impl Store {
    /// Pauses queue `name` fleet-wide: no supervisor starts its tasks
    /// until [`resume_queue`](Store::resume_queue); enqueueing still
    /// works and running tasks finish.
    pub fn pause_queue(&self, name: &str) -> Result<(), StoreError> {
        check_name("queue", name)?;
        self.each(|p| p.set_flow(&[(format!("paused:{name}"), "1".to_owned())], &[]))?;
        Ok(())
    }

    /// Resumes queue `name`: idle slots are woken and start its tasks.
    pub fn resume_queue(&self, name: &str) -> Result<(), StoreError> {
        check_name("queue", name)?;
        self.each(|p| p.set_flow(&[], &[format!("paused:{name}")]))?;
        Ok(())
    }

    /// Sets or clears the limits of queue `name`, fleet-wide, at once.
    pub fn limit_queue(&self, name: &str, limit: Limit) -> Result<(), StoreError> {
        check_name("queue", name)?;
        let (set, del) = limit_fields("", name, limit)?;
        self.each(|p| p.set_flow(&set, &del))?;
        Ok(())
    }

    /// Sets or clears the limits of task function `name` (its tasks on
    /// every queue), fleet-wide, at once. A task of a function at its
    /// limit waits, in order, out of its queue, and the slot takes other
    /// work.
    pub fn limit_task(&self, name: &str, limit: Limit) -> Result<(), StoreError> {
        check_name("task", name)?;
        let (set, del) = limit_fields("task_", name, limit)?;
        self.each(|p| p.set_flow(&set, &del))?;
        Ok(())
    }

    /// Writes the limits the settings file gives task function `name`
    /// (`[tasks.NAME]`) into Redis where it has none yet.
    pub fn seed_task_limits(
        &self,
        name: &str,
        concurrency: Option<u32>,
        rate: Option<Rate>,
    ) -> Result<(), StoreError> {
        check_name("task", name)?;
        self.seed("task_", name, concurrency, rate)
    }

    /// The limits of task function `name`, and how many of its tasks they
    /// hold back now (over every partition).
    pub fn task_flow(&self, name: &str) -> Result<TaskFlow, StoreError> {
        let settings = self.zero().flow_settings()?;
        let held = self.each(|p| p.task_held(name))?.into_iter().sum();
        Ok(task_flow_of(&settings, name, held))
    }

    /// Every task function with a limit, as [`task_flow`](Store::task_flow)
    /// shows it, sorted by name.
    pub fn task_flows(&self) -> Result<Vec<(String, TaskFlow)>, StoreError> {
        let settings = self.zero().flow_settings()?;
        let mut names: Vec<String> = settings
            .iter()
            .filter_map(|(f, _)| {
                let (kind, name) = f.split_once(':')?;
                kind.starts_with("task_").then(|| name.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let held = self.each(|p| p.task_held(&name))?.into_iter().sum();
                let flow = task_flow_of(&settings, &name, held);
                Ok((name, flow))
            })
            .collect()
    }

    /// Writes the limits the settings file gives queue `name` into Redis,
    /// each only where Redis has none yet: the file seeds them, changes
    /// made at run time (`queue limit`) stay across restarts.
    pub fn seed_queue_limits(
        &self,
        name: &str,
        concurrency: Option<u32>,
        rate: Option<Rate>,
    ) -> Result<(), StoreError> {
        check_name("queue", name)?;
        self.seed("", name, concurrency, rate)
    }

    /// [`seed_queue_limits`](Store::seed_queue_limits) and
    /// [`seed_task_limits`](Store::seed_task_limits): fields of `pre`.
    fn seed(
        &self,
        pre: &str,
        name: &str,
        concurrency: Option<u32>,
        rate: Option<Rate>,
    ) -> Result<(), StoreError> {
        let mut set = Vec::new();
        if let Some(n) = concurrency.filter(|n| *n > 0) {
            set.push((format!("{pre}concurrency:{name}"), n.to_string()));
        }
        if let Some(rate) = rate {
            set.push((format!("{pre}rate:{name}"), stored(&rate)));
        }
        if set.is_empty() {
            return Ok(());
        }
        self.each(|p| p.seed_flow(&set))?;
        Ok(())
    }

    /// The flow settings of queue `name` (from its home partition).
    pub fn queue_flow(&self, name: &str) -> Result<QueueFlow, StoreError> {
        let all = self.home(name).flow_settings()?;
        Ok(flow_of(&all, name))
    }

    /// Every known queue (in use, or with flow settings) with its length,
    /// running count and flow settings, sorted by name.
    pub fn queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        let settings = self.zero().flow_settings()?;
        let mut names = self.queues()?;
        names.extend(controlled(&settings));
        self.states_of(names, &settings)
    }

    /// The queues that have a flow setting, as
    /// [`queue_states`](Store::queue_states) shows them (what the metrics
    /// read at each scrape; nothing more is asked when there is none).
    pub fn flow_states(&self) -> Result<Vec<QueueState>, StoreError> {
        let settings = self.zero().flow_settings()?;
        self.states_of(controlled(&settings).collect(), &settings)
    }

    /// `names` (sorted, once each) with their lengths, running counts and
    /// settings.
    fn states_of(
        &self,
        mut names: Vec<String>,
        settings: &[(String, String)],
    ) -> Result<Vec<QueueState>, StoreError> {
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let running = self.each(Part::running_by_queue)?.concat();
        names
            .into_iter()
            .map(|name| {
                Ok(QueueState {
                    length: self.queue(name.as_str()).count()?,
                    running: running.iter().filter(|q| **q == name).count() as u64,
                    flow: flow_of(settings, &name),
                    name,
                })
            })
            .collect()
    }
}

/// The queues named by the fields of `P:flow` (not the task functions).
fn controlled(settings: &[(String, String)]) -> impl Iterator<Item = String> + '_ {
    settings.iter().filter_map(|(field, _)| {
        let (kind, q) = field.split_once(':')?;
        (!kind.starts_with("task_")).then(|| q.to_owned())
    })
}

/// Fields of `P:flow` to set (with their values) and to delete.
type FlowChange = (Vec<(String, String)>, Vec<String>);

/// The fields a limit change sets and deletes, for a queue (`pre` empty)
/// or a task function (`pre` = `task_`).
fn limit_fields(pre: &str, name: &str, limit: Limit) -> Result<FlowChange, StoreError> {
    Ok(match limit {
        Limit::Concurrency(0) => {
            return Err(StoreError::InvalidOption {
                option: "concurrency",
                reason: "a concurrency limit must be at least 1 (pause the queue to stop it)"
                    .to_owned(),
            });
        }
        Limit::Concurrency(n) => (
            vec![(format!("{pre}concurrency:{name}"), n.to_string())],
            vec![],
        ),
        Limit::Rate(rate) => (vec![(format!("{pre}rate:{name}"), stored(&rate))], vec![]),
        Limit::Clear => (
            vec![],
            vec![
                format!("{pre}concurrency:{name}"),
                format!("{pre}rate:{name}"),
            ],
        ),
    })
}

/// The limits of task function `name` among the fields of `P:flow`.
fn task_flow_of(fields: &[(String, String)], name: &str, held: u64) -> TaskFlow {
    let get = |kind: &str| {
        fields
            .iter()
            .find(|(f, _)| f.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) == Some(name))
            .map(|(_, v)| v.as_str())
    };
    TaskFlow {
        concurrency: get("task_concurrency").and_then(|v| v.parse().ok()),
        rate: get("task_rate").and_then(from_stored),
        held,
    }
}

/// The stored form of a rate: `N/<period in ms>`.
fn stored(rate: &Rate) -> String {
    format!("{}/{}", rate.max, rate.period.as_millis())
}

fn from_stored(text: &str) -> Option<Rate> {
    let (max, ms) = text.split_once('/')?;
    Some(Rate {
        max: max.parse().ok()?,
        period: Duration::from_millis(ms.parse().ok()?),
    })
}

impl Store {
    /// Queue `name` as [`queue_states`](Store::queue_states) shows it.
    pub fn queue_state(&self, name: &str) -> Result<QueueState, StoreError> {
        let running = self.each(Part::running_by_queue)?.concat();
        Ok(QueueState {
            length: self.queue(name).count()?,
            running: running.iter().filter(|q| *q == name).count() as u64,
            flow: self.queue_flow(name)?,
            name: name.to_owned(),
        })
    }
}

/// The settings of queue `name` among the fields of `P:flow`.
fn flow_of(fields: &[(String, String)], name: &str) -> QueueFlow {
    let get = |kind: &str| {
        fields
            .iter()
            .find(|(f, _)| f.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) == Some(name))
            .map(|(_, v)| v.as_str())
    };
    QueueFlow {
        paused: get("paused").is_some(),
        concurrency: get("concurrency").and_then(|v| v.parse().ok()),
        rate: get("rate").and_then(from_stored),
    }
}

impl Part {
    /// Writes `set` and deletes `del` in `P:flow`, and wakes the slots
    /// waiting on held queues.
    fn set_flow(&self, set: &[(String, String)], del: &[String]) -> Result<(), StoreError> {
        let flow = self.keys().flow();
        let waiting = self.keys().flow_waiting();
        self.run(&[(&flow, "hash"), (&waiting, "set")], |c, keys| {
            let mut inv = scripts::SET_FLOW.prepare_invoke();
            inv.key(&flow)
                .key(&waiting)
                .arg(keys.prefix())
                .arg(set.len());
            for (field, value) in set {
                inv.arg(field).arg(value);
            }
            for field in del {
                inv.arg(field);
            }
            inv.invoke::<i64>(c)
        })?;
        Ok(())
    }

    /// Writes each of `set` into `P:flow` unless the field is there.
    fn seed_flow(&self, set: &[(String, String)]) -> Result<(), StoreError> {
        let flow = self.keys().flow();
        self.run(&[(&flow, "hash")], |c, _| {
            let mut pipe = redis::pipe();
            for (field, value) in set {
                pipe.cmd("HSETNX").arg(&flow).arg(field).arg(value).ignore();
            }
            pipe.query::<()>(c)
        })
    }

    /// How many tasks of function `name` its limits hold back here.
    fn task_held(&self, name: &str) -> Result<u64, StoreError> {
        let key = self.keys().task_held(name);
        self.read(&[(&key, "list")], |c, _| {
            redis::cmd("LLEN").arg(&key).query(c)
        })
    }

    /// The fields of `P:flow`.
    fn flow_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        let flow = self.keys().flow();
        self.read(&[(&flow, "hash")], |c, _| {
            redis::cmd("HGETALL").arg(&flow).query(c)
        })
    }

    /// The queue of every task running in a slot of this partition.
    fn running_by_queue(&self) -> Result<Vec<String>, StoreError> {
        let workers = self.keys().workers();
        let slots: Vec<String> = self.read(&[(&workers, "zset")], |c, _| {
            redis::cmd("ZRANGE").arg(&workers).arg(0).arg(-1).query(c)
        })?;
        let mut queues = Vec::new();
        for slot in slots {
            let list = self.keys().worker_task(&slot);
            let ids: Vec<String> = self.read(&[(&list, "list")], |c, _| {
                redis::cmd("LRANGE").arg(&list).arg(0).arg(-1).query(c)
            })?;
            for id in ids {
                let task = self.keys().task(&id);
                let (status, queue): (Option<String>, Option<String>) =
                    self.read(&[(&task, "hash")], |c, _| {
                        redis::cmd("HMGET")
                            .arg(&task)
                            .arg("status")
                            .arg("queue")
                            .query(c)
                    })?;
                if let (Some(status), Some(queue)) = (status, queue)
                    && status == "running"
                {
                    queues.push(queue);
                }
            }
        }
        Ok(queues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_stored_in_milliseconds() {
        let r: Rate = "50/1m".parse().expect("rate");
        assert_eq!(stored(&r), "50/60000");
        assert_eq!(from_stored(&stored(&r)), Some(r));
    }

    #[test]
    fn settings_are_read_per_queue() {
        let fields = vec![
            ("paused:a".to_owned(), "1".to_owned()),
            ("concurrency:a:b".to_owned(), "3".to_owned()),
            ("rate:a".to_owned(), "50/1000".to_owned()),
        ];
        let a = flow_of(&fields, "a");
        assert!(a.paused);
        assert_eq!(a.concurrency, None);
        assert_eq!(a.rate.map(|r| r.max), Some(50));
        let ab = flow_of(&fields, "a:b");
        assert_eq!(ab.concurrency, Some(3));
        assert!(!ab.paused);
    }
}
