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
//!
//! # Layout
//!
//! - this file: [`RedisConfig`] (where Redis is, TLS, credentials) and
//!   opening a connection;
//! - `url`: reading the URL and the settings into a configuration;
//! - `sentinel`: finding the master through the sentinels;
//! - `cluster`: the hash-slot map of a Cluster and its masters;
//! - `secrets`: password files (read, kept, reloaded) and the permission
//!   check of every secret file;
//! - `wait`: the durable mode's `WAIT` after each write.

mod cluster;
mod secrets;
mod sentinel;
mod url;
mod wait;

pub(crate) use cluster::SlotMap;
pub use secrets::{check_secret_file, reload_password_files, secret_file_problem};
pub(crate) use wait::WaitError;
pub use wait::WaitPolicy;

use std::path::PathBuf;
use std::time::Duration;

use redis::{
    Client, ClientTlsConfig, Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, TlsCertificates,
};

use crate::error::StoreError;
use secrets::current_password;

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
        self.warn_if_insecure();
        match &self.endpoint {
            Endpoint::Direct(addr) => self.open(addr.clone(), timeout),
            Endpoint::Sentinel { sentinels, master } => {
                self.open_sentinel_master(sentinels, master, timeout)
            }
            Endpoint::Cluster { seeds } => self.open_cluster_master(seeds, timeout),
        }
    }

    /// Warns once per process that TLS certificates are not checked.
    fn warn_if_insecure(&self) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if self.is_insecure() && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "redis_tls_insecure: the certificate of {} is NOT checked (any server can pose as it); use this for testing only",
                self.shown
            );
        }
    }

    /// A client for the async producer, with the same TLS, user and
    /// password (read now, from the password file if there is one) as
    /// [`connect`](Self::connect): to `node` (a master of a Cluster, from
    /// [`cluster_map`](Self::cluster_map)) when given, else to the server.
    /// With Sentinel it asks the sentinels for the master now and checks
    /// it is one, as `connect` does: that blocks (each step within
    /// `timeout`), so call it off the async runtime's threads there
    /// ([`is_sentinel`](Self::is_sentinel)).
    #[cfg(feature = "async")]
    pub(crate) fn async_client(
        &self,
        node: Option<&(String, u16)>,
        timeout: Duration,
    ) -> Result<Client, StoreError> {
        let addr = match (&self.endpoint, node) {
            (_, Some((host, port))) => ConnectionAddr::Tcp(host.clone(), *port),
            (Endpoint::Direct(addr), None) => addr.clone(),
            (Endpoint::Sentinel { sentinels, master }, None) => {
                let (_checked, (host, port)) =
                    self.find_sentinel_master(sentinels, master, timeout)?;
                ConnectionAddr::Tcp(host, port)
            }
            (Endpoint::Cluster { .. }, None) => {
                // The caller routes by hash slot (`cluster_map`).
                return Err(StoreError::InvalidConfig {
                    problem: format!(
                        "a connection to a Redis Cluster goes to the master of a hash slot ({})",
                        self.shown
                    ),
                });
            }
        };
        self.warn_if_insecure();
        self.client(addr, self.redis_info()?, true)
            .map_err(|error| StoreError::Connect {
                addr: self.shown.clone(),
                error,
            })
    }

    /// Whether the master is found through sentinels.
    #[cfg(feature = "async")]
    pub(crate) fn is_sentinel(&self) -> bool {
        matches!(self.endpoint, Endpoint::Sentinel { .. })
    }

    /// A connection error of the async producer, said like the sync
    /// one's (a TLS refusal explained).
    #[cfg(feature = "async")]
    pub(crate) fn connect_error(&self, error: RedisError) -> StoreError {
        StoreError::Connect {
            addr: self.shown.clone(),
            error: explain_tls(error),
        }
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
