//! The durable mode (`redis_wait_replicas`): after each command that
//! writes, `WAIT N timeout`; fewer acknowledgements than N fail the
//! command with `StoreError::NotReplicated`.

use std::time::Duration;

use redis::{Connection, RedisError};

use super::RedisConfig;

/// The durable mode: how many replicas must acknowledge each write, and how
/// long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Replicas that must acknowledge (`WAIT numreplicas`).
    pub replicas: u32,
    /// How long one `WAIT` may take.
    pub timeout: Duration,
}

impl RedisConfig {
    /// After a command: in durable mode, waits until enough replicas
    /// acknowledged every write made on `conn` so far.
    pub(crate) fn wait_replicas(&self, conn: &mut Connection) -> Result<(), WaitError> {
        let Some(wait) = self.wait else {
            return Ok(());
        };
        let millis = u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX);
        let acked: i64 = redis::cmd("WAIT")
            .arg(wait.replicas)
            .arg(millis)
            .query(conn)
            .map_err(WaitError::Redis)?;
        if acked < i64::from(wait.replicas) {
            return Err(WaitError::Short {
                wanted: wait.replicas,
                got: acked.max(0).unsigned_abs(),
            });
        }
        Ok(())
    }
}

/// Why a `WAIT` after a command failed.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// The `WAIT` itself failed.
    Redis(RedisError),
    /// Fewer replicas than wanted acknowledged in time.
    Short { wanted: u32, got: u64 },
}
