//! Running supervisors as Redis sees them, and commands to them.
//!
//! Every supervisor reports itself at each heartbeat in
//! `P:supervisor_state:<id>` (a hash with an expiry, so a supervisor that
//! died without a word vanishes by itself) and in the `P:supervisors` sorted
//! set. An operator's command (`quiet`, `stop`, `scale N`) goes on the list
//! `P:supervisor_commands:<id>`, and the supervisor's wake list
//! `P:wake:<id>` is poked in the same transaction, so the supervisor's
//! promoter thread, which sleeps in `BLPOP` on it, hands the command to the
//! control loop at once. Everything lives in partition 0, like the wake
//! lists.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use redis::Value;

use super::record::{hash_from_value, score, text_field, time_text};
use super::{Store, StoreError};

/// The most slots `scale` accepts.
pub const MAX_SLOTS: u64 = 1024;

/// How long a command waits for its supervisor before it expires.
const COMMAND_TTL_SECS: u64 = 60;

/// How long a supervisor id stays in `P:supervisors` without a report
/// before a report of another supervisor removes it.
const FORGET_AFTER_SECS: f64 = 86_400.0;

/// A command for a running supervisor; it acts on it exactly as on the
/// matching signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorCommand {
    /// As SIGTSTP: fetch no new task; running ones go on.
    Quiet,
    /// As SIGTERM: graceful shutdown with the usual drain.
    Stop,
    /// As that many SIGTTINs or SIGTTOUs: run this many slots (1 to
    /// [`MAX_SLOTS`]).
    Scale(u64),
}

impl fmt::Display for SupervisorCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorCommand::Quiet => f.write_str("quiet"),
            SupervisorCommand::Stop => f.write_str("stop"),
            SupervisorCommand::Scale(n) => write!(f, "scale {n}"),
        }
    }
}

impl FromStr for SupervisorCommand {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_whitespace();
        let command = match (words.next(), words.next(), words.next()) {
            (Some("quiet"), None, None) => SupervisorCommand::Quiet,
            (Some("stop"), None, None) => SupervisorCommand::Stop,
            (Some("scale"), Some(n), None) => {
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("scale: {n:?} is not a number of slots"))?;
                if !(1..=MAX_SLOTS).contains(&n) {
                    return Err(format!(
                        "scale: {n} slots is out of range (1 to {MAX_SLOTS})"
                    ));
                }
                SupervisorCommand::Scale(n)
            }
            _ => return Err(format!("unknown supervisor command {s:?}")),
        };
        Ok(command)
    }
}

/// What a running supervisor reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorState {
    /// Its id (the `supervisor` field of its slots' worker hashes).
    pub id: String,
    /// Its description (`hostname.pid` unless `--description` said else).
    pub description: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The version it runs (the application's and redis-tasks').
    pub version: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it last reported.
    pub reported_at: Timestamp,
    /// `serving`, `quiet`, `stopping`, `draining` or `stopping now`.
    pub mode: String,
    /// Its queues, in priority order.
    pub queues: Vec<String>,
    /// Slots it wants.
    pub wanted_slots: u64,
    /// Slots it runs now.
    pub slots: u64,
    /// Of those, the busy ones.
    pub busy: u64,
    /// Its own resident memory, in bytes.
    pub rss_bytes: Option<u64>,
    /// The resident memory of its worker processes together, in bytes.
    pub workers_rss_bytes: Option<u64>,
}

