//! How to reach Redis: one [`RedisConfig`] built from the settings, shared
//! by every program (supervisor, slots, scheduler, producers, the admin
//! CLI), so that all of them follow the same TLS, ACL user, Sentinel and
//! durable-mode settings.
//!
//! - Direct: `redis://`, `rediss://` (TLS through rustls), `unix://`.
//! - Sentinel: `redis+sentinel://[user[:password]@]host:port[,host:port...]/MASTER[/DB]`
//!   (`rediss+sentinel://` for TLS to the master), or the settings
//!   `redis_sentinels` and `redis_sentinel_master` next to a plain
//!   `redis_url` that gives the scheme, credentials and database. Every new
//!   connection asks the sentinels for the current master, so a connection
//!   dropped by a failover is reopened on the new master.
//! - Cluster: `redis+cluster://[user[:password]@]host:port[,host:port...]/`
//!   (`rediss+cluster://` for TLS), or the setting `redis_cluster_nodes`
//!   next to a plain `redis_url`. The data is split into partitions (see
//!   `partition`), each on one hash slot; a partition's connections go to
//!   the master serving its slot, found with `CLUSTER SLOTS` on the seed
//!   nodes when the connection is opened, so a connection dropped by a
//!   failover (or refused with `MOVED`) is reopened on the new master.
//! - Secrets: a password file (`redis_password_file`) is read when the
//!   first store is opened and again by [`reload_password_files`] (SIGHUP);
//!   a file that cannot be read at reload keeps the password in force.
//! - Durable mode: with `redis_wait_replicas = N`, every command that
//!   writes is followed by `WAIT N timeout` (reads go through
//!   `Store::read` and are not), and a command whose effects fewer than N
//!   replicas acknowledged fails with [`StoreError::NotReplicated`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use redis::{
    Client, ClientTlsConfig, Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, TlsCertificates,
};
use redis_tasks_config::Settings;

use crate::error::{StoreError, redact_url};

/// The durable mode: how many replicas must acknowledge each write, and how
/// long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Replicas that must acknowledge (`WAIT numreplicas`).
    pub replicas: u32,
    /// How long one `WAIT` may take.
    pub timeout: Duration,
}

/// Where Redis is.
#[derive(Clone)]
enum Endpoint {
    /// One server.
    Direct(ConnectionAddr),
    /// The master that sentinels name.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
    },
    /// The masters of a Redis Cluster, found through seed nodes.
    Cluster { seeds: Vec<(String, u16)> },
}

/// TLS material, read once when the configuration is built.
#[derive(Clone, Default)]
struct Tls {
    /// PEM of the CA file; none: the system's roots.
    ca: Option<Vec<u8>>,
    /// PEM client certificate and key (mutual TLS).
    client: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any server certificate (testing only).
    insecure: bool,
}

