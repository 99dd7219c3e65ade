//! Reading the `[queues.<name>]` tables of the settings file: per-queue
//! settings, the isolation profile of the queue's tasks and the flow
//! limits that supervisors seed into Redis (docs/flow-control.md).
//!
//! ```toml
//! [queues.untrusted]
//! concurrency_limit = 3        # at most 3 running at once, fleet-wide
//! rate_limit = "50/1s"         # at most 50 starts in any second
//! memory_limit = "256M"        # bytes, or with K/M/G (powers of 1024)
//! cpu_time_limit = "10s"       # seconds, or a duration
//! open_files_limit = 64
//! process_limit = 32           # processes + threads of `user`
//! core_dumps = false           # default
//! user = "nobody"              # name or id; supplementary groups dropped
//! group = "nogroup"            # default: the user's primary group
//! env = ["PATH", "LANG", "TZ"] # allow-list; never REDIS_*, RT_*, NOTIFY_SOCKET, WATCHDOG_*
//! working_dir = "/srv/untrusted"
//! network = false              # only loopback
//! read_only_paths = ["/usr", "/lib", "/etc"]   # Landlock
//! read_write_paths = ["/srv/untrusted"]
//! seccomp = true               # deny ptrace, mount, modules, reboot...
//! enqueue_queues = ["thumbs"]  # what its tasks may enqueue from inside
//! enqueue_tasks = ["resize"]   # ("*": any; unset: none when restricted)
//! ```

use std::path::PathBuf;

use super::error::{Origin, SettingsError};
use super::isolation::{Isolation, is_forbidden_env, parse_bytes};
use super::values::{Raw, hint, name, seconds};
use crate::Rate;

/// Settings of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSettings {
    /// The restrictions its tasks run under (a task function's own options
    /// win field by field).
    pub isolation: Isolation,
    /// `concurrency_limit`: seeded into Redis as the queue's fleet-wide
    /// concurrency limit when it has none there.
    pub concurrency_limit: Option<u32>,
    /// `rate_limit`: seeded into Redis as the queue's rate limit when it
    /// has none there.
    pub rate_limit: Option<Rate>,
}

/// The keys a queue table may have.
const QUEUE_KEYS: [&str; 17] = [
    "concurrency_limit",
    "rate_limit",
    "memory_limit",
    "cpu_time_limit",
    "open_files_limit",
    "process_limit",
    "core_dumps",
    "user",
    "group",
    "env",
    "working_dir",
    "network",
    "read_only_paths",
    "read_write_paths",
    "seccomp",
    "enqueue_queues",
    "enqueue_tasks",
];

/// Reads the value of the top-level `queues` key.
pub(super) fn read_queues(
    value: &toml::Value,
    origin: &Origin,
) -> Result<Vec<(String, QueueSettings)>, SettingsError> {
    let toml::Value::Table(table) = value else {
        return Err(bad(
            origin,
            "queues",
            Raw::Toml(value).expected("a table of queues ([queues.NAME])"),
        ));
    };
    table
        .iter()
        .map(|(queue, value)| {
            name(Raw::Env(queue)).map_err(|p| bad(origin, &format!("queues.{queue}"), p))?;
            Ok((queue.clone(), read_queue(queue, value, origin)?))
        })
        .collect()
}

