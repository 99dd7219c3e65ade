//! Which part does an operation: the one place that decides.
//!
//! A [`Store`] holds at least one [`Part`] (exactly one, under the plain
//! prefix, when the data is not partitioned); each public method of the
//! store names one of the routing kinds below and calls the work on the
//! part(s) it gives. `partition` says how the data is split.
//!
//! - [`home`](Store::home): the partition of a queue name, uniqueness key
//!   or graph id.
//! - [`zero`](Store::zero): partition 0, for the scheduler's runs, locks
//!   and supervisor records.
//! - [`each`](Store::each) and [`merged_range`](Store::merged_range): every
//!   part, the results merged by the caller or by score.
//! - [`locate`](Store::locate): the part holding a task's record;
//!   [`find`](Store::find): the first part that knows the task.
//! - [`fenced`](Store::fenced): each part in turn until one does the step
//!   (a step fenced on a slot's list, a running task, a registry).
//! - [`by_lease`](Store::by_lease): the partition a fetched task's
//!   [`Lease`] names; [`leased`](Store::leased) is the store pinned there.
//! - [`around`](Store::around) and [`fetch_order`](Store::fetch_order):
//!   every part in the order a reader or a fetching slot visits them.
//!
//! Nothing here remembers where a slot's task came from: a fetched task's
//! [`Lease`] names its partition, and every later write for it goes there.

use crate::keys::Keys;
use crate::part::Part;
use crate::{Lease, Store, StoreError, calls, partition};

impl Store {
    /// The partition of a queue name, uniqueness key or graph id.
    pub(crate) fn home(&self, name: &str) -> &Part {
        &self.parts[partition::of(name, self.parts.len())]
    }

    /// Partition 0: the scheduler's runs, locks, supervisor records and
    /// wake lists live there.
    pub(crate) fn zero(&self) -> &Part {
        &self.parts[0]
    }

    /// Runs `f` on every part, in order.
    pub(crate) fn each<T>(
        &self,
        f: impl FnMut(&Part) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.parts.iter().map(|p| &**p).map(f).collect()
    }

    /// Every part, in order.
    pub(crate) fn parts(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().map(|p| &**p)
    }

    /// The part holding the record of task `id`: the first whose task key
    /// exists, else partition 0 (where the caller's operation then finds
    /// nothing and says so). Asks nothing when there is one part.
    pub(crate) fn locate(&self, id: &str) -> Result<&Part, StoreError> {
        if let [only] = self.parts.as_slice() {
            return Ok(only);
        }
        for part in &self.parts {
            let cmd = calls::task_exists(part.keys(), id);
            let found: bool = part.read(&[], |c, _| cmd.query(c))?;
            if found {
                return Ok(part);
            }
        }
        Ok(self.zero())
    }

    /// The answer of the first part whose `f` does not fail with
    /// [`StoreError::NotFound`] (for task `id`), else that error.
    pub(crate) fn find<T>(
        &self,
        id: &str,
        mut f: impl FnMut(&Part) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for part in &self.parts {
            match f(part) {
                Err(StoreError::NotFound { .. }) => {}
                found => return found,
            }
        }
        Err(StoreError::NotFound { id: id.to_owned() })
    }

