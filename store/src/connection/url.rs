//! Reading a Redis URL (`redis://`, `rediss://`, `unix://`,
//! `redis+sentinel://`, `redis+cluster://`) and the `redis_*` settings into
//! a [`RedisConfig`]; a URL's password never appears in an error.

use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};
use redis_tasks_config::Settings;

use super::secrets::{check_secret_file, current_password, read_file};
use super::{Endpoint, RedisConfig, Tls, WaitPolicy};
use crate::error::{StoreError, redact_url};

impl RedisConfig {
    /// The configuration for `url` alone, with an optional password taking
    /// the place of one in the URL.
    pub fn from_url(url: &str, password: Option<&str>) -> Result<RedisConfig, StoreError> {
        let mut config = parse_url(url)?;
        if let Some(password) = password {
            config.url_password = Some(password.to_owned());
        }
        if let Some(tls) = &mut config.tls {
            tls.insecure |= url_fragment_insecure(url);
        }
        Ok(config)
    }

    /// The configuration the settings describe: `redis_url`,
    /// `redis_password_file` and the `redis_*` connection settings. Reads
    /// the TLS files and the password file; a missing or unreadable file
    /// is an error that names the setting.
    pub fn from_settings(settings: &Settings) -> Result<RedisConfig, StoreError> {
        let r = &settings.redis;
        let mut config = RedisConfig::from_url(&settings.redis_url, None)?;
        let invalid = |problem: String| StoreError::InvalidConfig { problem };
        match (&r.sentinels[..], &r.sentinel_master) {
            ([], None) => {}
            ([], Some(_)) => {
                return Err(invalid(
                    "redis_sentinel_master is set but redis_sentinels is not".to_owned(),
                ));
            }
            (_, None) => {
                return Err(invalid(
                    "redis_sentinels is set but redis_sentinel_master is not".to_owned(),
                ));
            }
            (list, Some(master)) => {
                if matches!(config.endpoint, Endpoint::Sentinel { .. }) {
                    return Err(invalid(
                        "redis_sentinels is set and redis_url is a sentinel URL too: use one of them"
                            .to_owned(),
                    ));
                }
                let sentinels = list
                    .iter()
                    .map(|s| parse_host_port(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|problem| invalid(format!("redis_sentinels: {problem}")))?;
                config.shown = format!("sentinel master {master:?} via {}", list.join(","));
                config.endpoint = Endpoint::Sentinel {
                    sentinels,
                    master: master.clone(),
                };
            }
        }
        if !r.cluster_nodes.is_empty() {
            if !matches!(config.endpoint, Endpoint::Direct(_)) {
                return Err(invalid(
                    "redis_cluster_nodes is set and redis_url (or redis_sentinels) names \
                     another deployment: use one of them"
                        .to_owned(),
                ));
            }
            let seeds = r
                .cluster_nodes
                .iter()
                .map(|s| parse_host_port(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|problem| invalid(format!("redis_cluster_nodes: {problem}")))?;
            config.shown = format!("cluster via {}", r.cluster_nodes.join(","));
            config.endpoint = Endpoint::Cluster { seeds };
        }
        if matches!(config.endpoint, Endpoint::Cluster { .. }) && config.db != 0 {
            return Err(invalid(
                "a Redis Cluster has only database 0: drop the database from redis_url".to_owned(),
            ));
        }
        config.partitions = r.partitions;
        if r.sentinel_username.is_some() || r.sentinel_password_file.is_some() {
            if !matches!(config.endpoint, Endpoint::Sentinel { .. }) {
                return Err(invalid(
                    "redis_sentinel_username or redis_sentinel_password_file is set but no \
                     sentinels are (redis_sentinels, or a redis+sentinel:// URL)"
                        .to_owned(),
                ));
            }
            if let Some(path) = &r.sentinel_password_file {
                check_secret_file(path, "redis_sentinel_password_file");
                current_password(path)?;
            }
            config.sentinel_username = r.sentinel_username.clone();
            config.sentinel_password_file = r.sentinel_password_file.clone();
        }
        if r.sentinel_tls {
            if !matches!(config.endpoint, Endpoint::Sentinel { .. }) || config.tls.is_none() {
                return Err(invalid(
                    "redis_sentinel_tls is set but redis_url is not a TLS sentinel URL: use \
                     rediss+sentinel:// (or redis_sentinels with a rediss:// URL)"
                        .to_owned(),
                ));
            }
            config.sentinel_tls = true;
        }
        if let Some(username) = &r.username {
            config.username = Some(username.clone());
        }
        let tls_settings = r.tls_ca_file.is_some()
            || r.tls_cert_file.is_some()
            || r.tls_key_file.is_some()
            || r.tls_insecure;
        match &mut config.tls {
            None if tls_settings => {
                return Err(invalid(
                    "redis_tls_* settings are set but redis_url does not use TLS: \
                     use a rediss:// (or rediss+sentinel://) URL"
                        .to_owned(),
                ));
            }
            None => {}
            Some(tls) => {
                if let Some(path) = &r.tls_ca_file {
                    tls.ca = Some(read_file(path, "redis_tls_ca_file")?);
                }
                match (&r.tls_cert_file, &r.tls_key_file) {
                    (None, None) => {}
                    (Some(cert), Some(key)) => {
                        check_secret_file(key, "redis_tls_key_file");
                        tls.client = Some((
                            read_file(cert, "redis_tls_cert_file")?,
                            read_file(key, "redis_tls_key_file")?,
                        ));
                    }
                    _ => {
                        return Err(invalid(
                            "mutual TLS needs both redis_tls_cert_file and redis_tls_key_file"
                                .to_owned(),
                        ));
                    }
                }
                tls.insecure |= r.tls_insecure;
            }
        }
        if let Some(path) = &settings.redis_password_file {
            check_secret_file(path, "redis_password_file");
            current_password(path)?;
            config.password_file = Some(path.clone());
        }
        if r.wait_replicas > 0 {
            config.wait = Some(WaitPolicy {
                replicas: r.wait_replicas,
                timeout: Duration::from_millis(r.wait_timeout_ms),
            });
        }
        Ok(config)
    }
}

/// Parses a Redis URL into a configuration (no settings applied yet).
fn parse_url(url: &str) -> Result<RedisConfig, StoreError> {
    let trimmed = url.trim();
    for (scheme, tls) in [("redis+sentinel://", false), ("rediss+sentinel://", true)] {
        if let Some(rest) = trimmed.strip_prefix(scheme) {
            return parse_sentinel_url(url, rest, tls);
        }
    }
    for (scheme, tls) in [("redis+cluster://", false), ("rediss+cluster://", true)] {
        if let Some(rest) = trimmed.strip_prefix(scheme) {
            return parse_cluster_url(url, rest, tls);
        }
    }
    let info = url
        .into_connection_info()
        .map_err(|error| StoreError::InvalidUrl {
            url: redact_url(url),
            error,
        })?;
    let redis = info.redis_settings();
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. }).then(Tls::default);
    Ok(RedisConfig {
        endpoint: Endpoint::Direct(info.addr().clone()),
        tls,
        db: redis.db(),
        username: redis.username().map(str::to_owned),
        url_password: redis.password().map(str::to_owned),
        password_file: None,
        wait: None,
        shown: info.addr().to_string(),
        partitions: 0,
        slot: None,
        sentinel_username: None,
        sentinel_password_file: None,
        sentinel_tls: false,
    })
}