/// How to connect to Redis: the endpoint, TLS, the ACL user and password,
/// and the durable mode. Built once per program from [`Settings`] by
/// [`RedisConfig::from_settings`]; cloned into every store.
#[derive(Clone)]
pub struct RedisConfig {
    endpoint: Endpoint,
    /// TLS when the scheme is `rediss` (or `rediss+sentinel`).
    tls: Option<Tls>,
    db: i64,
    username: Option<String>,
    /// A password from the URL, used when there is no password file.
    url_password: Option<String>,
    password_file: Option<PathBuf>,
    wait: Option<WaitPolicy>,
    /// The address shown in messages (never a password).
    shown: String,
    /// Partitions of the data (`redis_partitions`); 0: the default.
    partitions: u16,
    /// The ACL user on the sentinels (`redis_sentinel_username`).
    sentinel_username: Option<String>,
    /// The sentinels' password file (`redis_sentinel_password_file`).
    sentinel_password_file: Option<PathBuf>,
    /// TLS to the sentinels too (`redis_sentinel_tls`).
    sentinel_tls: bool,
    /// On a Cluster, the hash slot whose master this configuration's
    /// connections go to (one partition's slot); none: any master.
    slot: Option<u16>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.shown)
            .field("tls", &self.tls.is_some())
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("wait", &self.wait)
            .field("partitions", &self.partitions)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

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

    /// Sets the durable mode (`None`: off).
    pub fn with_wait(mut self, wait: Option<WaitPolicy>) -> RedisConfig {
        self.wait = wait;
        self
    }

    /// The durable mode, if on.
    pub fn wait(&self) -> Option<WaitPolicy> {
        self.wait
    }

    /// Sets the number of partitions (0: the default, 1 or 16 on a
    /// Cluster).
    pub fn with_partitions(mut self, partitions: u16) -> RedisConfig {
        self.partitions = partitions;
        self
    }

    /// How many partitions the data is split into: `redis_partitions`, or
    /// 16 on a Cluster and 1 elsewhere.
    pub fn partitions(&self) -> u16 {
        match self.partitions {
            0 if self.is_cluster() => crate::partition::CLUSTER_DEFAULT_PARTITIONS,
            0 => 1,
            n => n,
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.endpoint, Endpoint::Cluster { .. })
    }

    /// The same configuration, its connections going to the master of hash
    /// slot `slot` (on a Cluster; elsewhere there is one master anyway).
    pub(crate) fn for_slot(&self, slot: u16) -> RedisConfig {
        let mut config = self.clone();
        config.slot = Some(slot);
        config
    }

    /// The server (or the sentinels and master name), safe to show.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether TLS certificate checks are off (`redis_tls_insecure`).
    pub fn is_insecure(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.insecure)
    }

    fn password(&self) -> Result<Option<String>, StoreError> {
        match &self.password_file {
            Some(path) => current_password(path).map(Some),
            None => Ok(self.url_password.clone()),
        }
    }

    fn redis_info(&self) -> Result<RedisConnectionInfo, StoreError> {
        let mut info = RedisConnectionInfo::default();
        if let Some(username) = &self.username {
            info = info.set_username(username);
        }
        if let Some(password) = self.password()? {
            info = info.set_password(password);
        }
        Ok(info.set_db(self.db))
    }

    fn certificates(tls: &Tls) -> Option<TlsCertificates> {
        if tls.ca.is_none() && tls.client.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: tls.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: tls.ca.clone(),
        })
    }

    /// Opens a new connection to the server (for Sentinel: to the master
    /// the sentinels name now).
    pub(crate) fn connect(&self, timeout: Duration) -> Result<Connection, StoreError> {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if self.is_insecure() && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "redis_tls_insecure: the certificate of {} is NOT checked (any server can pose as it); use this for testing only",
                self.shown
            );
        }
        match &self.endpoint {
            Endpoint::Direct(addr) => self.open(addr.clone(), timeout),
            Endpoint::Sentinel { sentinels, master } => {
                self.open_sentinel_master(sentinels, master, timeout)
            }
            Endpoint::Cluster { seeds } => self.open_cluster_master(seeds, timeout),
        }
    }

    /// A connection to the master serving this configuration's slot, as
    /// the first seed node that answers `CLUSTER SLOTS` says.
    fn open_cluster_master(
        &self,
        seeds: &[(String, u16)],
        timeout: Duration,
    ) -> Result<Connection, StoreError> {
        let Some(slot) = self.slot else {
            return self.open_first_seed(seeds, timeout).map(|(conn, _)| conn);
        };
        let map = self.cluster_map(timeout)?;
        let Some((host, port)) = map.master(slot) else {
            return Err(
                self.cluster_error(format!("no master serves hash slot {slot} (cluster down?)"))
            );
        };
        self.open_node(host, port, timeout)
    }

    /// A connection to the first seed node that answers, and its address.
    fn open_first_seed(
        &self,
        seeds: &[(String, u16)],
        timeout: Duration,
    ) -> Result<(Connection, (String, u16)), StoreError> {
        let mut problems = Vec::new();
        for (host, port) in seeds {
            match self.open(ConnectionAddr::Tcp(host.clone(), *port), timeout) {
                Ok(conn) => return Ok((conn, (host.clone(), *port))),
                Err(e) => problems.push(format!("seed {host}:{port}: {e}")),
            }
        }
        Err(self.cluster_error(format!("no seed node answers: {}", problems.join("; "))))
    }

    fn cluster_error(&self, text: String) -> StoreError {
        StoreError::Connect {
            addr: self.shown.clone(),
            error: RedisError::from(std::io::Error::other(text)),
        }
    }

    /// Which master serves which hash slots, as the first seed node that
    /// answers `CLUSTER SLOTS` says (on a Cluster; an error elsewhere).
    pub(crate) fn cluster_map(&self, timeout: Duration) -> Result<SlotMap, StoreError> {
        let Endpoint::Cluster { seeds } = &self.endpoint else {
            return Err(self.cluster_error("not a cluster".to_owned()));
        };
        let mut problems = Vec::new();
        for (host, port) in seeds {
            let mut seed = match self.open(ConnectionAddr::Tcp(host.clone(), *port), timeout) {
                Ok(conn) => conn,
                Err(e) => {
                    problems.push(format!("seed {host}:{port}: {e}"));
                    continue;
                }
            };
            let _ = seed.set_read_timeout(Some(timeout));
            match redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<redis::Value>(&mut seed)
            {
                Ok(reply) => match SlotMap::parse(&reply) {
                    Some(map) => return Ok(map),
                    None => problems.push(format!(
                        "seed {host}:{port} answered CLUSTER SLOTS with no slots (cluster down?)"
                    )),
                },
                Err(e) if e.code() == Some("NOPERM") => {
                    return Err(StoreError::InvalidConfig {
                        problem: format!(
                            "the redis user may not run CLUSTER SLOTS ({e}); on a Cluster, the \
                             ACL user needs +cluster|slots (docs/redis.md)"
                        ),
                    });
                }
                Err(e) => problems.push(format!("CLUSTER SLOTS on seed {host}:{port}: {e}")),
            }
        }
        Err(self.cluster_error(format!(
            "no cluster seed gave the slot map: {}",
            problems.join("; ")
        )))
    }

    /// A connection to one node (a master found in the slot map), with
    /// this configuration's TLS and credentials.
    pub(crate) fn open_node(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Connection, StoreError> {
        self.open(ConnectionAddr::Tcp(host.to_owned(), port), timeout)
            .map_err(|e| {
                self.cluster_error(format!("master {host}:{port} of slot {:?}: {e}", self.slot))
            })
    }

    /// The hash slot this configuration's connections go to, if set.
    pub(crate) fn slot(&self) -> Option<u16> {
        self.slot
    }

    fn open(&self, addr: ConnectionAddr, timeout: Duration) -> Result<Connection, StoreError> {
        let connect_error = |error| StoreError::Connect {
            addr: self.shown.clone(),
            error,
        };
        let client = self
            .client(addr, self.redis_info()?, true)
            .map_err(connect_error)?;
        client
            .get_connection_with_timeout(timeout)
            .map_err(|error| connect_error(explain_tls(error)))
    }

    /// A client for `addr` logging in with `login`; over TLS (with the TLS
    /// settings) when `tls` is asked for and the URL uses TLS.
    fn client(
        &self,
        addr: ConnectionAddr,
        login: RedisConnectionInfo,
        tls: bool,
    ) -> Result<Client, RedisError> {
        let tls = self.tls.as_ref().filter(|_| tls);
        let addr = match (addr, tls) {
            (
                ConnectionAddr::TcpTls { host, port, .. } | ConnectionAddr::Tcp(host, port),
                Some(tls),
            ) => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: tls.insecure,
                tls_params: None,
            },
            (other, _) => other,
        };
        let info = addr_info(addr)?.set_redis_settings(login);
        match tls.and_then(Self::certificates) {
            Some(certs) if !self.is_insecure() => Client::build_with_tls(info, certs),
            _ => Client::open(info),
        }
    }

    /// Asks each sentinel in turn for `master`'s address and connects to
    /// it, checking (`ROLE`) that it is a master: a sentinel that does not
    /// answer within `timeout`, does not know the name, or names a server
    /// that is no master (a stale view) is skipped. Every step has the
    /// connect timeout, so a hung sentinel cannot hang the caller.
    fn open_sentinel_master(
        &self,
        sentinels: &[(String, u16)],
        master: &str,
        timeout: Duration,
    ) -> Result<Connection, StoreError> {
        let mut problems = Vec::new();
        for (host, port) in sentinels {
            let (master_host, master_port) = match self.ask_sentinel(host, *port, master, timeout) {
                Ok(addr) => addr,
                Err(why) => {
                    problems.push(format!("sentinel {host}:{port}: {why}"));
                    continue;
                }
            };
            let mut conn = match self.open(
                ConnectionAddr::Tcp(master_host.clone(), master_port),
                timeout,
            ) {
                Ok(conn) => conn,
                Err(e) => {
                    problems.push(format!(
                        "master {master_host}:{master_port} named by sentinel {host}:{port}: {e}"
                    ));
                    continue;
                }
            };
            let _ = conn.set_read_timeout(Some(timeout));
            match redis::cmd("ROLE").query::<redis::Value>(&mut conn) {
                Ok(redis::Value::Array(items))
                    if matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master") =>
                {
                    return Ok(conn);
                }
                Ok(_) => problems.push(format!(
                    "{master_host}:{master_port} named by sentinel {host}:{port} is not a master (yet)"
                )),
                Err(e) if e.code() == Some("NOPERM") => {
                    return Err(StoreError::InvalidConfig {
                        problem: format!(
                            "the redis user may not run ROLE on the master named by the sentinels \
                             ({e}); with Sentinel, the ACL user needs +role (docs/redis.md)"
                        ),
                    });
                }
                Err(e) => problems.push(format!(
                    "ROLE on {master_host}:{master_port} named by sentinel {host}:{port}: {e}"
                )),
            }
        }
        Err(StoreError::Connect {
            addr: self.shown.clone(),
            error: RedisError::from(std::io::Error::other(format!(
                "no sentinel named a reachable master: {}",
                problems.join("; ")
            ))),
        })
    }

    /// After a command: in durable mode, waits until enough replicas
    /// acknowledged every write made on `conn` so far.
    pub(crate) fn wait_replicas(&self, conn: &mut Connection) -> Result<(), WaitError> {
        let Some(wait) = self.wait else {
            return Ok(());
        };
        let millis = u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX);
        let acked: i64 = redis::cmd("WAIT")
            .arg(wait.replicas)
            .arg(millis)
            .query(conn)
            .map_err(WaitError::Redis)?;
        if acked < i64::from(wait.replicas) {
            return Err(WaitError::Short {
                wanted: wait.replicas,
                got: acked.max(0).unsigned_abs(),
            });
        }
        Ok(())
    }
}

