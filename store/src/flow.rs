//! Flow control of queues, fleet-wide: pause and resume, a concurrency
//! limit (at most N running at once) and a rate limit (at most N starts in
//! any window of a period). The settings live in Redis (`P:flow`), so
//! every supervisor sharing the prefix obeys the same numbers and a change
//! takes effect at the next fetch; the fetch script decides
//! (`scripts::transitions`), never a client. See docs/flow-control.md.
//!
//! On partitioned data each partition holds the settings (they are written
//! to every one) and keeps its own permits and window: a queue's tasks sit
//! in its home partition, so its limits are exact there; tasks a unique
//! enqueue put in another partition are limited there separately.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::part::Part;
use crate::producer::check_name;
use crate::{Store, StoreError, scripts};

/// A rate limit: at most `max` starts in any window of `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per window (at least 1).
    pub max: u32,
    /// The window's length (at least 1 ms).
    pub period: Duration,
}

impl Rate {
    /// The stored form: `N/<period in ms>`.
    fn stored(&self) -> String {
        format!("{}/{}", self.max, self.period.as_millis())
    }

    fn from_stored(text: &str) -> Option<Rate> {
        let (max, ms) = text.split_once('/')?;
        Some(Rate {
            max: max.parse().ok()?,
            period: Duration::from_millis(ms.parse().ok()?),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        let (n, unit) = [(3_600_000, "h"), (60_000, "m"), (1000, "s")]
            .into_iter()
            .find(|(n, _)| ms.is_multiple_of(*n))
            .unwrap_or((1, "ms"));
        write!(f, "{}/{}{unit}", self.max, ms / n)
    }
}

/// Why a rate text does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {text:?}: {reason} (expected N/PERIOD, for example 50/1s, 100/1m, 3/500ms)")]
pub struct RateError {
    text: String,
    reason: &'static str,
}

impl FromStr for Rate {
    type Err = RateError;

    /// Reads `N/PERIOD`: `N` a whole number from 1, `PERIOD` a whole
    /// number with a unit (`ms`, `s`, `m`, `h`; `1s` may be written `s`).
    fn from_str(text: &str) -> Result<Rate, RateError> {
        let bad = |reason| RateError {
            text: text.to_owned(),
            reason,
        };
        let (max, period) = text.trim().split_once('/').ok_or(bad("no '/'"))?;
        let max: u32 = max
            .trim()
            .parse()
            .map_err(|_| bad("N is not a whole number"))?;
        if max == 0 {
            return Err(bad("N must be at least 1"));
        }
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or(bad("the period has no unit"))?;
        let (count, unit) = period.split_at(split);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad("the period is too long"))?
        };
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad("the period's unit is not ms, s, m or h")),
        };
        let ms = count
            .checked_mul(unit_ms)
            .filter(|ms| (1..=7 * 24 * 3_600_000).contains(ms))
            .ok_or(bad("the period must be from 1 ms to 7 days"))?;
        Ok(Rate {
            max,
            period: Duration::from_millis(ms),
        })
    }
}

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

/// A change of a queue's limits.
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
        let (set, del) = match limit {
            Limit::Concurrency(0) => {
                return Err(StoreError::InvalidOption {
                    option: "concurrency",
                    reason: "a concurrency limit must be at least 1 (pause the queue to stop it)"
                        .to_owned(),
                });
            }
            Limit::Concurrency(n) => (vec![(format!("concurrency:{name}"), n.to_string())], vec![]),
            Limit::Rate(rate) => (vec![(format!("rate:{name}"), rate.stored())], vec![]),
            Limit::Clear => (
                vec![],
                vec![format!("concurrency:{name}"), format!("rate:{name}")],
            ),
        };
        self.each(|p| p.set_flow(&set, &del))?;
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
        let mut names = self.queues()?;
        let settings = self.zero().flow_settings()?;
        names.extend(
            settings
                .iter()
                .filter_map(|(field, _)| field.split_once(':').map(|(_, q)| q.to_owned())),
        );
        names.sort();
        names.dedup();
        let running = self.each(Part::running_by_queue)?.concat();
        names
            .into_iter()
            .map(|name| {
                Ok(QueueState {
                    length: self.queue(name.as_str()).count()?,
                    running: running.iter().filter(|q| **q == name).count() as u64,
                    flow: flow_of(&settings, &name),
                    name,
                })
            })
            .collect()
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
        rate: get("rate").and_then(Rate::from_stored),
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
    fn rates_read_and_print() {
        let r: Rate = "50/1s".parse().expect("rate");
        assert_eq!(r.max, 50);
        assert_eq!(r.period, Duration::from_secs(1));
        assert_eq!(r.to_string(), "50/1s");
        assert_eq!(
            "3/500ms".parse::<Rate>().map(|r| r.to_string()),
            Ok("3/500ms".to_owned())
        );
        assert_eq!(
            "10/m".parse::<Rate>().map(|r| r.period),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            "2/90m".parse::<Rate>().map(|r| r.to_string()),
            Ok("2/90m".to_owned())
        );
        assert_eq!(Rate::from_stored(&r.stored()), Some(r));
        for bad in [
            "", "50", "0/1s", "x/1s", "5/1", "5/1d", "5/0s", "5/9999h", "-1/1s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
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