/// `user:password@h1:p1,h2:p2` before the first `/`: the credentials
/// (percent-decoded) and the hosts, and what follows the `/`.
type Authority<'a> = (
    Option<String>,
    Option<String>,
    Vec<(String, u16)>,
    &'a str,
    &'a str,
);

fn parse_authority<'a>(
    rest: &'a str,
    invalid: &dyn Fn(&str) -> StoreError,
) -> Result<Authority<'a>, StoreError> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, pass) = info.split_once(':').unwrap_or((info, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| invalid("the user name or password is not UTF-8"))
            };
            let user = decode(user)?;
            let pass = decode(pass)?;
            (
                Some(user).filter(|u| !u.is_empty()),
                Some(pass).filter(|p| !p.is_empty()),
            )
        }
    };
    let nodes = hosts
        .split(',')
        .map(parse_host_port)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|p| invalid(&p))?;
    Ok((username, password, nodes, hosts, path))
}

/// `user:password@h1:p1,h2:p2/master[/db]` after the scheme.
fn parse_sentinel_url(url: &str, rest: &str, tls: bool) -> Result<RedisConfig, StoreError> {
    let invalid = |problem: &str| StoreError::InvalidConfig {
        problem: format!("invalid sentinel url {}: {problem}", redact_url(url)),
    };
    let (username, password, sentinels, hosts, path) = parse_authority(rest, &invalid)?;
    let mut parts = path.split('/');
    let master = parts
        .next()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("no master name after the sentinels (…/MASTER)"))?;
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| invalid("the database after the master name is not a number"))?,
    };
    if parts.next().is_some() {
        return Err(invalid("expected …/MASTER or …/MASTER/DB"));
    }
    Ok(RedisConfig {
        endpoint: Endpoint::Sentinel {
            sentinels,
            master: master.to_owned(),
        },
        tls: tls.then(Tls::default),
        db,
        username,
        url_password: password,
        password_file: None,
        wait: None,
        shown: format!("sentinel master {master:?} via {hosts}"),
        partitions: 0,
        slot: None,
        sentinel_username: None,
        sentinel_password_file: None,
        sentinel_tls: false,
    })
}

