//! What the maintenance pass needs: fleet-wide locks, finding dead slots,
//! taking over their tasks, and expiring old registry entries.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::record::score;
use super::{Store, StoreError, scripts};
use crate::part::Part;

/// What [`Store::reclaim_slot`] did with a dead slot's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Ids that had not started: back at the front of their queue.
    pub requeued: Vec<String>,
    /// Ids that were running: still in the dead slot's list, waiting for the
    /// caller to record their outcome (`finish` or `requeue_interrupted`
    /// with the dead slot's id, which fences against the slot itself).
    pub running: Vec<String>,
}

impl Store {
    /// Takes the lock `name` for `token` with an expiry of `ttl` (at least
    /// 1 ms); returns whether `token` holds it now. The holder calling again
    /// extends the expiry.
    pub fn try_lock(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.zero().try_lock(name, token, ttl)
    }

    /// Releases the lock `name` if `token` holds it; returns whether it did.
    pub fn release_lock(&self, name: &str, token: &str) -> Result<bool, StoreError> {
        self.zero().release_lock(name, token)
    }

    /// Slots whose last heartbeat is at least `heartbeat_timeout` before
    /// `now`.
    pub fn dead_slots(
        &self,
        now: Timestamp,
        heartbeat_timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        // Slots are registered in every partition: a slot dead in any.
        let mut all = self
            .each(|p| p.dead_slots(now, heartbeat_timeout))?
            .concat();
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Starts the recovery of the dead slot `dead`, in one atomic step:
    /// ids in its list that had not started go back to the FRONT of their
    /// queue; running ones stay in its list and are returned, for the caller
    /// to record their outcome with the dead slot's id and then
    /// [`deregister_slot`](Store::deregister_slot) it.
    ///
    /// A slot whose heartbeat is later than `now` turned out to be alive:
    /// nothing is touched and the result is empty.
    pub fn reclaim_slot(&self, dead: &str, now: Timestamp) -> Result<Reclaimed, StoreError> {
        let mut all = Reclaimed::default();
        for r in self.each(|p| p.reclaim_slot(dead, now))? {
            all.requeued.extend(r.requeued);
            all.running.extend(r.running);
        }
        Ok(all)
    }

    /// Removes finished, failed, expired and canceled entries that ended more than `ttl`
    /// before `now`, with their task records (a batch per atomic step);
    /// returns how many.
    pub fn expire_registries(&self, now: Timestamp, ttl: Duration) -> Result<u64, StoreError> {
        Ok(self
            .each(|p| p.expire_registries(now, ttl))?
            .into_iter()
            .sum())
    }
}

impl Part {
    pub(crate) fn try_lock(
        &self,
        name: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ms = ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let got: i64 = self.run(&[], |c, keys| {
            scripts::TRY_LOCK
                .key(keys.lock(name))
                .arg(keys.prefix())
                .arg(token)
                .arg(ms)
                .invoke(c)
        })?;
        Ok(got == 1)
    }

    pub(crate) fn release_lock(&self, name: &str, token: &str) -> Result<bool, StoreError> {
        let done: i64 = self.run(&[], |c, keys| {
            scripts::RELEASE_LOCK
                .key(keys.lock(name))
                .arg(keys.prefix())
                .arg(token)
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    pub(crate) fn dead_slots(
        &self,
        now: Timestamp,
        heartbeat_timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let limit = before(now, heartbeat_timeout);
        let key = self.keys().workers();
        self.read(&[(&key, "zset")], |c, _| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(score(limit))
                .query(c)
        })
    }

    pub(crate) fn reclaim_slot(&self, dead: &str, now: Timestamp) -> Result<Reclaimed, StoreError> {
        let reply: Option<(Vec<String>, Vec<String>)> = self.run(&[], |c, keys| {
            scripts::RECLAIM
                .key(keys.worker_task(dead))
                .key(keys.workers())
                .key(keys.queues())
                .arg(keys.prefix())
                .arg(dead)
                .arg(score(now))
                .invoke(c)
        })?;
        Ok(reply
            .map(|(requeued, running)| Reclaimed { requeued, running })
            .unwrap_or_default())
    }

    pub(crate) fn expire_registries(
        &self,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<u64, StoreError> {
        let limit = score(before(now, ttl));
        let finished = self.trim_registry(&self.keys().finished(), &limit)?;
        let failed = self.trim_registry(&self.keys().failed(), &limit)?;
        let expired = self.trim_registry(&self.keys().expired(), &limit)?;
        let canceled = self.trim_registry(&self.keys().canceled(), &limit)?;
        Ok(finished + failed + expired + canceled)
    }
}

/// `now - d`, saturating at the earliest timestamp.
fn before(now: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    now.checked_sub(d).unwrap_or(Timestamp::MIN)
}