    /// Runs a step in each part in turn until one returns true (it returns
    /// false when that part does not hold what the step is fenced on, with
    /// nothing changed): for callers that name a task by slot and id rather
    /// than by its [`Lease`] (recovery of a dead slot, a fetch whose reply
    /// was lost), and for steps fenced on a task's state.
    pub(crate) fn fenced(
        &self,
        mut f: impl FnMut(&Part) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        for part in &self.parts {
            if f(part)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Partition `index` (partition 0 when out of range).
    pub(crate) fn nth(&self, index: usize) -> &Part {
        self.parts.get(index).unwrap_or(&self.parts[0])
    }

    /// The part holding the task of `lease`: the partition it names (the
    /// only part of a store with one).
    pub(crate) fn by_lease(&self, lease: &Lease) -> &Part {
        self.parts
            .iter()
            .find(|p| p.index == lease.partition)
            .unwrap_or(&self.parts[0])
    }

    /// The store that holds the task of `lease`: on partitioned data, one
    /// pinned to its partition (sharing this store's connections), else
    /// this one. Writes for a fetched task go there.
    pub fn leased(&self, lease: &Lease) -> &Store {
        self.pinned.get(lease.partition).unwrap_or(self)
    }

    /// Every part, starting with the home partition of `name` and going on
    /// in turn (how a queue's tasks are listed).
    pub(crate) fn around(&self, name: &str) -> impl Iterator<Item = &Part> {
        let count = self.parts.len();
        let home = partition::of(name, count);
        (0..count).map(move |i| &*self.parts[(home + i) % count])
    }

    /// The order a slot fetching from `queues` tries the parts in: `last`
    /// (the partition of its last lease) first, then the home partitions
    /// of the queues, then the rest; and the part it blocks on (the first
    /// queue's home).
    pub(crate) fn fetch_order(
        &self,
        queues: &[String],
        last: Option<usize>,
    ) -> (Vec<&Part>, &Part) {
        let count = self.parts.len();
        let homes = queues.iter().map(|q| partition::of(q, count));
        let mut order: Vec<usize> = last.filter(|&i| i < count).into_iter().collect();
        for i in homes.chain(0..count) {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        let first = queues.first().map_or(0, |q| partition::of(q, count));
        let order = order.into_iter().map(|i| &*self.parts[i]).collect();
        (order, &self.parts[first])
    }

    /// Up to `len` ids from position `offset` of the sorted set `key`
    /// names, merged over the parts by score (lowest first).
    pub(crate) fn merged_range(
        &self,
        key: impl Fn(&Keys) -> String,
        offset: usize,
        len: usize,
    ) -> Result<Vec<String>, StoreError> {
        if let [only] = self.parts.as_slice() {
            return only.id_range(&key(only.keys()), "zset", offset, len);
        }
        let want = offset.saturating_add(len);
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut all: Vec<(String, f64)> = Vec::new();
        for part in &self.parts {
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
}

#[cfg(test)]
mod tests {
    use crate::{Lease, RedisConfig, Store};

    fn store(partitions: u16) -> Store {
        let config = RedisConfig::from_url("redis://127.0.0.1:9", None)
            .expect("url")
            .with_partitions(partitions);
        Store::with_config(config, "rt").expect("store")
    }

    fn lease(partition: usize) -> Lease {
        Lease {
            slot: "s".to_owned(),
            id: "i".to_owned(),
            queue: "q".to_owned(),
            partition,
            times: None,
        }
    }

    #[test]
    fn unpartitioned_data_is_one_part_under_the_plain_prefix() {
        let store = store(1);
        assert_eq!(store.partition_count(), 1);
        assert_eq!(store.zero().keys().prefix(), "rt");
        assert_eq!(store.home("anything").index, 0);
        assert_eq!(store.by_lease(&lease(5)).index, 0);
        assert!(std::ptr::eq(store.leased(&lease(0)), &store));
        let (order, home) = store.fetch_order(&["a".to_owned()], Some(3));
        assert_eq!(order.iter().map(|p| p.index).collect::<Vec<_>>(), [0]);
        assert_eq!(home.index, 0);
    }

    #[test]
    fn every_kind_picks_a_part_of_partitioned_data() {
        let store = store(3);
        assert_eq!(store.partition_count(), 3);
        for name in ["default", "high", "emails"] {
            assert_eq!(store.home(name).index, store.partition_of(name));
            let around: Vec<usize> = store.around(name).map(|p| p.index).collect();
            assert_eq!(around.len(), 3);
            assert_eq!(around[0], store.partition_of(name));
        }
        for i in 0..3 {
            assert_eq!(store.by_lease(&lease(i)).index, i);
            // The pinned store does every write in the lease's partition.
            let pinned = store.leased(&lease(i));
            assert_eq!(pinned.partition_count(), 1);
            assert_eq!(pinned.by_lease(&lease(i)).index, i);
            assert_eq!(pinned.zero().keys().prefix(), store.key_names(i).prefix());
        }
        let queues = ["default".to_owned(), "high".to_owned()];
        let (order, home) = store.fetch_order(&queues, Some(2));
        let order: Vec<usize> = order.iter().map(|p| p.index).collect();
        assert_eq!(order[0], 2);
        assert_eq!(order.len(), 3);
        assert_eq!(home.index, store.partition_of("default"));
        assert_eq!(store.by_lease(&lease(7)).index, 0);
    }
}
