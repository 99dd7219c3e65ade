//! Worker slots in Redis: registration, heartbeats, and what `info` shows.
//!
//! Each slot has a hash `P:worker:<slot>` and an entry in the `P:workers`
//! sorted set scored by its last heartbeat; a slot whose score is too old is
//! dead (see the maintenance module).

use std::time::Duration;

use jiff::Timestamp;
use redis::Value;

use super::record::{hash_from_value, score, text_field, time_text};
use super::{Store, StoreError, scripts};
use crate::part::Part;

/// What a supervisor registers for one of its slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot id (unique across the fleet).
    pub id: String,
    /// A readable description, shown by `info` (e.g. `host.pid/3`).
    pub description: String,
    /// The queues it takes work from, in priority order.
    pub queues: Vec<String>,
    /// The id of the supervisor that owns it.
    pub supervisor: String,
    /// The host name.
    pub host: String,
    /// The supervisor's process id.
    pub pid: u32,
    /// When the slot started.
    pub started_at: Timestamp,
}

/// Which process a supervisor ran as: enough to tell it from a later
/// process that reuses its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// When the process started, in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`).
    pub start_time: u64,
    /// The boot it started in (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
}

/// The supervisor last run under one host and instance name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incarnation {
    /// Its supervisor id (the `supervisor` field of its slots).
    pub supervisor_id: String,
    /// Its process, when recorded (older versions recorded none).
    pub process: Option<ProcessIdentity>,
}

/// A live slot as `info` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The slot id.
    pub id: String,
    /// Its description.
    pub description: String,
    /// Its queues, in priority order.
    pub queues: Vec<String>,
    /// `idle` or `busy` (as stored).
    pub state: String,
    /// The task it runs, if any.
    pub current_task: Option<String>,
    /// The supervisor that owns it.
    pub supervisor: String,
    /// Its host.
    pub host: String,
    /// The supervisor's process id.
    pub pid: Option<u32>,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// Its last heartbeat (from the sorted-set score when the hash lacks it).
    pub heartbeat_at: Option<Timestamp>,
}

impl Store {
    /// Registers a slot (idle, no task) with a first heartbeat at the
    /// current time (not `started_at`: a slot registered again after Redis
    /// lost its hash must not look dead). A previous hash of the same slot
    /// is replaced.
    pub fn register_slot(&self, slot: &SlotInfo) -> Result<(), StoreError> {
        // A slot fetches from, and is recovered in, every partition.
        self.each(|p| p.register_slot(slot)).map(|_| ())
    }

