//! Reading a task's result and waiting for a task to end.
//!
//! Waiting does not poll: every final end of a task (finished, failed,
//! canceled) pushes one element onto `P:done:<id>` in the same script that
//! records it, and a waiter blocks on that list with `BLMOVE` from the list
//! to itself, which returns at once when the element is there and leaves it
//! in place for every other waiter. The list expires with the registries.
//! Because the element stays, a task that ends between the waiter's first
//! look at the record and its blocking call is not missed.

use std::time::{Duration, Instant};

use redis::Value;

use super::calls;
use super::{Store, StoreError};
use crate::part::Part;
use redis_tasks_protocol::model::TaskRecord;

impl Store {
    /// Waits until task `id` has ended (finished, failed or canceled) and
    /// returns its record, result included; `Ok(None)` when `timeout`
    /// passed first. A task that already ended is returned at once.
    ///
    /// Blocks one Redis connection of this store (the one
    /// [`fetch`](Store::fetch) uses) for the wait; use
    /// [`independent`](Store::independent) to wait from several threads.
    pub fn wait_for_end(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.locate(id)?.wait_for_end(id, timeout)
    }
}

impl Part {
    pub(crate) fn wait_for_end(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<TaskRecord>, StoreError> {
        // A timeout too large for the clock is as good as none.
        let deadline = Instant::now().checked_add(timeout);
        let done = self.keys().done(id);
        loop {
            let record = self.task(id)?;
            if record.has_ended() {
                return Ok(Some(record));
            }
            let Some(left) = calls::block_for(deadline) else {
                return Ok(None);
            };
            let cmd = calls::await_done(self.keys(), id, left);
            let woke: Value = self.run_blocking(left, &[(&done, "list")], |c, _| cmd.query(c))?;
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            if woke == Value::Nil && out_of_time {
                // Timed out; one last look in case it ended just now.
                let record = self.task(id)?;
                return Ok(record.has_ended().then_some(record));
            }
            // Woken: the loop reads the record again. A task requeued from
            // the failed registry since has no done element any more, so
            // the wait goes on for its new run.
        }
    }
}
