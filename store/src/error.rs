//! What can go wrong when talking to the store, as one typed enum.
//!
//! Errors never carry a Redis password: the server is named by its address
//! (`host:port`), and a URL that does not parse is shown with its password
//! replaced by `***`.
//!
//! A variant that wraps an error shows its text in the message and does not
//! return it from `source()` (see "Invariants" in docs/architecture.md), so
//! printing a chain never repeats a cause.

use redis_tasks_protocol::model::TaskStatus;

/// An error from a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Redis URL could not be parsed.
    #[error("invalid redis url {url}: {error}")]
    InvalidUrl {
        /// The URL, with any password masked.
        url: String,
        /// What the Redis client said about it.
        error: redis::RedisError,
    },
    /// No connection to Redis could be opened (refused, timed out, bad
    /// password...).
    #[error("cannot connect to redis at {addr}: {error}")]
    Connect {
        /// The server address (`host:port`).
        addr: String,
        /// What went wrong.
        error: redis::RedisError,
    },
    /// A command failed: the connection dropped or timed out, or the server
    /// answered with an error.
    #[error("redis at {addr} failed: {error}")]
    Redis {
        /// The server address (`host:port`).
        addr: String,
        /// What went wrong.
        error: redis::RedisError,
    },
    /// Redis answered with something this version of the schema does not
    /// expect (a bug, or another program writing under our prefix).
    #[error("unexpected reply from redis to {what}: {detail}")]
    UnexpectedReply {
        /// The operation that got the reply.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A key under our prefix holds a value of another Redis type.
    #[error("redis key {key} holds a {found}, but redis-tasks keeps a {expected} there")]
    WrongType {
        /// The full key name.
        key: String,
        /// The type the schema puts there.
        expected: String,
        /// The type Redis reports.
        found: String,
    },
    /// No task with this id exists.
    #[error("task {id} not found")]
    NotFound {
        /// The task id asked for.
        id: String,
    },
    /// A task record exists but cannot be read: a required field is missing
    /// or a field does not parse.
    #[error("task {id} has a corrupt record: field {field:?}: {reason}")]
    Corrupt {
        /// The task id.
        id: String,
        /// The hash field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only a queued task can be canceled.
    #[error("task {id} cannot be canceled: it is {status}, not queued")]
    NotQueued {
        /// The task id.
        id: String,
        /// Its current status.
        status: TaskStatus,
    },
    /// The task is queued but a worker slot already took it from its queue.
    #[error("task {id} cannot be canceled: a worker has already taken it from its queue")]
    Taken {
        /// The task id.
        id: String,
    },
    /// The JSON text of a task's arguments is over the size limit.
    #[error(
        "task arguments are {size} bytes of JSON, over the limit of {limit} bytes (setting max_args_bytes)"
    )]
    ArgsTooLarge {
        /// Size of the serialised arguments.
        size: u64,
        /// The limit (`max_args_bytes`).
        limit: u64,
    },
    /// A task record a slot took is too large to load: one of its large
    /// fields (or the whole record) is over its limit. Found by the fetch
    /// script before any value is read; the task is failed, not run.
    #[error(
        "task {id}: its {field} is {size} bytes, over {setting} ({limit}); the record was not \
         loaded"
    )]
    RecordTooLarge {
        /// The task id.
        id: String,
        /// The field at fault (`args`, `description`, `meta`, `result`,
        /// or `(whole record)`).
        field: String,
        /// Its size in bytes.
        size: u64,
        /// The limit it is over.
        limit: u64,
        /// The setting the limit comes from.
        setting: &'static str,
    },
    /// A meta update would make the task's `meta` larger than
    /// `max_args_bytes`, which bounds it.
    #[error(
        "task {id}: its meta would be {size} bytes, over max_args_bytes ({limit}), which bounds \
         meta; the update was not stored"
    )]
    MetaTooLarge {
        /// The task id.
        id: String,
        /// The size the merged meta would have.
        size: u64,
        /// The limit (`max_args_bytes`).
        limit: u64,
    },
    /// The task's arguments could not be serialised to JSON.
    #[error("cannot serialise task arguments to json: {0}")]
    Args(serde_json::Error),
    /// The data under the prefix was written with another number of
    /// partitions than this program is set to (`redis_partitions`).
    #[error(
        "the data under prefix {prefix:?} was written with {found} but this program is set to \
         {configured} partition(s) (redis_partitions): set redis_partitions to match, or drain \
         the queues with the old setting before changing it (docs/redis.md, \"Changing the \
         partition count\")"
    )]
    Layout {
        /// The prefix.
        prefix: String,
        /// What the layout marker says (`partitions N`, or a description).
        found: String,
        /// The partition count of this program.
        configured: u16,
    },
    /// A queue or task name that the schema cannot hold.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `queue` or `task`.
        what: &'static str,
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// `finish` was asked to record a status that does not end a task.
    #[error("status {status} does not end a task (expected finished or failed)")]
    NotFinal {
        /// The status given.
        status: TaskStatus,
    },
    /// The key prefix holds data in a format this code did not write (the
    /// Python original's layout, or a marker of another format or version).
    /// Nothing was changed: redis-tasks never alters data it did not write.
    #[error(
        "redis prefix {prefix:?} holds data of another format ({evidence}); \
         redis-tasks-rs leaves it alone: use another prefix (setting \
         `redis_prefix`, environment variable RT_REDIS_PREFIX)"
    )]
    ForeignSchema {
        /// The key prefix.
        prefix: String,
        /// What gave the other format away.
        evidence: String,
    },
    /// A fetched task record was not written by this code (it lacks the
    /// `task` field). The id was put back at the head of its queue and the
    /// record left unchanged.
    #[error(
        "task {id} in queue {queue:?} was not written by redis-tasks-rs (its record {key} \
         has no `task` field); it was left in the queue untouched. Another program \
         (the Python redis-tasks?) uses this prefix: give each its own prefix \
         (setting `redis_prefix`, environment variable RT_REDIS_PREFIX)"
    )]
    ForeignTask {
        /// The task id.
        id: String,
        /// The queue it was taken from and put back into.
        queue: String,
        /// The record's key.
        key: String,
    },
    /// A slot cannot be deregistered while its current-task list holds ids.
    #[error("worker slot {slot} still holds task(s) {ids:?}")]
    SlotBusy {
        /// The slot id.
        slot: String,
        /// The ids in its current-task list.
        ids: Vec<String>,
    },
    /// An enqueue option cannot be stored (a zero timeout, a retry policy
    /// that does not check out).
    #[error("invalid enqueue option {option}: {reason}")]
    InvalidOption {
        /// The option (`timeout`, `retry`...).
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The file named by `redis_password_file` could not be read, or is
    /// empty.
    #[error("cannot read the redis password from {path} (redis_password_file): {error}")]
    PasswordFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why not.
        error: std::io::Error,
    },
    /// The Redis connection settings do not fit together (a sentinel
    /// master without sentinels, TLS files without a `rediss://` URL...).
    #[error("invalid redis connection settings: {problem}")]
    InvalidConfig {
        /// What is wrong, naming the settings.
        problem: String,
    },
    /// A file named by a connection setting (TLS CA, certificate or key)
    /// could not be read.
    #[error("cannot read {path} ({setting}): {error}")]
    ConfigFile {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why not.
        error: std::io::Error,
    },
    /// Durable mode: fewer replicas than `redis_wait_replicas` acknowledged
    /// the command's writes within `redis_wait_timeout_ms`. The command did
    /// run on the master; its effects may be lost if the master fails now.
    #[error(
        "redis at {addr}: only {got} of {wanted} replica(s) acknowledged the write within \
         {timeout_ms} ms (durable mode, redis_wait_replicas); it may be lost on a failover"
    )]
    NotReplicated {
        /// The server.
        addr: String,
        /// Replicas wanted.
        wanted: u32,
        /// Replicas that acknowledged.
        got: u64,
        /// The `WAIT` timeout.
        timeout_ms: u64,
    },
}

