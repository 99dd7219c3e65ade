//! Reading the `[schedule.ID]` tables of the settings file into checked
//! [`ScheduleEntry`] values.
//!
//! ```toml
//! [schedule.nightly-report]
//! task = "send_report"
//! cron = "30 2 * * mon-fri"   # or: every = "1h30m" (+ start_at = "08:00"), or: daily = "03:00"
//! args = { to = "ops@example.com" }
//! queue = "reports"           # default: scheduler_queue
//! singleton = true            # default
//! ```

use crate::schedule::{
    CronSchedule, Daily, Every, Schedule, ScheduleEntry, parse_duration, parse_time_of_day,
};

use super::error::{Origin, SettingsError};
use super::values::{Raw, hint, name};

/// The keys a schedule entry may have.
const ENTRY_KEYS: [&str; 8] = [
    "task",
    "cron",
    "every",
    "start_at",
    "daily",
    "args",
    "queue",
    "singleton",
];

/// One entry read from the file. `queue` is `None` when the entry names
/// none: it then takes `scheduler_queue`, which the environment may still
/// override.
#[derive(Debug)]
pub(super) struct EntryDraft {
    pub(super) entry: ScheduleEntry,
    pub(super) queue_given: bool,
}

/// Reads the value of the top-level `schedule` key.
pub(super) fn read_entries(
    value: &toml::Value,
    origin: &Origin,
) -> Result<Vec<(String, EntryDraft)>, SettingsError> {
    let toml::Value::Table(table) = value else {
        return Err(bad(
            origin,
            "schedule",
            Raw::Toml(value).expected("a table of entries ([schedule.ID])"),
        ));
    };
    table
        .iter()
        .map(|(id, value)| Ok((id.clone(), read_entry(id, value, origin)?)))
        .collect()
}

fn read_entry(id: &str, value: &toml::Value, origin: &Origin) -> Result<EntryDraft, SettingsError> {
    let prefix = format!("schedule.{id}");
    let key = |name: &str| format!("{prefix}.{name}");
    if id.trim().is_empty() {
        return Err(bad(
            origin,
            &prefix,
            "an entry id must not be empty".to_owned(),
        ));
    }
    let toml::Value::Table(table) = value else {
        return Err(bad(
            origin,
            &prefix,
            Raw::Toml(value).expected("a table with at least \"task\" and a schedule"),
        ));
    };
    if let Some(unknown) = table.keys().find(|k| !ENTRY_KEYS.contains(&k.as_str())) {
        return Err(SettingsError::UnknownKey {
            also: Vec::new(),
            origin: origin.clone(),
            key: key(unknown),
            hint: hint(unknown, ENTRY_KEYS),
        });
    }

    let task = match table.get("task") {
        Some(value) => name(Raw::Toml(value)).map_err(|p| bad(origin, &key("task"), p))?,
        None => {
            return Err(bad(
                origin,
                &prefix,
                "missing key \"task\" (the name of the task function to enqueue)".to_owned(),
            ));
        }
    };

    let kinds: Vec<&str> = ["cron", "every", "daily"]
        .into_iter()
        .filter(|kind| table.contains_key(*kind))
        .collect();
    let schedule = match kinds.as_slice() {
        ["cron"] => {
            let text = string(
                table.get("cron"),
                origin,
                &key("cron"),
                "a cron expression such as \"30 2 * * *\"",
            )?;
            Schedule::Cron(
                CronSchedule::parse(text).map_err(|e| bad(origin, &key("cron"), e.to_string()))?,
            )
        }
        ["daily"] => {
            let text = string(
                table.get("daily"),
                origin,
                &key("daily"),
                "a time of day such as \"03:00\"",
            )?;
            let at =
                parse_time_of_day(text).map_err(|e| bad(origin, &key("daily"), e.to_string()))?;
            Schedule::Daily(Daily::new(at))
        }
        ["every"] => Schedule::Every(read_every(id, table, origin)?),
        [] => {
            return Err(bad(
                origin,
                &prefix,
                "needs a schedule: one of \"cron\", \"every\" or \"daily\"".to_owned(),
            ));
        }
        several => {
            return Err(bad(
                origin,
                &prefix,
                format!("has {}; give exactly one schedule", several.join(" and ")),
            ));
        }
    };
    if table.contains_key("start_at") && !matches!(schedule, Schedule::Every(_)) {
        return Err(bad(
            origin,
            &key("start_at"),
            "\"start_at\" only goes with \"every\"".to_owned(),
        ));
    }

    let args = match table.get("args") {
        Some(value) => to_json(value).map_err(|p| bad(origin, &key("args"), p))?,
        None => serde_json::Value::Null,
    };
    let queue = match table.get("queue") {
        Some(value) => Some(name(Raw::Toml(value)).map_err(|p| bad(origin, &key("queue"), p))?),
        None => None,
    };
    let singleton = match table.get("singleton") {
        Some(toml::Value::Boolean(flag)) => *flag,
        Some(other) => {
            return Err(bad(
                origin,
                &key("singleton"),
                Raw::Toml(other).expected("true or false"),
            ));
        }
        None => true,
    };
    Ok(EntryDraft {
        queue_given: queue.is_some(),
        entry: ScheduleEntry {
            task,
            schedule,
            args,
            queue: queue.unwrap_or_default(),
            singleton,
        },
    })
}