/// Why a `WAIT` after a command failed.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// The `WAIT` itself failed.
    Redis(RedisError),
    /// Fewer replicas than wanted acknowledged in time.
    Short { wanted: u32, got: u64 },
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME master` on one sentinel, within
/// `timeout` for the connection and the reply.
impl RedisConfig {
    /// The address of `master` as the sentinel at `host:port` names it,
    /// logging in with the sentinel credentials when set.
    fn ask_sentinel(
        &self,
        host: &str,
        port: u16,
        master: &str,
        timeout: Duration,
    ) -> Result<(String, u16), String> {
        let mut auth = RedisConnectionInfo::default();
        if let Some(user) = &self.sentinel_username {
            auth = auth.set_username(user);
        }
        if let Some(path) = &self.sentinel_password_file {
            auth = auth.set_password(current_password(path).map_err(|e| e.to_string())?);
        }
        let client = self
            .client(
                ConnectionAddr::Tcp(host.to_owned(), port),
                auth,
                self.sentinel_tls,
            )
            .map_err(|e| e.to_string())?;
        ask_sentinel_with(client, master, timeout).map_err(|e| {
            if e.contains("NOAUTH") || e.contains("WRONGPASS") || e.contains("AuthenticationFailed")
            {
                format!("{e} (check redis_sentinel_username and redis_sentinel_password_file)")
            } else {
                e
            }
        })
    }
}

fn ask_sentinel_with(
    client: Client,
    master: &str,
    timeout: Duration,
) -> Result<(String, u16), String> {
    let mut conn = client
        .get_connection_with_timeout(timeout)
        .map_err(|e| explain_tls(e).to_string())?;
    conn.set_read_timeout(Some(timeout))
        .and_then(|()| conn.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let reply: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master)
        .query(&mut conn)
        .map_err(|e| e.to_string())?;
    let (ip, port) = reply.ok_or_else(|| format!("does not know a master named {master:?}"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("named the master with a bad port {port:?}"))?;
    Ok((ip, port))
}

/// Which master serves which hash slots: ranges `(first, last, host,
/// port)` from a `CLUSTER SLOTS` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlotMap(Vec<(u16, u16, String, u16)>);

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply: entries of `[start, end, [host, port,
    /// id, ...], replicas...]`. None when it names no slot.
    fn parse(reply: &redis::Value) -> Option<SlotMap> {
        use redis::Value;
        let int = |v: &Value| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        let Value::Array(ranges) = reply else {
            return None;
        };
        let map: Vec<_> = ranges
            .iter()
            .filter_map(|range| {
                let Value::Array(items) = range else {
                    return None;
                };
                let start = u16::try_from(int(items.first()?)?).ok()?;
                let end = u16::try_from(int(items.get(1)?)?).ok()?;
                let Value::Array(node) = items.get(2)? else {
                    return None;
                };
                let host = text(node.first()?)?;
                let port = u16::try_from(int(node.get(1)?)?).ok()?;
                Some((start, end, host, port))
            })
            .collect();
        (!map.is_empty()).then_some(SlotMap(map))
    }

    /// The master serving `slot`.
    pub(crate) fn master(&self, slot: u16) -> Option<(&str, u16)> {
        self.0
            .iter()
            .find(|(start, end, _, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, host, port)| (host.as_str(), *port))
    }
}

