//! Reading one setting's value, from TOML or from an environment variable,
//! with a message that says what was expected and what was found.
//!
//! Every scalar setting is listed once, in [`SCALAR_KEYS`] and
//! [`apply_scalar`], so the file and the environment accept exactly the same
//! settings with exactly the same checks.

use crate::schedule::{parse_duration, parse_time_zone};

use super::{MAX_TASK_LOG_KIB, Settings};

/// A raw value before it is checked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Raw<'a> {
    /// A value from the settings file.
    Toml(&'a toml::Value),
    /// The text of an environment variable.
    Env(&'a str),
}

impl Raw<'_> {
    /// How the value is shown after "got".
    fn shown(&self) -> String {
        match self {
            Raw::Env(text) => format!("{text:?}"),
            Raw::Toml(toml::Value::String(text)) => format!("{text:?}"),
            Raw::Toml(toml::Value::Integer(n)) => n.to_string(),
            Raw::Toml(toml::Value::Float(x)) => x.to_string(),
            Raw::Toml(toml::Value::Boolean(b)) => b.to_string(),
            Raw::Toml(toml::Value::Datetime(d)) => format!("the date {d}"),
            Raw::Toml(toml::Value::Array(_)) => "an array".to_owned(),
            Raw::Toml(toml::Value::Table(_)) => "a table".to_owned(),
        }
    }

    /// The text of a string value (or of an environment variable).
    fn text(&self) -> Option<&str> {
        match self {
            Raw::Env(text) => Some(text),
            Raw::Toml(toml::Value::String(text)) => Some(text),
            Raw::Toml(_) => None,
        }
    }

    /// `expected {what}, got {value}`.
    pub(super) fn expected(&self, what: &str) -> String {
        format!("expected {what}, got {}", self.shown())
    }
}

/// The settings that take a single value, by their names in the file. Each
/// can also be set by the environment variable `RT_<NAME IN CAPITALS>`.
pub(crate) const SCALAR_KEYS: [&str; 41] = [
    "redis_url",
    "redis_password_file",
    // Read by `super::redis` (RedisSettings).
    "redis_username",
    "redis_tls_ca_file",
    "redis_tls_cert_file",
    "redis_tls_key_file",
    "redis_tls_insecure",
    "redis_sentinels",
    "redis_sentinel_master",
    "redis_sentinel_username",
    "redis_sentinel_password_file",
    "redis_sentinel_tls",
    "redis_wait_replicas",
    "redis_wait_timeout_ms",
    "redis_cluster_nodes",
    "redis_partitions",
    "redis_prefix",
    "timezone",
    "default_task_timeout",
    "max_task_timeout",
    "expiring_registries_ttl",
    "dead_worker_ttl",
    "worker_heartbeat_freq",
    "worker_heartbeat_timeout",
    "maintenance_freq",
    "scheduler_queue",
    "scheduler_max_catchup",
    "max_args_bytes",
    "max_aborted_runs",
    "max_children_per_task",
    "worker_concurrency",
    "drain_timeout",
    "dynamic_user_base",
    "worker_cgroups",
    "max_result_bytes",
    "metrics_addr",
    "sentry_dsn",
    "otlp_endpoint",
    "log_task_args",
    "task_log_kib",
    "task_output_to_log",
];

/// The settings that are not scalars (their own readers handle them).
pub(super) const OTHER_KEYS: [&str; 3] = ["middleware", "worker_queues", "schedule"];