/// `every` (a duration string or whole seconds) and its optional `start_at`.
fn read_every(id: &str, table: &toml::Table, origin: &Origin) -> Result<Every, SettingsError> {
    let every_key = format!("schedule.{id}.every");
    let expected = "an interval such as \"90m\" or \"1h30m\" (or whole seconds)";
    let interval = match table.get("every") {
        Some(toml::Value::Integer(n)) => u64::try_from(*n).map_err(|_| {
            bad(
                origin,
                &every_key,
                Raw::Toml(&toml::Value::Integer(*n)).expected(expected),
            )
        })?,
        Some(toml::Value::String(text)) => {
            parse_duration(text).map_err(|e| bad(origin, &every_key, e.to_string()))?
        }
        Some(other) => return Err(bad(origin, &every_key, Raw::Toml(other).expected(expected))),
        None => return Err(bad(origin, &every_key, "missing".to_owned())),
    };
    let start_key = format!("schedule.{id}.start_at");
    let start_at = match table.get("start_at") {
        Some(value) => {
            let text = string(
                Some(value),
                origin,
                &start_key,
                "a time of day such as \"08:00\"",
            )?;
            Some(parse_time_of_day(text).map_err(|e| bad(origin, &start_key, e.to_string()))?)
        }
        None => None,
    };
    Every::new(interval, start_at, id).map_err(|e| bad(origin, &every_key, e.to_string()))
}

/// The string at `key`, or an error saying `what` was expected.
fn string<'v>(
    value: Option<&'v toml::Value>,
    origin: &Origin,
    key: &str,
    what: &str,
) -> Result<&'v str, SettingsError> {
    match value {
        Some(toml::Value::String(text)) => Ok(text),
        Some(other) => Err(bad(origin, key, Raw::Toml(other).expected(what))),
        None => Err(bad(origin, key, format!("missing; expected {what}"))),
    }
}

/// A TOML value as JSON. Dates and times become RFC 3339 strings.
pub(super) fn to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        toml::Value::String(text) => serde_json::Value::String(text.clone()),
        toml::Value::Integer(n) => serde_json::Value::from(*n),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{x} has no JSON form"))?,
        toml::Value::Boolean(flag) => serde_json::Value::Bool(*flag),
        toml::Value::Datetime(when) => serde_json::Value::String(when.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn bad(origin: &Origin, key: &str, problem: String) -> SettingsError {
    SettingsError::BadValue {
        origin: origin.clone(),
        key: key.to_owned(),
        problem,
    }
}