fn addr_info(addr: ConnectionAddr) -> Result<ConnectionInfo, RedisError> {
    addr.into_connection_info()
}

/// A rustls error about the server's certificate, said in our terms.
fn explain_tls(error: RedisError) -> RedisError {
    let text = error.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        Some(
            "TLS: the server's certificate is not signed by a trusted CA \
             (check redis_tls_ca_file)",
        )
    } else if text.contains("NotValidForName") {
        Some("TLS: the server's certificate does not name the host in redis_url")
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        Some(
            "TLS: the server requires a client certificate (redis_tls_cert_file, redis_tls_key_file)",
        )
    } else {
        None
    };
    match hint {
        Some(hint) => RedisError::from(std::io::Error::other(format!("{hint}: {text}"))),
        None => error,
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

fn read_file(path: &Path, setting: &'static str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|error| StoreError::ConfigFile {
        setting,
        path: path.to_path_buf(),
        error,
    })
}

/// Passwords read from password files in this process, by file.
fn passwords() -> &'static Mutex<BTreeMap<PathBuf, String>> {
    static PASSWORDS: OnceLock<Mutex<BTreeMap<PathBuf, String>>> = OnceLock::new();
    PASSWORDS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The password in force for `path`: read at first use, then kept until
/// [`reload_password_files`].
fn current_password(path: &Path) -> Result<String, StoreError> {
    let mut map = passwords()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(password) = map.get(path) {
        return Ok(password.clone());
    }
    let password = crate::read_password(path)?;
    map.insert(path.to_path_buf(), password.clone());
    Ok(password)
}

