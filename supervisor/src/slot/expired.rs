//! The tasks this slot's fetches found past their expiry: the fetch
//! ended each as `expired` in Redis before it started (it never reached a
//! worker process); here each is shown to `process_outcome`, counted and
//! logged, once.

use redis_tasks_store::ExpiredTask;
use tracing::{info, warn};

use super::Slot;
use crate::outcome::report_expired;
use crate::shared::Current;

impl Slot {
    /// Reports the tasks the store's last fetches ended as expired.
    pub(super) fn report_expired(&self, current: &Current) {
        for ExpiredTask {
            id, queue, record, ..
        } in self.store.take_expired()
        {
            let slot = self.id.as_str();
            match record {
                Ok(record) => {
                    let known = self
                        .shared
                        .registry
                        .get(&record.task)
                        .is_some()
                        .then_some(record.task.as_str());
                    self.shared.metrics.task_expired(&queue, known);
                    report_expired(&record, &current.chain);
                    let at = record
                        .expires_at
                        .map_or_else(|| "-".to_owned(), |t| t.to_string());
                    info!(task = %id, name = %record.task, queue, slot, outcome = "expired", "{} expired at {at} before it started; it was not run", record.task);
                }
                Err(e) => {
                    // In the registry all the same; only its note is bad.
                    self.shared.metrics.task_expired(&queue, None);
                    warn!(task = %id, queue, slot, outcome = "expired", "a task expired before it started; its record was not loaded or cannot be read ({e}), so process_outcome does not see it");
                }
            }
        }
    }
}
