//! A task's own output (what it wrote to stdout and stderr, as much as its
//! supervisor kept), stored next to its record for as long as the
//! registries keep ended tasks.

use crate::fetch::Lease;
use crate::part::Part;
use crate::{Store, StoreError};

impl Store {
    /// Stores `output` as the output of the task of `lease`, replacing what
    /// an earlier run stored, to expire after `expiring_registries_ttl`.
    /// One `SET` in the task's partition; callers skip it for a run that
    /// wrote nothing.
    pub fn save_output(&self, lease: &Lease, output: &[u8]) -> Result<(), StoreError> {
        self.by_lease(lease).save_output(&lease.id, output)
    }

    /// The output stored for task `id` (`None`: no run of it wrote
    /// anything, or what it wrote has expired). A task without a record
    /// is [`StoreError::NotFound`].
    pub fn task_output(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.locate(id)?.task_output(id)
    }
}

impl Part {
    pub(crate) fn save_output(&self, id: &str, output: &[u8]) -> Result<(), StoreError> {
        let ttl = self.registry_ttl().max(1);
        let key = self.keys().output(id);
        self.run(&[], |c, _| {
            redis::cmd("SET")
                .arg(&key)
                .arg(output)
                .arg("EX")
                .arg(ttl)
                .query::<()>(c)
        })
    }

    pub(crate) fn task_output(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.keys().output(id);
        let (exists, output): (bool, Option<Vec<u8>>) =
            self.read(&[(key.as_str(), "string")], |c, keys| {
                redis::pipe()
                    .cmd("EXISTS")
                    .arg(keys.task(id))
                    .cmd("GET")
                    .arg(&key)
                    .query(c)
            })?;
        if !exists {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        Ok(output)
    }
}