/// Reads every password file this process uses again (SIGHUP). A file
/// that cannot be read keeps its old password in force; the errors are
/// returned so that the caller can log them. Connections already open stay
/// open; new ones use the new password.
pub fn reload_password_files() -> Vec<StoreError> {
    let mut map = passwords()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut errors = Vec::new();
    for (path, password) in map.iter_mut() {
        match crate::read_password(path) {
            Ok(new) => *password = new,
            Err(e) => errors.push(e),
        }
    }
    errors
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
    fn the_master_of_a_slot_is_read_from_cluster_slots() {
        use redis::Value;
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node(7001)]),
        ]);
        let map = SlotMap::parse(&reply).expect("a map");
        assert_eq!(map.master(0), Some(("127.0.0.1", 7000)));
        assert_eq!(map.master(5461), Some(("127.0.0.1", 7001)));
        assert_eq!(SlotMap::parse(&Value::Array(vec![])), None);
    }

    #[test]
    fn insecure_fragment_is_seen() {
        let c = RedisConfig::from_url("rediss://127.0.0.1:6380/#insecure", None).expect("parses");
        assert!(c.is_insecure());
        let c = RedisConfig::from_url("rediss://127.0.0.1:6380", None).expect("parses");
        assert!(!c.is_insecure());
    }
}
