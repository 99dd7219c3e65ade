//! The Redis connection settings beyond `redis_url` and
//! `redis_password_file`: ACL user name, TLS files, Sentinel and the durable
//! (`WAIT`) mode. They live in [`RedisSettings`] so that every program
//! (supervisor, scheduler, producers, the admin CLI) reads one value and
//! connects the same way; the store turns it into a connection.

use std::path::PathBuf;

use super::values::Raw;

/// The default time one `WAIT` may take, in milliseconds.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 2_000;

/// Connection options beyond `redis_url` and `redis_password_file`.
///
/// Each field is a top-level key of the settings file named `redis_<field>`
/// and the environment variable `RT_REDIS_<FIELD>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// ACL user name (`redis_username`); wins over a user name in the URL.
    pub username: Option<String>,
    /// PEM file of the certificate authorities a TLS server certificate must
    /// chain to (`redis_tls_ca_file`); unset: the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (`redis_tls_cert_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of [`tls_cert_file`](Self::tls_cert_file)
    /// (`redis_tls_key_file`).
    pub tls_key_file: Option<PathBuf>,
    /// For testing only: accept any server certificate
    /// (`redis_tls_insecure`). A warning is logged at every connection.
    pub tls_insecure: bool,
    /// Sentinels as `host:port` (`redis_sentinels`, comma-separated in the
    /// environment, an array or a comma-separated string in the file).
    pub sentinels: Vec<String>,
    /// The master name the sentinels monitor (`redis_sentinel_master`).
    pub sentinel_master: Option<String>,
    /// ACL user name on the sentinels (`redis_sentinel_username`).
    pub sentinel_username: Option<String>,
    /// File whose first line is the sentinels' password
    /// (`redis_sentinel_password_file`); read at start and at SIGHUP.
    pub sentinel_password_file: Option<PathBuf>,
    /// Talk TLS to the sentinels too (`redis_sentinel_tls`), with the
    /// master's TLS settings (CA file, client certificate).
    pub sentinel_tls: bool,
    /// Durable mode (`redis_wait_replicas`): every write waits until this
    /// many replicas acknowledged it (`WAIT`); 0 is off.
    pub wait_replicas: u32,
    /// How long one `WAIT` may take before the write counts as failed
    /// (`redis_wait_timeout_ms`).
    pub wait_timeout_ms: u64,
    /// Seed nodes of a Redis Cluster as `host:port` (`redis_cluster_nodes`,
    /// comma-separated in the environment, an array or a comma-separated
    /// string in the file); the form `redis+cluster://` of `redis_url` is
    /// the other way to name them.
    pub cluster_nodes: Vec<String>,
    /// How many partitions the data under the prefix is split into
    /// (`redis_partitions`); 0 picks the default: 1, or 16 on a Cluster.
    /// Data written with one count is refused by programs set to another.
    pub partitions: u16,
}

impl Default for RedisSettings {
    fn default() -> RedisSettings {
        RedisSettings {
            username: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_insecure: false,
            sentinels: Vec::new(),
            sentinel_master: None,
            sentinel_username: None,
            sentinel_password_file: None,
            sentinel_tls: false,
            wait_replicas: 0,
            wait_timeout_ms: DEFAULT_WAIT_TIMEOUT_MS,
            cluster_nodes: Vec::new(),
            partitions: 0,
        }
    }
}

/// The keys read here (each also listed in `values::SCALAR_KEYS`).
#[cfg(test)]
const REDIS_KEYS: [&str; 14] = [
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
];

