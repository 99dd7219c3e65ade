//! Reads and actions for operators' views (the dashboard, the admin command
//! line) beyond what producers need: counts of tasks ended in a time window
//! and deleting a failed task.

use jiff::Timestamp;

use crate::record::score;
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
        if self.routed().is_some() {
            let counts = self.each(|p| p.count_ended_between(kind, from, to))?;
            return Ok(counts.into_iter().sum());
        }
        let key = match kind {
            RegistryKind::Finished => self.keys().finished(),
            RegistryKind::Failed => self.keys().failed(),
        };
        let (min, max) = (score(from), format!("({}", score(to)));
        self.read(&[(&key, "zset")], |c, _| {
            redis::cmd("ZCOUNT").arg(&key).arg(&min).arg(&max).query(c)
        })
    }

    /// Deletes a failed task: its entry in the failed registry and its
    /// record, in one step. Returns `false`, with nothing changed, when the
    /// task is not in the failed registry (requeued or deleted meanwhile, or
    /// never failed).
    pub fn delete_failed(&self, id: &str) -> Result<bool, StoreError> {
        if self.routed().is_some() {
            return self.locate(id)?.delete_failed(id);
        }
        let failed = self.keys().failed();
        let deleted: i64 = self.run(&[], |c, keys| {
            scripts::DELETE_FAILED
                .key(&failed)
                .arg(keys.prefix())
                .arg(id)
                .invoke(c)
        })?;
        Ok(deleted == 1)
    }
}
