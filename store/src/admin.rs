//! Reads and actions for operators' views (the dashboard, the admin command
//! line, the metrics) beyond what producers need: counts of tasks ended in
//! a time window, every queue's length at once, and deleting a failed task.

use jiff::Timestamp;

use crate::part::Part;
use crate::record::score;
use crate::registry::registry_key;
use crate::{RegistryKind, Store, StoreError, scripts};

impl Store {
    /// How many tasks of registry `kind` ended at or after `from` and
    /// before `to` (its entries are scored by end time).
    pub fn count_ended_between(
        &self,
        kind: RegistryKind,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<u64, StoreError> {
        let counts = self.each(|p| p.count_ended_between(kind, from, to))?;
        Ok(counts.into_iter().sum())
    }

    /// Deletes a failed task: its entry in the failed registry and its
    /// record, in one step. Returns `false`, with nothing changed, when the
    /// task is not in the failed registry (requeued or deleted meanwhile, or
    /// never failed).
    pub fn delete_failed(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_ended(RegistryKind::Failed, id)
    }

    /// Deletes a task of the registry of `kind` (its entry and its record)
    /// in one step, as [`delete_failed`](Store::delete_failed) does for
    /// the failed one; `false`, with nothing changed, when the registry
    /// does not hold it.
    pub fn delete_ended(&self, kind: RegistryKind, id: &str) -> Result<bool, StoreError> {
        Ok(self.locate(id)?.delete_ended(kind, &[id.to_owned()])? == 1)
    }

    /// Deletes failed tasks as [`delete_failed`](Store::delete_failed)
    /// does, a batch per step; returns how many were deleted (ids not in
    /// the failed registry are left alone).
    pub fn delete_failed_many(&self, ids: &[String]) -> Result<u64, StoreError> {
        let mut total = 0;
        for batch in ids.chunks(crate::producer::EMPTY_BATCH) {
            total += self
                .each(|p| p.delete_ended(RegistryKind::Failed, batch))?
                .into_iter()
                .sum::<u64>();
        }
        Ok(total)
    }

    /// Every queue's name and length, with pipelined `LLEN`s (one round
    /// trip per thousand queues and partition, not one per queue): what a
    /// metrics scrape reads, whatever number of names producers put in the
    /// queue set.
    pub fn queue_lengths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut sums = std::collections::BTreeMap::<String, u64>::new();
        for (name, len) in self.each(Part::queue_lengths)?.into_iter().flatten() {
            let sum = sums.entry(name).or_default();
            *sum = sum.saturating_add(len);
        }
        Ok(sums.into_iter().collect())
    }
}

/// Queue lengths read per pipeline (bounds the reply held at once).
const LENGTHS_BATCH: usize = 1000;

impl Part {
    pub(crate) fn count_ended_between(
        &self,
        kind: RegistryKind,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<u64, StoreError> {
        let key = registry_key(self.keys(), kind);
        let (min, max) = (score(from), format!("({}", score(to)));
        self.read(&[(&key, "zset")], |c, _| {
            redis::cmd("ZCOUNT").arg(&key).arg(&min).arg(&max).query(c)
        })
    }

    /// Deletes those of `ids` that are in this partition's registry of
    /// `kind`.
    fn delete_ended(&self, kind: RegistryKind, ids: &[String]) -> Result<u64, StoreError> {
        let registry = registry_key(self.keys(), kind);
        self.run(&[], |c, keys| {
            let mut inv = scripts::DELETE_ENDED.prepare_invoke();
            inv.key(&registry).arg(keys.prefix());
            for id in ids {
                inv.arg(id);
            }
            inv.invoke(c)
        })
    }

    pub(crate) fn queue_lengths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let names = self.queues()?;
        let mut out = Vec::with_capacity(names.len());
        for batch in names.chunks(LENGTHS_BATCH) {
            let lengths: Vec<u64> = self.read(&[], |c, keys| {
                let mut pipe = redis::pipe();
                for name in batch {
                    pipe.cmd("LLEN").arg(keys.queue(name));
                }
                pipe.query(c)
            })?;
            out.extend(batch.iter().cloned().zip(lengths));
        }
        Ok(out)
    }
}