/// `user:password@h1:p1,h2:p2[/]` after the scheme: seed nodes of a
/// Cluster (database 0 only).
fn parse_cluster_url(url: &str, rest: &str, tls: bool) -> Result<RedisConfig, StoreError> {
    let invalid = |problem: &str| StoreError::InvalidConfig {
        problem: format!("invalid cluster url {}: {problem}", redact_url(url)),
    };
    let (username, password, seeds, hosts, path) = parse_authority(rest, &invalid)?;
    if !matches!(path, "" | "0") {
        return Err(invalid(
            "a Redis Cluster has only database 0: expected nothing after the nodes but `/`",
        ));
    }
    Ok(RedisConfig {
        endpoint: Endpoint::Cluster { seeds },
        tls: tls.then(Tls::default),
        db: 0,
        username,
        url_password: password,
        password_file: None,
        wait: None,
        shown: format!("cluster via {hosts}"),
        partitions: 0,
        slot: None,
        sentinel_username: None,
        sentinel_password_file: None,
        sentinel_tls: false,
    })
}

/// `host:port` (port required, `[v6]:port` accepted).
fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let bad = || format!("expected host:port, got {text:?}");
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Whether a `rediss://` URL ends in `#insecure` (redis-rs's own switch).
fn url_fragment_insecure(url: &str) -> bool {
    url.trim_end().ends_with("#insecure")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let c = parse_url("redis+sentinel://app:p%40ss@127.0.0.1:26379,h2:26380/mymaster/2")
            .expect("parses");
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.url_password.as_deref(), Some("p@ss"));
        assert_eq!(c.db, 2);
        assert!(c.tls.is_none());
        match &c.endpoint {
            Endpoint::Sentinel { sentinels, master } => {
                assert_eq!(master, "mymaster");
                assert_eq!(
                    sentinels,
                    &[("127.0.0.1".to_owned(), 26379), ("h2".to_owned(), 26380)]
                );
            }
            _ => panic!("not a sentinel endpoint"),
        }
        assert!(!c.shown().contains("p@ss"));
        let tls = parse_url("rediss+sentinel://h:1/m").expect("parses");
        assert!(tls.tls.is_some());
    }

    #[test]
    fn bad_sentinel_urls_are_refused_without_the_password() {
        for url in [
            "redis+sentinel://u:hunter2@h:1",
            "redis+sentinel://u:hunter2@h/m",
            "redis+sentinel://u:hunter2@h:1/m/x",
            "redis+sentinel://u:hunter2@h:1,/m",
        ] {
            let err = parse_url(url).expect_err("refused");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn cluster_urls_parse() {
        let c = parse_url("rediss+cluster://app:s3cret@127.0.0.1:7000,h2:7001/").expect("parses");
        assert_eq!(c.username.as_deref(), Some("app"));
        assert!(c.tls.is_some());
        assert!(c.is_cluster());
        assert_eq!(c.partitions(), 16);
        assert_eq!(c.clone().with_partitions(3).partitions(), 3);
        assert!(!c.shown().contains("s3cret"));
        match &c.endpoint {
            Endpoint::Cluster { seeds } => assert_eq!(
                seeds,
                &[("127.0.0.1".to_owned(), 7000), ("h2".to_owned(), 7001)]
            ),
            _ => panic!("not a cluster endpoint"),
        }
        let err = parse_url("redis+cluster://u:hunter2@h:1/3").expect_err("db 3 refused");
        assert!(err.to_string().contains("database 0"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(parse_url("redis://h:1").expect("parses").partitions(), 1);
    }

    #[test]
    fn insecure_fragment_is_seen() {
        let c = RedisConfig::from_url("rediss://127.0.0.1:6380/#insecure", None).expect("parses");
        assert!(c.is_insecure());
        let c = RedisConfig::from_url("rediss://127.0.0.1:6380", None).expect("parses");
        assert!(!c.is_insecure());
    }
}