/// Sets scalar setting `key` from `raw`. Returns `None` when `key` is not a
/// scalar setting, else whether the value was acceptable (with the problem
/// when it was not).
pub(super) fn apply_scalar(
    settings: &mut Settings,
    key: &str,
    raw: Raw<'_>,
) -> Option<Result<(), String>> {
    let s = settings;
    let result = match key {
        "redis_url" => redis_url(raw).map(|v| s.redis_url = v),
        "redis_password_file" => file_path(raw).map(|v| s.redis_password_file = Some(v)),
        "redis_prefix" => name(raw).map(|v| s.redis_prefix = v),
        "timezone" => time_zone(raw).map(|v| s.timezone = v),
        "default_task_timeout" => seconds(raw, 1).map(|v| s.default_task_timeout = v),
        "max_task_timeout" => seconds(raw, 1).map(|v| s.max_task_timeout = v),
        "expiring_registries_ttl" => seconds(raw, 1).map(|v| s.expiring_registries_ttl = v),
        "dead_worker_ttl" => seconds(raw, 1).map(|v| s.dead_worker_ttl = v),
        "worker_heartbeat_freq" => seconds(raw, 1).map(|v| s.worker_heartbeat_freq = v),
        "worker_heartbeat_timeout" => seconds(raw, 1).map(|v| s.worker_heartbeat_timeout = v),
        "maintenance_freq" => seconds(raw, 1).map(|v| s.maintenance_freq = v),
        "scheduler_queue" => name(raw).map(|v| s.scheduler_queue = v),
        "scheduler_max_catchup" => seconds(raw, 0).map(|v| s.scheduler_max_catchup = v),
        "max_args_bytes" => count(raw, 1, u64::MAX, "bytes").map(|v| s.max_args_bytes = v),
        "max_aborted_runs" => count(raw, 0, u64::from(u32::MAX), "runs")
            .map(|v| s.max_aborted_runs = u32::try_from(v).unwrap_or(u32::MAX)),
        "max_children_per_task" => count(raw, 0, u64::from(u32::MAX), "tasks")
            .map(|v| s.max_children_per_task = u32::try_from(v).unwrap_or(u32::MAX)),
        "worker_concurrency" => {
            count(raw, 1, 4096, "slots").map(|v| s.worker_concurrency = Some(v))
        }
        "drain_timeout" => seconds(raw, 0).map(|v| s.drain_timeout = Some(v)),
        "dynamic_user_base" => count(raw, 1, u64::from(u32::MAX - 4336), "uid")
            .map(|v| s.dynamic_user_base = u32::try_from(v).unwrap_or(61_184)),
        "worker_cgroups" => boolean(raw).map(|v| s.worker_cgroups = v),
        "max_result_bytes" => count(raw, 1, u64::MAX, "bytes").map(|v| s.max_result_bytes = v),
        "metrics_addr" => socket_addr(raw).map(|v| s.metrics_addr = Some(v)),
        "sentry_dsn" => sentry_dsn(raw).map(|v| s.sentry_dsn = Some(v)),
        "otlp_endpoint" => http_url(raw).map(|v| s.otlp_endpoint = Some(v)),
        "log_task_args" => boolean(raw).map(|v| s.log_task_args = v),
        "task_log_kib" => count(raw, 0, MAX_TASK_LOG_KIB, "KiB").map(|v| s.task_log_kib = v),
        "task_output_to_log" => boolean(raw).map(|v| s.task_output_to_log = v),
        _ => return super::redis::apply(&mut s.redis, key, raw),
    };
    Some(result)
}

/// Sets list setting `key` (`middleware` or `worker_queues`).
pub(super) fn set_list(settings: &mut Settings, key: &str, names: Vec<String>) {
    if key == "middleware" {
        settings.middleware = names;
    } else {
        settings.worker_queues = names;
    }
}

/// A non-empty string without surrounding whitespace (prefixes, queue names).
pub(super) fn name(raw: Raw<'_>) -> Result<String, String> {
    let expected = || raw.expected("a non-empty string without spaces");
    let Some(text) = raw.text() else {
        return Err(expected());
    };
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(expected());
    }
    Ok(text.to_owned())
}

/// An `http://` or `https://` URL without whitespace.
fn http_url(raw: Raw<'_>) -> Result<String, String> {
    let expected = || raw.expected("an http(s) URL such as \"http://localhost:4318\"");
    let text = raw.text().ok_or_else(expected)?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(expected)?;
    if rest.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(expected());
    }
    Ok(text.to_owned())
}

/// A Sentry DSN: `http(s)://PUBLIC_KEY@HOST[:PORT]/PROJECT_ID`.
fn sentry_dsn(raw: Raw<'_>) -> Result<String, String> {
    let expected = || raw.expected("a Sentry DSN such as \"https://KEY@o1.ingest.sentry.io/42\"");
    let text = raw.text().ok_or_else(expected)?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(expected)?;
    let (key, host_path) = rest.split_once('@').ok_or_else(expected)?;
    let (host, project) = host_path.split_once('/').ok_or_else(expected)?;
    if key.is_empty()
        || host.is_empty()
        || project.is_empty()
        || text.chars().any(char::is_whitespace)
    {
        return Err(expected());
    }
    Ok(text.to_owned())
}

/// An IP address and port, such as `127.0.0.1:9464` or `[::1]:9464`.
fn socket_addr(raw: Raw<'_>) -> Result<std::net::SocketAddr, String> {
    let expected = || raw.expected("an address and port such as \"127.0.0.1:9464\"");
    raw.text()
        .and_then(|text| text.parse().ok())
        .ok_or_else(expected)
}

/// URL schemes the Redis client accepts.
const REDIS_SCHEMES: [&str; 8] = [
    "redis://",
    "rediss://",
    "unix://",
    "redis+unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
];