impl Store {
    /// Records `state` as this supervisor's report; it expires after `ttl`
    /// unless reported again.
    pub fn report_supervisor(
        &self,
        state: &SupervisorState,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let part = self.zero();
        let key = part.keys().supervisor_state(&state.id);
        let set = part.keys().supervisors();
        let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let fields: Vec<(&str, String)> = vec![
            ("description", state.description.clone()),
            ("host", state.host.clone()),
            ("pid", state.pid.to_string()),
            ("version", state.version.clone()),
            ("started_at", time_text(state.started_at)),
            ("reported_at", time_text(state.reported_at)),
            ("mode", state.mode.clone()),
            ("queues", state.queues.join(",")),
            ("wanted_slots", state.wanted_slots.to_string()),
            ("slots", state.slots.to_string()),
            ("busy", state.busy.to_string()),
            ("rss_bytes", opt(state.rss_bytes)),
            ("workers_rss_bytes", opt(state.workers_rss_bytes)),
        ];
        let now: f64 = score(state.reported_at).parse().unwrap_or(0.0);
        part.run(&[(&key, "hash"), (&set, "zset")], |c, _| {
            let mut pipe = redis::pipe();
            pipe.cmd("HSET").arg(&key);
            for (k, v) in &fields {
                pipe.arg(*k).arg(v);
            }
            pipe.ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .cmd("ZADD")
                .arg(&set)
                .arg(score(state.reported_at))
                .arg(&state.id)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&set)
                .arg("-inf")
                .arg(format!("({}", now - FORGET_AFTER_SECS))
                .ignore();
            pipe.query::<()>(c)
        })
    }

    /// Removes supervisor `id`'s report and pending commands (at its exit).
    pub fn forget_supervisor(&self, id: &str) -> Result<(), StoreError> {
        let part = self.zero();
        let key = part.keys().supervisor_state(id);
        let set = part.keys().supervisors();
        let commands = part.keys().supervisor_commands(id);
        part.run(&[(&set, "zset")], |c, _| {
            redis::pipe()
                .cmd("DEL")
                .arg(&key)
                .arg(&commands)
                .ignore()
                .cmd("ZREM")
                .arg(&set)
                .arg(id)
                .ignore()
                .query::<()>(c)
        })
    }

    /// Every supervisor whose report has not expired, ordered by host, then
    /// start time.
    pub fn supervisors(&self) -> Result<Vec<SupervisorState>, StoreError> {
        let part = self.zero();
        let set = part.keys().supervisors();
        let ids: Vec<String> = part.read(&[(&set, "zset")], |c, _| {
            redis::cmd("ZRANGE").arg(&set).arg(0).arg(-1).query(c)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let key = part.keys().supervisor_state(&id);
            let value: Value = part.read(&[(&key, "hash")], |c, _| {
                redis::cmd("HGETALL").arg(&key).query(c)
            })?;
            let hash = hash_from_value("supervisor state", value)?;
            let Some(started_at) = text_field(&hash, "started_at").and_then(|t| t.parse().ok())
            else {
                // Expired (or not ours): not running.
                continue;
            };
            let num = |f: &str| text_field(&hash, f).and_then(|t| t.parse::<u64>().ok());
            out.push(SupervisorState {
                description: text_field(&hash, "description").unwrap_or_default(),
                host: text_field(&hash, "host").unwrap_or_default(),
                pid: text_field(&hash, "pid")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
                version: text_field(&hash, "version").unwrap_or_default(),
                started_at,
                reported_at: text_field(&hash, "reported_at")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(started_at),
                mode: text_field(&hash, "mode").unwrap_or_default(),
                queues: text_field(&hash, "queues")
                    .map(|q| {
                        q.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                wanted_slots: num("wanted_slots").unwrap_or(0),
                slots: num("slots").unwrap_or(0),
                busy: num("busy").unwrap_or(0),
                rss_bytes: num("rss_bytes"),
                workers_rss_bytes: num("workers_rss_bytes"),
                id,
            });
        }
        out.sort_by(|a, b| (&a.host, a.started_at).cmp(&(&b.host, b.started_at)));
        Ok(out)
    }

    /// Queues `command` for supervisor `id` and wakes it. The caller checks
    /// that `id` runs ([`Store::supervisors`]); a command for a supervisor
    /// that never reads it expires after a minute.
    pub fn send_supervisor_command(
        &self,
        id: &str,
        command: SupervisorCommand,
    ) -> Result<(), StoreError> {
        let part = self.zero();
        let list = part.keys().supervisor_commands(id);
        let wake = part.keys().wake(id);
        part.run(&[(&list, "list"), (&wake, "list")], |c, _| {
            redis::pipe()
                .cmd("RPUSH")
                .arg(&list)
                .arg(command.to_string())
                .ignore()
                .cmd("EXPIRE")
                .arg(&list)
                .arg(COMMAND_TTL_SECS)
                .ignore()
                .cmd("DEL")
                .arg(&wake)
                .ignore()
                .cmd("RPUSH")
                .arg(&wake)
                .arg("1")
                .ignore()
                .cmd("EXPIRE")
                .arg(&wake)
                .arg(60)
                .ignore()
                .query::<()>(c)
        })
    }

    /// Takes the commands queued for supervisor `id`, oldest first; a
    /// command it cannot read comes back as the `Err` of its text.
    pub fn take_supervisor_commands(
        &self,
        id: &str,
    ) -> Result<Vec<Result<SupervisorCommand, String>>, StoreError> {
        let part = self.zero();
        let list = part.keys().supervisor_commands(id);
        let texts: Option<Vec<String>> = part.run(&[(&list, "list")], |c, _| {
            redis::cmd("LPOP").arg(&list).arg(100).query(c)
        })?;
        Ok(texts
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.parse())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_back_as_written_and_bad_ones_are_refused() {
        for c in [
            SupervisorCommand::Quiet,
            SupervisorCommand::Stop,
            SupervisorCommand::Scale(1),
            SupervisorCommand::Scale(MAX_SLOTS),
        ] {
            assert_eq!(c.to_string().parse::<SupervisorCommand>(), Ok(c));
        }
        for bad in [
            "",
            "scale",
            "scale 0",
            "scale 1025",
            "scale x",
            "quiet now",
            "halt",
        ] {
            assert!(bad.parse::<SupervisorCommand>().is_err(), "{bad:?}");
        }
    }
}
