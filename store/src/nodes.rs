//! Connections to the masters of a Redis Cluster, shared by the partitions
//! of one store: a partition's commands go to the master serving its hash
//! slot, and partitions on the same master use the same connection. So a
//! store holds at most two connections per master (one for quick commands,
//! one for blocking waits), however many partitions there are.
//!
//! The slot map comes from `CLUSTER SLOTS` on a seed node and is kept until
//! a command fails with a connection error or `MOVED` (a failover or a
//! reshard), when it is asked for again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Connection;

use crate::StoreError;
use crate::connection::{RedisConfig, SlotMap};

/// A connection slot: empty until first used, emptied when it breaks.
pub(crate) type Cell = Arc<Mutex<Option<Connection>>>;

/// A master's address.
pub(crate) type Node = (String, u16);

/// The slot map and the connections of one store, by master.
#[derive(Default)]
pub(crate) struct Nodes {
    map: Mutex<Option<SlotMap>>,
    quick: Mutex<HashMap<Node, Cell>>,
    blocking: Mutex<HashMap<Node, Cell>>,
}

impl Nodes {
    /// The connection cell of the master serving `slot` (quick or
    /// blocking), and that master's address.
    pub(crate) fn cell(
        &self,
        config: &RedisConfig,
        slot: u16,
        timeout: Duration,
        blocking: bool,
    ) -> Result<(Cell, Node), StoreError> {
        let node = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            if map.is_none() {
                *map = Some(config.cluster_map(timeout)?);
            }
            map.as_ref()
                .and_then(|m| m.master(slot))
                .map(|(host, port)| (host.to_owned(), port))
        };
        let Some(node) = node else {
            self.forget_map();
            return Err(StoreError::Connect {
                addr: config.shown().to_owned(),
                error: redis::RedisError::from(std::io::Error::other(format!(
                    "no master serves hash slot {slot} (cluster down?)"
                ))),
            });
        };
        let cells = if blocking {
            &self.blocking
        } else {
            &self.quick
        };
        let mut cells = cells.lock().unwrap_or_else(PoisonError::into_inner);
        let cell = Arc::clone(cells.entry(node.clone()).or_default());
        Ok((cell, node))
    }

    /// Drops the slot map, so that the next command asks for it again.
    pub(crate) fn forget_map(&self) {
        *self.map.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
