//! Progress reports of running tasks: the `progress` field of the task
//! hash (JSON `{"done", "total", "message"}`), written by the supervisor
//! while the task runs and read by `task show` and the dashboard.

use redis_tasks_protocol::Progress;

use crate::part::Part;
use crate::{Store, StoreError, scripts};

impl Store {
    /// Stores `progress` in the record of task `id` while the task runs.
    /// Returns `false`, with nothing changed, when the task is not running.
    pub fn set_progress(&self, id: &str, progress: &Progress) -> Result<bool, StoreError> {
        // The script stores only into a running task's record: the first
        // partition that takes it holds the task.
        self.fenced(|p| p.set_progress(id, progress))
    }

    /// The last progress report of task `id`, if it sent one. A field that
    /// does not read as a report is [`StoreError::Corrupt`].
    pub fn progress(&self, id: &str) -> Result<Option<Progress>, StoreError> {
        self.locate(id)?.progress(id)
    }
}

impl Part {
    pub(crate) fn set_progress(&self, id: &str, progress: &Progress) -> Result<bool, StoreError> {
        let key = self.keys().task(id);
        let json = serde_json::to_string(progress).map_err(|e| StoreError::UnexpectedReply {
            what: "progress",
            detail: e.to_string(),
        })?;
        let stored: i64 = self.run(&[], |c, keys| {
            scripts::SET_PROGRESS
                .key(&key)
                .arg(keys.prefix())
                .arg(&json)
                .invoke(c)
        })?;
        Ok(stored == 1)
    }

    pub(crate) fn progress(&self, id: &str) -> Result<Option<Progress>, StoreError> {
        let key = self.keys().task(id);
        let raw: Option<String> = self.read(&[(&key, "hash")], |c, _| {
            redis::cmd("HGET").arg(&key).arg("progress").query(c)
        })?;
        raw.map(|text| {
            serde_json::from_str::<Progress>(&text)
                .map(Progress::bounded)
                .map_err(|e| StoreError::Corrupt {
                    id: id.to_owned(),
                    field: "progress".to_owned(),
                    reason: e.to_string(),
                })
        })
        .transpose()
    }
}