impl StoreError {
    /// Whether the error came from the connection or the server's state
    /// (Redis down, unreachable, timed out, restarting or still loading its
    /// data) rather than from the data, so retrying later may help.
    pub fn is_connection_error(&self) -> bool {
        match self {
            StoreError::Connect { .. } | StoreError::NotReplicated { .. } => true,
            StoreError::Redis { error, .. } => {
                error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || matches!(error.code(), Some("READONLY" | "MASTERDOWN"))
                    || matches!(
                        error.retry_method(),
                        redis::RetryMethod::MovedRedirect
                            | redis::RetryMethod::AskRedirect
                            | redis::RetryMethod::Reconnect
                            | redis::RetryMethod::ReconnectFromInitialConnections
                            | redis::RetryMethod::WaitAndRetry
                    )
            }
            _ => false,
        }
    }
}

/// Masks the password of a Redis URL (`redis://user:secret@host` becomes
/// `redis://user:***@host`) so it can appear in messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let masked = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => "***".to_owned(),
    };
    format!("{}{}{}", &url[..rest_start], masked, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::{StoreError, redact_url};

    #[test]
    fn a_wrapped_error_is_in_the_message_and_not_a_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused here");
        let e = StoreError::Connect {
            addr: "127.0.0.1:1".to_owned(),
            error: redis::RedisError::from(io),
        };
        assert_eq!(e.to_string().matches("refused here").count(), 1, "{e}");
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://token@h/1"), "redis://***@h/1");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