/// A Redis URL: one of the client's schemes and something after it. The
/// store parses the rest when it connects (this crate does not link the
/// Redis client). The value is never echoed: it may hold a password.
pub(super) fn redis_url(raw: Raw<'_>) -> Result<String, String> {
    let expected = "expected a redis URL such as \"redis://127.0.0.1:6379\"";
    let Some(text) = raw.text().map(str::trim) else {
        return Err(format!("{expected}, got {}", raw.shown()));
    };
    let rest = REDIS_SCHEMES
        .iter()
        .find_map(|scheme| text.strip_prefix(scheme))
        .ok_or_else(|| {
            format!(
                "{expected}: the scheme must be one of {}",
                REDIS_SCHEMES.join(", ")
            )
        })?;
    if rest.is_empty() || rest.chars().any(char::is_whitespace) {
        return Err(format!("{expected}: nothing usable after the scheme"));
    }
    Ok(text.to_owned())
}

/// A path to a file (not read here: the store reads it when it connects,
/// so a reload picks up a new password).
fn file_path(raw: Raw<'_>) -> Result<std::path::PathBuf, String> {
    match raw.text().map(str::trim) {
        Some(text) if !text.is_empty() => Ok(std::path::PathBuf::from(text)),
        _ => Err(raw.expected("a file path")),
    }
}

/// An IANA time zone name the system database knows.
fn time_zone(raw: Raw<'_>) -> Result<String, String> {
    let Some(text) = raw.text().map(str::trim) else {
        return Err(raw.expected("an IANA time zone name such as \"Europe/Berlin\""));
    };
    parse_time_zone(text)
        .map(|_| text.to_owned())
        .map_err(|err| err.to_string())
}

/// A number of seconds of at least `min`: a TOML integer, or a duration
/// string (`"90m"`, `"1h30m"`, a bare `"1800"`).
pub(super) fn seconds(raw: Raw<'_>, min: u64) -> Result<u64, String> {
    let what = if min > 0 {
        "a positive whole number of seconds or a duration such as \"90m\""
    } else {
        "a whole number of seconds or a duration such as \"90m\""
    };
    let value = match raw {
        Raw::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
        _ => raw.text().and_then(|text| parse_duration(text).ok()),
    };
    value
        .filter(|secs| *secs >= min)
        .ok_or_else(|| raw.expected(what))
}

/// A whole number from `min` to `max` (`unit` names what it counts).
/// `true` or `false` (in the environment also `1`/`0`).
fn boolean(raw: Raw<'_>) -> Result<bool, String> {
    match raw {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Env("true" | "1") => Ok(true),
        Raw::Env("false" | "0") => Ok(false),
        _ => Err(raw.expected("true or false")),
    }
}

fn count(raw: Raw<'_>, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    let value = match raw {
        Raw::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
        Raw::Env(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    value.filter(|n| (min..=max).contains(n)).ok_or_else(|| {
        let what = if min > 0 {
            format!("a positive whole number of {unit}")
        } else {
            format!("a whole number of {unit}")
        };
        raw.expected(&what)
    })
}

/// The known key closest to `key` (a likely typo), as `; did you mean "k"?`.
pub(super) fn hint<'k>(key: &str, known: impl IntoIterator<Item = &'k str>) -> String {
    known
        .into_iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min()
        .map(|(_, candidate)| format!("; did you mean {candidate:?}?"))
        .unwrap_or_default()
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_from_integers_and_durations() {
        let ten = toml::Value::Integer(10);
        assert_eq!(seconds(Raw::Toml(&ten), 1), Ok(10));
        let text = toml::Value::String("1h30m".to_owned());
        assert_eq!(seconds(Raw::Toml(&text), 1), Ok(5_400));
        assert_eq!(seconds(Raw::Env("30"), 1), Ok(30));
        assert_eq!(
            seconds(Raw::Env("ten"), 1),
            Err("expected a positive whole number of seconds or a duration such as \"90m\", got \"ten\"".to_owned())
        );
        assert!(seconds(Raw::Env("0"), 1).is_err());
        assert_eq!(seconds(Raw::Env("0"), 0), Ok(0));
        let negative = toml::Value::Integer(-5);
        assert_eq!(
            seconds(Raw::Toml(&negative), 0),
            Err(
                "expected a whole number of seconds or a duration such as \"90m\", got -5"
                    .to_owned()
            )
        );
    }

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(
            hint("worker_heartbeat_frq", SCALAR_KEYS),
            "; did you mean \"worker_heartbeat_freq\"?"
        );
        assert_eq!(
            hint("cronn", ["cron", "every", "daily"]),
            "; did you mean \"cron\"?"
        );
        assert_eq!(hint("colour", SCALAR_KEYS), "");
    }
}