fn read_queue(
    queue: &str,
    value: &toml::Value,
    origin: &Origin,
) -> Result<QueueSettings, SettingsError> {
    let prefix = format!("queues.{queue}");
    let toml::Value::Table(table) = value else {
        return Err(bad(
            origin,
            &prefix,
            Raw::Toml(value).expected("a table of queue settings"),
        ));
    };
    let mut iso = Isolation::default();
    let (mut concurrency_limit, mut rate_limit) = (None, None);
    for (key, value) in table {
        let full = format!("{prefix}.{key}");
        let err = |problem: String| bad(origin, &full, problem);
        let raw = Raw::Toml(value);
        match key.as_str() {
            "concurrency_limit" => concurrency_limit = Some(concurrency(value).map_err(err)?),
            "rate_limit" => rate_limit = Some(rate(value).map_err(err)?),
            "memory_limit" => iso.memory_limit = Some(size(value).map_err(err)?),
            "cpu_time_limit" => iso.cpu_time_limit = Some(seconds(raw, 1).map_err(err)?),
            "open_files_limit" => iso.open_files_limit = Some(positive(value).map_err(err)?),
            "process_limit" => iso.process_limit = Some(positive(value).map_err(err)?),
            "core_dumps" => iso.core_dumps = Some(flag(value).map_err(err)?),
            "network" => iso.network = Some(flag(value).map_err(err)?),
            "seccomp" => iso.seccomp = Some(flag(value).map_err(err)?),
            "user" => iso.user = Some(name(raw).map_err(err)?),
            "group" => iso.group = Some(name(raw).map_err(err)?),
            "env" => iso.env = Some(env_names(value).map_err(err)?),
            "working_dir" => iso.working_dir = Some(path(value).map_err(err)?),
            "read_only_paths" => iso.read_only_paths = Some(paths(value).map_err(err)?),
            "read_write_paths" => iso.read_write_paths = Some(paths(value).map_err(err)?),
            "enqueue_queues" => iso.enqueue_queues = Some(names(value).map_err(err)?),
            "enqueue_tasks" => iso.enqueue_tasks = Some(names(value).map_err(err)?),
            _ => {
                return Err(SettingsError::UnknownKey {
                    also: Vec::new(),
                    origin: origin.clone(),
                    key: full,
                    hint: hint(key, QUEUE_KEYS),
                });
            }
        }
    }
    Ok(QueueSettings {
        isolation: iso,
        concurrency_limit,
        rate_limit,
    })
}

/// A `concurrency_limit`: a positive whole number that fits 32 bits.
pub(super) fn concurrency(value: &toml::Value) -> Result<u32, String> {
    let n = positive(value)?;
    u32::try_from(n).map_err(|_| "a whole number up to 4294967295".to_owned())
}

/// A `rate_limit`: `"N/PERIOD"`.
pub(super) fn rate(value: &toml::Value) -> Result<Rate, String> {
    let toml::Value::String(text) = value else {
        return Err(Raw::Toml(value).expected("a rate such as \"50/1s\""));
    };
    text.parse::<Rate>().map_err(|e| e.to_string())
}

fn size(value: &toml::Value) -> Result<u64, String> {
    let what = "a size such as \"256M\" or \"1G\" (or whole bytes)";
    let bytes = match value {
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        toml::Value::String(text) => parse_bytes(text),
        _ => None,
    };
    bytes
        .filter(|b| *b > 0)
        .ok_or_else(|| Raw::Toml(value).expected(what))
}

fn positive(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) if *n > 0 => Ok(n.unsigned_abs()),
        _ => Err(Raw::Toml(value).expected("a positive whole number")),
    }
}

fn flag(value: &toml::Value) -> Result<bool, String> {
    match value {
        toml::Value::Boolean(b) => Ok(*b),
        _ => Err(Raw::Toml(value).expected("true or false")),
    }
}

fn path(value: &toml::Value) -> Result<PathBuf, String> {
    match value {
        toml::Value::String(text) if text.starts_with('/') => Ok(PathBuf::from(text)),
        _ => Err(Raw::Toml(value).expected("an absolute path")),
    }
}

fn paths(value: &toml::Value) -> Result<Vec<PathBuf>, String> {
    let toml::Value::Array(items) = value else {
        return Err(Raw::Toml(value).expected("an array of absolute paths"));
    };
    items.iter().map(path).collect()
}

/// Queue or task names, or `"*"`.
fn names(value: &toml::Value) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = value else {
        return Err(Raw::Toml(value).expected("an array of names (\"*\": any)"));
    };
    items
        .iter()
        .map(|item| name(Raw::Toml(item)).map_err(|p| format!("each name: {p}")))
        .collect()
}

