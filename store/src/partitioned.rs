//! Routing the public operations of a [`Store`] over the partitions of
//! partitioned data (`partition` says how data is split), and the layout
//! marker that keeps programs with different partition counts apart.
//!
//! The root store of partitioned data works on partition 0 itself and
//! holds a store per partition. Each public method starts by asking
//! [`Store::routed`]; on a root it sends the work to the right partition
//! (or to each and merges), on a partition store or unpartitioned data it
//! does the work itself.

use std::sync::Arc;

use redis::Connection;

use crate::keys::Keys;
use crate::{Store, StoreError, partition};

/// The stores of every partition. Nothing here remembers where a slot's
/// task came from: a fetched task's [`Lease`](crate::Lease) names its
/// partition, and every later write for it goes there.
pub(crate) struct Partitions {
    stores: Vec<Store>,
}

/// The value of the layout marker `P:layout` for `count` partitions.
fn marker(count: u16) -> String {
    format!("partitions {count}")
}

impl Store {
    /// Builds (again) the partition stores of a root, after an option
    /// changed or for an independent copy.
    pub(crate) fn rebuild_partitions(&mut self) {
        let count = self.config.partitions();
        if count <= 1 {
            self.partitions = None;
            return;
        }
        let cluster = self.config.is_cluster();
        let stores = (0..count)
            .map(|index| {
                let keys = Keys::new(&partition::prefix(&self.base_prefix, index, count, cluster));
                let config = self.config.for_slot(partition::key_slot(keys.prefix()));
                self.sibling(keys, config)
            })
            .collect();
        self.partitions = Some(Arc::new(Partitions { stores }));
    }

    /// The partition stores when this is the root of partitioned data.
    pub(crate) fn routed(&self) -> Option<&[Store]> {
        self.partitions.as_deref().map(|p| &p.stores[..])
    }

    /// Every partition (this store alone when the data is not partitioned
    /// or this is a partition store).
    pub(crate) fn parts(&self) -> &[Store] {
        self.routed().unwrap_or(std::slice::from_ref(self))
    }

    /// The partition of a queue name, uniqueness key or graph id.
    pub(crate) fn home(&self, name: &str) -> &Store {
        let parts = self.parts();
        &parts[partition::of(name, parts.len())]
    }

    /// Runs `f` on every partition, in order.
    pub(crate) fn each<T>(
        &self,
        mut f: impl FnMut(&Store) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.parts().iter().map(&mut f).collect()
    }

    /// The partition holding the record of task `id`: the first whose
    /// task key exists, else partition 0 (where the caller's operation
    /// then finds nothing and says so).
    pub(crate) fn locate(&self, id: &str) -> Result<&Store, StoreError> {
        let Some(parts) = self.routed() else {
            return Ok(self);
        };
        for part in parts {
            let key = part.keys().task(id);
            let found: bool = part.read(&[], |c, _| redis::cmd("EXISTS").arg(&key).query(c))?;
            if found {
                return Ok(part);
            }
        }
        Ok(&parts[0])
    }

    /// Runs a step fenced on `slot`'s list (it returns false when the slot
    /// does not hold the task there, with nothing changed) in each
    /// partition until one holds it: for callers that name a task by slot
    /// and id rather than by its [`Lease`](crate::Lease) (recovery of a
    /// dead slot, a fetch whose reply was lost).
    pub(crate) fn fenced(
        &self,
        mut f: impl FnMut(&Store) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        for part in self.parts() {
            if f(part)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Up to `len` ids from position `offset` of the sorted set `key`
    /// names, merged over the partitions by score (lowest first).
    pub(crate) fn merged_range(
        &self,
        key: impl Fn(&Keys) -> String,
        offset: usize,
        len: usize,
    ) -> Result<Vec<String>, StoreError> {
        let want = offset.saturating_add(len);
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut all: Vec<(String, f64)> = Vec::new();
        for part in self.parts() {
            let k = key(part.keys());
            let some: Vec<(String, f64)> = part.read(&[(&k, "zset")], |c, _| {
                redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(want - 1)
                    .arg("WITHSCORES")
                    .query(c)
            })?;
            all.extend(some);
        }
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(all
            .into_iter()
            .skip(offset)
            .take(len)
            .map(|(id, _)| id)
            .collect())
    }

    /// Checks (once per process and prefix) that the data under the prefix
    /// was written with this store's partition count, and marks fresh data
    /// with it. A single server holding data of the unpartitioned layout
    /// counts as one partition.
    pub(crate) fn check_layout(&self, conn: &mut Connection) -> Result<(), StoreError> {
        let count = self.config.partitions();
        let key = format!("{}:layout", self.base_prefix);
        let mut own;
        let conn = if self.config.is_cluster() {
            own = self.connect_for_key(&key)?;
            &mut own
        } else {
            conn
        };
        let get = |conn: &mut Connection| -> Result<Option<String>, StoreError> {
            redis::cmd("GET")
                .arg(&key)
                .query(conn)
                .map_err(|e| self.redis_error(e))
        };
        let mismatch = |found: String| StoreError::Layout {
            prefix: self.base_prefix.clone(),
            found,
            configured: count,
        };
        let mut found = get(conn)?;
        // On a Cluster even one partition has tagged keys (not today's
        // layout), so it is marked too: else a program set to another
        // count would take the prefix for fresh.
        let marked = count > 1 || self.config.is_cluster();
        if found.is_none() && marked {
            if !self.config.is_cluster() {
                let old: bool = redis::cmd("EXISTS")
                    .arg(format!("{}:schema", self.base_prefix))
                    .query(conn)
                    .map_err(|e| self.redis_error(e))?;
                if old {
                    return Err(mismatch("the unpartitioned layout".to_owned()));
                }
            }
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(marker(count))
                .arg("NX")
                .query(conn)
                .map_err(|e| self.redis_error(e))?;
            found = get(conn)?;
        }
        match found {
            None if !marked => {}
            Some(value) if value == marker(count) => {}
            Some(value) => return Err(mismatch(value)),
            None => return Err(mismatch("nothing".to_owned())),
        }
        let _ = self.layout.set(());
        Ok(())
    }
}