    /// Records a heartbeat at `now` for each slot, in one atomic step.
    /// Returns the slots whose hash is gone (Redis lost its data): they were
    /// not touched and must be registered again.
    pub fn heartbeat(&self, slots: &[String], now: Timestamp) -> Result<Vec<String>, StoreError> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let mut lost = self.each(|p| p.heartbeat(slots, now))?.concat();
        lost.sort();
        lost.dedup();
        Ok(lost)
    }

    /// Removes a slot's hash and heartbeat entry. Refused with
    /// [`StoreError::SlotBusy`] (nothing changed) while its current-task
    /// list holds an id.
    pub fn deregister_slot(&self, slot: &str) -> Result<(), StoreError> {
        every_one(self.each(|p| Ok(p.deregister_slot(slot)))?)
    }

    /// Removes the recovered dead slot `slot` from the live slots, like
    /// [`deregister_slot`](Store::deregister_slot), but keeps its hash,
    /// marked `dead` with the time, for `ttl` (the `dead_worker_ttl`
    /// setting), so that `info` shows what died. Maintenance forgets it
    /// after that ([`Store::expire_dead_slots`]).
    pub fn bury_slot(&self, slot: &str, now: Timestamp, ttl: Duration) -> Result<(), StoreError> {
        every_one(self.each(|p| Ok(p.bury_slot(slot, now, ttl)))?)
    }

    /// Forgets dead slots buried more than `ttl` before `now`.
    pub fn expire_dead_slots(&self, now: Timestamp, ttl: Duration) -> Result<u64, StoreError> {
        // Partition 0's registry is the one `info` shows.
        let counts = self.each(|p| p.expire_dead_slots(now, ttl))?;
        Ok(counts[0])
    }

    /// The slots registered by supervisor `supervisor_id`.
    pub fn slots_of_supervisor(&self, supervisor_id: &str) -> Result<Vec<String>, StoreError> {
        self.zero().slots_of_supervisor(supervisor_id)
    }

    /// The process id a slot registered, if its hash holds a readable one.
    pub fn slot_pid(&self, slot: &str) -> Result<Option<u32>, StoreError> {
        self.zero().slot_pid(slot)
    }

    /// The id of the last supervisor run on `host` as instance `instance`.
    pub fn supervisor_id(&self, host: &str, instance: &str) -> Result<Option<String>, StoreError> {
        Ok(self.incarnation(host, instance)?.map(|i| i.supervisor_id))
    }

    /// Records `id` as the supervisor now running on `host` as `instance`,
    /// without a process identity (see [`Store::set_incarnation`]).
    pub fn set_supervisor_id(
        &self,
        host: &str,
        instance: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        self.set_incarnation(
            host,
            instance,
            &Incarnation {
                supervisor_id: id.to_owned(),
                process: None,
            },
        )
    }

    /// The last supervisor run on `host` as instance `instance`, with the
    /// identity of its process when it recorded one. A mapping written by an
    /// older version (a plain string) has no identity.
    pub fn incarnation(
        &self,
        host: &str,
        instance: &str,
    ) -> Result<Option<Incarnation>, StoreError> {
        self.zero().incarnation(host, instance)
    }

    /// Records the supervisor now running on `host` as `instance`, with the
    /// identity of its process, replacing the previous mapping in one
    /// atomic step (that also claims the schema, see
    /// [`Store::claim_schema`]).
    pub fn set_incarnation(
        &self,
        host: &str,
        instance: &str,
        incarnation: &Incarnation,
    ) -> Result<(), StoreError> {
        self.zero().set_incarnation(host, instance, incarnation)
    }

    /// Every registered slot, and every dead one still kept
    /// (`dead_worker_ttl`, state `dead`), ordered by id.
    pub fn worker_infos(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        // Every partition registers every slot; a slot is busy in the
        // partition it took its task from.
        let mut all = self.each(Part::worker_infos)?.into_iter();
        let mut infos = all.next().unwrap_or_default();
        for other in all.flatten() {
            if other.state != "busy" {
                continue;
            }
            if let Some(info) = infos.iter_mut().find(|i| i.id == other.id) {
                info.state = other.state;
                info.current_task = other.current_task;
            }
        }
        Ok(infos)
    }
}

