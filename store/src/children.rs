//! Tasks a running task asked for that wait for its end: a
//! [`HeldChild`] is checked and given its id when asked for, kept by the
//! supervisor, and written by the script that records the asking task
//! finished ([`Ending::Finished`](crate::Ending::Finished)), in the same
//! step: a task that fails, crashes or is retried never releases them.

use jiff::Timestamp;
use serde::Serialize;

use crate::producer::{check_name, new_task};
use crate::record::time_text;
use crate::{EnqueueOptions, Store, StoreError};

/// A task to enqueue when the task that asked for it finishes.
#[derive(Debug, Clone)]
pub struct HeldChild {
    id: String,
    task: String,
    args: String,
    description: String,
    queue: String,
    options: EnqueueOptions,
}

impl HeldChild {
    /// The id the task will have once written.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The queue it will be enqueued on.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Its fields as the finish script writes them (its time fields from
    /// `now`, the end of the task that asked for it): id, task, args, queue,
    /// description, enqueued_at, run_at, its score, timeout, retry,
    /// expires_at, traceparent.
    fn fields(&self, now: Timestamp, max_timeout: u64) -> Result<[String; 12], StoreError> {
        let (run_at, run_score) = self.options.when_fields(now)?;
        Ok([
            self.id.clone(),
            self.task.clone(),
            self.args.clone(),
            self.queue.clone(),
            self.description.clone(),
            time_text(now),
            run_at,
            run_score,
            self.options.timeout_field(max_timeout)?,
            self.options.retry_field()?,
            self.options.expiry_field(now)?,
            self.options.traceparent_field().to_owned(),
        ])
    }
}

impl Store {
    /// Checks a call of `task` with `args` on `queue` as an enqueue would
    /// (names, the arguments' size, the options) and gives it its id,
    /// without writing anything: the task to release when the asking task
    /// finishes. A uniqueness key is refused: the key's owner is decided at
    /// write time, which for a held task is too late to answer the asker.
    pub fn hold_child<A: Serialize + ?Sized>(
        &self,
        queue: &str,
        task: &str,
        args: &A,
        options: EnqueueOptions,
    ) -> Result<HeldChild, StoreError> {
        check_name("queue", queue)?;
        if options.unique_key().is_some() {
            return Err(StoreError::InvalidOption {
                option: "unique",
                reason: "a uniqueness key is for tasks written at once, not on success".to_owned(),
            });
        }
        options.check()?;
        let opts = &self.zero().opts;
        // The time fields are checked now, with the clock of now; they are
        // computed again at the end.
        options.when_fields(Timestamp::now())?;
        options.timeout_field(opts.max_task_timeout)?;
        options.retry_field()?;
        options.expiry_field(Timestamp::now())?;
        let t = new_task(opts.max_args_bytes, task, args)?;
        Ok(HeldChild {
            id: t.id,
            task: t.task,
            args: t.args,
            description: t.description,
            queue: queue.to_owned(),
            options,
        })
    }
}

/// The `children` argument of the finish scripts: the JSON array of each
/// child's fields at `now` (empty text for none, which costs nothing).
pub(crate) fn encode(
    children: &[HeldChild],
    now: Timestamp,
    max_timeout: u64,
) -> Result<String, StoreError> {
    if children.is_empty() {
        return Ok(String::new());
    }
    let rows = children
        .iter()
        .map(|c| c.fields(now, max_timeout))
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_string(&rows).map_err(StoreError::Args)
}
