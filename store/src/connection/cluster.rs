//! A Redis Cluster: which master serves which hash slot (`CLUSTER SLOTS`
//! on the seed nodes), and connections to the master of a partition's
//! slot, found again at each new connection so that a failover (or a
//! `MOVED`) is followed.

use std::time::Duration;

use redis::{Connection, ConnectionAddr, RedisError};

use super::{Endpoint, RedisConfig};
use crate::error::StoreError;

impl RedisConfig {
    /// A connection to the master serving this configuration's slot, as
    /// the first seed node that answers `CLUSTER SLOTS` says.
    pub(super) fn open_cluster_master(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
