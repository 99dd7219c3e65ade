//! Redis Sentinel: each new connection asks the sentinels in turn for the
//! current master and checks (`ROLE`) that it is one, every step within
//! the connect timeout, so a hung sentinel cannot hang the caller.

use std::time::Duration;

use redis::{Client, Connection, ConnectionAddr, RedisConnectionInfo, RedisError};

use super::secrets::current_password;
use super::{RedisConfig, explain_tls};
use crate::error::StoreError;

impl RedisConfig {
    /// Asks each sentinel in turn for `master`'s address and connects to
    /// it, checking (`ROLE`) that it is a master: a sentinel that does not
    /// answer within `timeout`, does not know the name, or names a server
    /// that is no master (a stale view) is skipped. Every step has the
    /// connect timeout, so a hung sentinel cannot hang the caller.
    pub(super) fn open_sentinel_master(
        &self,
        sentinels: &[(String, u16)],
        master: &str,
        timeout: Duration,
    ) -> Result<Connection, StoreError> {
        self.find_sentinel_master(sentinels, master, timeout)
            .map(|(conn, _)| conn)
    }

    /// Like [`open_sentinel_master`](Self::open_sentinel_master), with the
    /// master's address (host and port).
    pub(super) fn find_sentinel_master(
        &self,
        sentinels: &[(String, u16)],
        master: &str,
        timeout: Duration,
    ) -> Result<(Connection, (String, u16)), StoreError> {
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
                    return Ok((conn, (master_host, master_port)));
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

/// `SENTINEL GET-MASTER-ADDR-BY-NAME master` on one sentinel, within
/// `timeout` for the connection and the reply.
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
