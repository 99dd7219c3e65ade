//! The durable mode (`redis_wait_replicas`): after each command that
//! writes, `WAIT N timeout`; fewer acknowledgements than N fail the
//! command with `StoreError::NotReplicated`.

use std::time::Duration;

use redis::{Cmd, Connection, RedisError};

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
        let Some((wait, cmd)) = self.wait_cmd() else {
            return Ok(());
        };
        let acked: i64 = cmd.query(conn).map_err(WaitError::Redis)?;
        wait.check(acked)
    }

    /// In durable mode, the policy and the `WAIT` command sent after each
    /// write.
    pub(crate) fn wait_cmd(&self) -> Option<(WaitPolicy, Cmd)> {
        let wait = self.wait?;
        let millis = u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wait.replicas).arg(millis);
        Some((wait, cmd))
    }
}

impl WaitPolicy {
    /// Whether `acked` replicas (the reply of `WAIT`) are enough.
    pub(crate) fn check(&self, acked: i64) -> Result<(), WaitError> {
        if acked < i64::from(self.replicas) {
            return Err(WaitError::Short {
                wanted: self.replicas,
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