fn env_names(value: &toml::Value) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = value else {
        return Err(Raw::Toml(value).expected("an array of variable names"));
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let one = name(Raw::Toml(item)).map_err(|p| format!("each variable name: {p}"))?;
        if one.contains('=') {
            return Err(format!("{one:?} is not a variable name"));
        }
        if is_forbidden_env(&one) {
            return Err(format!(
                "{one:?} may not be passed to a worker process (Redis and systemd variables never are)"
            ));
        }
        names.push(one);
    }
    Ok(names)
}

pub(super) fn bad(origin: &Origin, key: &str, problem: String) -> SettingsError {
    SettingsError::BadValue {
        origin: origin.clone(),
        key: key.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;
    use std::path::Path;

    #[test]
    fn a_queue_table_becomes_an_isolation_profile() {
        let text = r#"
            [queues.untrusted]
            memory_limit = "256M"
            cpu_time_limit = "10s"
            process_limit = 32
            user = "nobody"
            env = ["PATH", "LANG"]
            network = false
            read_only_paths = ["/usr"]
            seccomp = true
        "#;
        let s = Settings::from_toml_str(text, None).expect("valid");
        let iso = &s.queues["untrusted"].isolation;
        assert_eq!(iso.memory_limit, Some(256 << 20));
        assert_eq!(iso.cpu_time_limit, Some(10));
        assert_eq!(iso.process_limit, Some(32));
        assert_eq!(iso.user.as_deref(), Some("nobody"));
        assert_eq!(iso.network, Some(false));
        assert_eq!(iso.seccomp, Some(true));
        assert_eq!(s.isolation_of("untrusted"), iso.clone());
        assert!(s.isolation_of("default").is_unrestricted());
    }

    #[test]
    fn flow_limits_are_read_and_checked() {
        let text = "[queues.api]\nconcurrency_limit = 3\nrate_limit = \"50/1s\"\n";
        let s = Settings::from_toml_str(text, None).expect("valid");
        let api = &s.queues["api"];
        assert_eq!(api.concurrency_limit, Some(3));
        assert_eq!(
            api.rate_limit.map(|r| r.to_string()).as_deref(),
            Some("50/1s")
        );
        // Flow limits alone are no isolation profile.
        assert!(s.isolation_of("api").is_unrestricted());
        for (bad, says) in [
            ("concurrency_limit = 0", "queues.api.concurrency_limit"),
            ("rate_limit = \"50\"", "N/PERIOD"),
            ("rate_limit = 50", "queues.api.rate_limit"),
        ] {
            let err = Settings::from_toml_str(&format!("[queues.api]\n{bad}\n"), None)
                .expect_err(bad)
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_documented_untrusted_queue_loads() {
        let page = include_str!("../../../docs/security.md");
        let start = page.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let len = page[start..].find("```").expect("end of block");
        let s = Settings::from_toml_str(&page[start..start + len], None).expect("valid");
        let iso = &s.queues["untrusted"].isolation;
        assert_eq!(iso.memory_limit, Some(256 << 20));
        assert_eq!(iso.cpu_time_limit, Some(10));
        assert!(iso.wants_landlock());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_key_and_file() {
        let file = Path::new("/etc/rt.toml");
        let err =
            Settings::from_toml_str("[queues.q]\nmemory_limt = 5\n", Some(file)).expect_err("typo");
        assert_eq!(
            err.to_string(),
            "settings file /etc/rt.toml: unknown key \"queues.q.memory_limt\"; did you mean \"memory_limit\"?"
        );
        let err = Settings::from_toml_str("[queues.q]\nmemory_limit = \"lots\"\n", Some(file))
            .expect_err("bad size");
        assert!(
            err.to_string().starts_with(
                "settings file /etc/rt.toml: key \"queues.q.memory_limit\": expected a size"
            ),
            "{err}"
        );
        let err = Settings::from_toml_str("[queues.q]\nenv = [\"REDIS_URL\"]\n", Some(file))
            .expect_err("redis variable");
        assert!(err.to_string().contains("never are"), "{err}");
        let err = Settings::from_toml_str("[queues.q]\nworking_dir = \"rel\"\n", Some(file))
            .expect_err("relative path");
        assert!(err.to_string().contains("absolute path"), "{err}");
    }
}
