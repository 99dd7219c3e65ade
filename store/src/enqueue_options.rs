//! Options of one enqueue: [`EnqueueOptions`], and what an enqueue with
//! options did: [`Enqueued`].

use super::StoreError;

/// The longest uniqueness key accepted, in bytes.
pub const MAX_UNIQUE_KEY_BYTES: usize = 512;

/// Options for [`Queue::enqueue_with`](crate::Queue::enqueue_with), built
/// with methods that take and return the value:
///
/// ```
/// use redis_tasks_store::EnqueueOptions;
/// let options = EnqueueOptions::new().unique("import:42");
/// assert_eq!(options.unique_key(), Some("import:42"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    unique: Option<String>,
}

impl EnqueueOptions {
    /// No options: a plain enqueue.
    pub fn new() -> Self {
        EnqueueOptions::default()
    }

    /// A uniqueness key: while a task enqueued with the same key is
    /// queued, scheduled or running, enqueueing again writes nothing and
    /// returns that task's id. The key is freed when that task ends for
    /// good (finished, failed, canceled). Any text of 1 to 512 bytes
    /// without control characters, e.g. `import:42`.
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique = Some(key.into());
        self
    }

    /// The uniqueness key, if any.
    pub fn unique_key(&self) -> Option<&str> {
        self.unique.as_deref()
    }

    /// Refuses options the schema cannot hold.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let Some(key) = &self.unique else {
            return Ok(());
        };
        let reason = if key.is_empty() {
            Some("it is empty")
        } else if key.len() > MAX_UNIQUE_KEY_BYTES {
            Some("it is longer than 512 bytes")
        } else if key.chars().any(char::is_control) {
            Some("it contains a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StoreError::InvalidName {
                what: "uniqueness key",
                name: key.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// What an enqueue with options did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new task was written; its id.
    New(String),
    /// A live task already held the uniqueness key: nothing was written;
    /// the id of that task.
    Existing(String),
}

impl Enqueued {
    /// The task's id, new or existing.
    pub fn id(&self) -> &str {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }

    /// The task's id, new or existing.
    pub fn into_id(self) -> String {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }

    /// Whether a new task was written.
    pub fn is_new(&self) -> bool {
        matches!(self, Enqueued::New(_))
    }
}