/// Sets `key` of `r` from `raw`; `None` when `key` is not one of
/// [`REDIS_KEYS`].
pub(super) fn apply(r: &mut RedisSettings, key: &str, raw: Raw<'_>) -> Option<Result<(), String>> {
    let result = match key {
        "redis_username" => word(raw, "an ACL user name").map(|v| r.username = Some(v)),
        "redis_tls_ca_file" => path(raw).map(|v| r.tls_ca_file = Some(v)),
        "redis_tls_cert_file" => path(raw).map(|v| r.tls_cert_file = Some(v)),
        "redis_tls_key_file" => path(raw).map(|v| r.tls_key_file = Some(v)),
        "redis_tls_insecure" => boolean(raw).map(|v| r.tls_insecure = v),
        "redis_sentinels" => sentinels(raw).map(|v| r.sentinels = v),
        "redis_sentinel_master" => {
            word(raw, "a sentinel master name").map(|v| r.sentinel_master = Some(v))
        }
        "redis_sentinel_username" => {
            word(raw, "an ACL user name").map(|v| r.sentinel_username = Some(v))
        }
        "redis_sentinel_password_file" => path(raw).map(|v| r.sentinel_password_file = Some(v)),
        "redis_sentinel_tls" => boolean(raw).map(|v| r.sentinel_tls = v),
        "redis_wait_replicas" => number(raw, 0, 16).map(|v| r.wait_replicas = v as u32),
        "redis_wait_timeout_ms" => number(raw, 1, 600_000).map(|v| r.wait_timeout_ms = v),
        "redis_cluster_nodes" => sentinels(raw).map(|v| r.cluster_nodes = v),
        "redis_partitions" => number(raw, 0, 1024).map(|v| r.partitions = v as u16),
        _ => return None,
    };
    Some(result)
}

fn text(raw: Raw<'_>) -> Option<&str> {
    match raw {
        Raw::Env(text) => Some(text.trim()),
        Raw::Toml(toml::Value::String(text)) => Some(text.trim()),
        Raw::Toml(_) => None,
    }
}

/// A non-empty string without whitespace. Not echoed back in errors.
fn word(raw: Raw<'_>, what: &str) -> Result<String, String> {
    match text(raw) {
        Some(t) if !t.is_empty() && !t.chars().any(char::is_whitespace) => Ok(t.to_owned()),
        _ => Err(format!(
            "expected {what} (a non-empty string without spaces)"
        )),
    }
}

fn path(raw: Raw<'_>) -> Result<PathBuf, String> {
    match text(raw) {
        Some(t) if !t.is_empty() => Ok(PathBuf::from(t)),
        _ => Err(raw.expected("a file path")),
    }
}

fn boolean(raw: Raw<'_>) -> Result<bool, String> {
    match raw {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Env(t) => match t.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(raw.expected("true or false")),
        },
        _ => Err(raw.expected("true or false")),
    }
}

fn number(raw: Raw<'_>, min: u64, max: u64) -> Result<u64, String> {
    let value = match raw {
        Raw::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
        Raw::Env(t) => t.trim().parse::<u64>().ok(),
        _ => None,
    };
    value
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| raw.expected(&format!("a whole number from {min} to {max}")))
}

/// `host:port` entries (sentinels or cluster seed nodes), from a TOML
/// array or a comma-separated string.
fn sentinels(raw: Raw<'_>) -> Result<Vec<String>, String> {
    let items: Vec<String> = match raw {
        Raw::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.trim().to_owned()),
                _ => Err(raw.expected("an array of \"host:port\" strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => match text(raw) {
            Some(t) => t.split(',').map(|s| s.trim().to_owned()).collect(),
            None => return Err(raw.expected("\"host:port\" entries")),
        },
    };
    if items.is_empty() {
        return Err("expected at least one \"host:port\" entry".to_owned());
    }
    for item in &items {
        let ok = item.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok || item.chars().any(char::is_whitespace) {
            return Err(format!("expected \"host:port\" sentinels, got {item:?}"));
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_from_env_and_toml() {
        let got = sentinels(Raw::Env("127.0.0.1:26379, h:26380")).expect("list");
        assert_eq!(got, ["127.0.0.1:26379", "h:26380"]);
        let arr = toml::Value::Array(vec![toml::Value::String("a:1".into())]);
        assert_eq!(sentinels(Raw::Toml(&arr)).expect("array"), ["a:1"]);
        for bad in ["", "nohost", "h:0", "h:x", ":1"] {
            assert!(sentinels(Raw::Env(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_key_is_a_scalar_setting() {
        for key in REDIS_KEYS {
            assert!(super::super::values::SCALAR_KEYS.contains(&key), "{key}");
            let mut r = RedisSettings::default();
            assert!(apply(&mut r, key, Raw::Env("1")).is_some(), "{key}");
        }
    }

    #[test]
    fn booleans_and_numbers() {
        assert_eq!(boolean(Raw::Env("yes")), Ok(true));
        assert!(boolean(Raw::Env("maybe")).is_err());
        assert!(number(Raw::Env("17"), 0, 16).is_err());
        assert_eq!(number(Raw::Env("1"), 0, 16), Ok(1));
    }
}