impl Part {
    pub(crate) fn register_slot(&self, slot: &SlotInfo) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let started = time_text(slot.started_at);
        let beat = time_text(now);
        let pid = slot.pid.to_string();
        let queues = slot.queues.join(",");
        let fields: [(&str, &str); 9] = [
            ("description", &slot.description),
            ("queues", &queues),
            ("state", "idle"),
            ("current_task", ""),
            ("supervisor", &slot.supervisor),
            ("host", &slot.host),
            ("pid", &pid),
            ("started_at", &started),
            ("heartbeat_at", &beat),
        ];
        self.run(&[], |c, keys| {
            let mut inv = scripts::REGISTER_SLOT.prepare_invoke();
            inv.key(keys.workers())
                .key(keys.worker(&slot.id))
                .arg(keys.prefix())
                .arg(&slot.id)
                .arg(score(now));
            for (k, v) in fields {
                inv.arg(k).arg(v);
            }
            inv.invoke::<i64>(c)
        })?;
        Ok(())
    }

    pub(crate) fn heartbeat(
        &self,
        slots: &[String],
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        self.run(&[], |c, keys| {
            let mut inv = scripts::HEARTBEAT.prepare_invoke();
            inv.key(keys.workers())
                .arg(keys.prefix())
                .arg(time_text(now))
                .arg(score(now));
            for s in slots {
                inv.arg(s);
            }
            inv.invoke(c)
        })
    }

    pub(crate) fn deregister_slot(&self, slot: &str) -> Result<(), StoreError> {
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            scripts::DEREGISTER_SLOT
                .key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .key(keys.workers())
                .arg(keys.prefix())
                .arg(slot)
                .invoke(c)
        })?;
        removed(slot, "deregister", reply)
    }

    pub(crate) fn bury_slot(
        &self,
        slot: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            scripts::BURY_SLOT
                .key(keys.worker_task(slot))
                .key(keys.worker(slot))
                .key(keys.workers())
                .key(keys.dead_workers())
                .arg(keys.prefix())
                .arg(slot)
                .arg(time_text(now))
                .arg(score(now))
                .arg(ttl.as_secs().max(1))
                .invoke(c)
        })?;
        removed(slot, "bury a dead slot", reply)
    }

    pub(crate) fn expire_dead_slots(
        &self,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let key = self.keys().dead_workers();
        let limit = now
            .checked_sub(jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN);
        self.run(&[(&key, "zset")], |c, _| {
            redis::cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(score(limit))
                .query(c)
        })
    }

    pub(crate) fn slots_of_supervisor(
        &self,
        supervisor_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.run(&[], |c, keys| {
            scripts::SLOTS_OF_SUPERVISOR
                .key(keys.workers())
                .arg(keys.prefix())
                .arg(supervisor_id)
                .invoke(c)
        })
    }

    pub(crate) fn slot_pid(&self, slot: &str) -> Result<Option<u32>, StoreError> {
        let key = self.keys().worker(slot);
        let pid: Option<String> = self.read(&[(&key, "hash")], |c, _| {
            redis::cmd("HGET").arg(&key).arg("pid").query(c)
        })?;
        Ok(pid.and_then(|p| p.parse().ok()))
    }

    pub(crate) fn incarnation(
        &self,
        host: &str,
        instance: &str,
    ) -> Result<Option<Incarnation>, StoreError> {
        let key = self.keys().supervisor(host, instance);
        let kind: String = self.read(&[], |c, _| redis::cmd("TYPE").arg(&key).query(c))?;
        match kind.as_str() {
            "none" => Ok(None),
            "string" => {
                let id: Option<String> = self.read(&[(&key, "string")], |c, _| {
                    redis::cmd("GET").arg(&key).query(c)
                })?;
                Ok(id.map(|supervisor_id| Incarnation {
                    supervisor_id,
                    process: None,
                }))
            }
            "hash" => {
                let value: Value = self.read(&[(&key, "hash")], |c, _| {
                    redis::cmd("HGETALL").arg(&key).query(c)
                })?;
                let hash = hash_from_value("HGETALL", value)?;
                let Some(supervisor_id) = text_field(&hash, "id") else {
                    return Ok(None);
                };
                let pid = text_field(&hash, "pid").and_then(|p| p.parse().ok());
                let start_time = text_field(&hash, "start_time").and_then(|t| t.parse().ok());
                let boot_id = text_field(&hash, "boot_id").filter(|b| !b.is_empty());
                let process = match (pid, start_time, boot_id) {
                    (Some(pid), Some(start_time), Some(boot_id)) => Some(ProcessIdentity {
                        pid,
                        start_time,
                        boot_id,
                    }),
                    _ => None,
                };
                Ok(Some(Incarnation {
                    supervisor_id,
                    process,
                }))
            }
            found => Err(StoreError::WrongType {
                key,
                expected: "hash".to_owned(),
                found: found.to_owned(),
            }),
        }
    }

    pub(crate) fn set_incarnation(
        &self,
        host: &str,
        instance: &str,
        incarnation: &Incarnation,
    ) -> Result<(), StoreError> {
        let key = self.keys().supervisor(host, instance);
        let mut fields = vec![("id", incarnation.supervisor_id.clone())];
        if let Some(p) = &incarnation.process {
            fields.push(("pid", p.pid.to_string()));
            fields.push(("start_time", p.start_time.to_string()));
            fields.push(("boot_id", p.boot_id.clone()));
        }
        self.run(&[], |c, keys| {
            let mut inv = scripts::SET_INCARNATION.prepare_invoke();
            inv.key(&key).arg(keys.prefix());
            for (f, v) in &fields {
                inv.arg(*f).arg(v);
            }
            inv.invoke::<i64>(c)
        })?;
        Ok(())
    }

    pub(crate) fn worker_infos(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let workers = self.keys().workers();
        let dead = self.keys().dead_workers();
        let (mut scored, buried): (Scored, Scored) =
            self.read(&[(&workers, "zset"), (&dead, "zset")], |c, _| {
                redis::pipe()
                    .cmd("ZRANGE")
                    .arg(&workers)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .cmd("ZRANGE")
                    .arg(&dead)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(c)
            })?;
        let live = scored.len();
        scored.extend(buried);
        if scored.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, _) in &scored {
            pipe.cmd("HGETALL").arg(self.keys().worker(id));
        }
        pipe.ignore_errors();
        // A slot hash of the wrong type shows as empty rather than hiding the rest.
        let values: Vec<Value> = self.read(&[], |c, _| pipe.query(c))?;
        let mut out = Vec::with_capacity(scored.len());
        for (i, (id, beat)) in scored.into_iter().enumerate() {
            let hash = match values.get(i).cloned() {
                Some(v) => hash_from_value("HGETALL", v).unwrap_or_default(),
                None => Default::default(),
            };
            if i >= live && hash.is_empty() {
                // A dead slot whose hash expired before maintenance forgot it.
                continue;
            }
            let time = |f: &str| text_field(&hash, f).and_then(|t| t.parse::<Timestamp>().ok());
            out.push(WorkerInfo {
                description: text_field(&hash, "description").unwrap_or_else(|| id.clone()),
                queues: text_field(&hash, "queues")
                    .map(|q| q.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                state: text_field(&hash, "state").unwrap_or_else(|| "unknown".to_owned()),
                current_task: text_field(&hash, "current_task"),
                supervisor: text_field(&hash, "supervisor").unwrap_or_default(),
                host: text_field(&hash, "host").unwrap_or_default(),
                pid: text_field(&hash, "pid").and_then(|p| p.parse().ok()),
                started_at: time("started_at"),
                heartbeat_at: time("heartbeat_at")
                    .or_else(|| Timestamp::from_microsecond((beat * 1_000_000.0) as i64).ok()),
                id,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// The first error of a step done in every partition, after all were
/// tried (a busy slot in one partition does not keep it in the others).
fn every_one(results: Vec<Result<(), StoreError>>) -> Result<(), StoreError> {
    results.into_iter().collect()
}

/// Members of a sorted set with their scores.
type Scored = Vec<(String, f64)>;

/// Reads the reply of a script that removes a slot: `{'ok'}`, or
/// `{'busy', ids}` when the slot still holds tasks.
fn removed(slot: &str, what: &'static str, reply: Vec<Value>) -> Result<(), StoreError> {
    let mut it = reply.into_iter();
    match it
        .next()
        .map(|v| super::record::text_of(what, v))
        .transpose()?
    {
        Some(ok) if ok == "ok" => Ok(()),
        Some(busy) if busy == "busy" => {
            let ids: Vec<String> = match it.next() {
                Some(v) => redis::from_redis_value(v).map_err(|e| StoreError::UnexpectedReply {
                    what,
                    detail: e.to_string(),
                })?,
                None => Vec::new(),
            };
            Err(StoreError::SlotBusy {
                slot: slot.to_owned(),
                ids,
            })
        }
        other => Err(StoreError::UnexpectedReply {
            what,
            detail: format!("{other:?}"),
        }),
    }
}
