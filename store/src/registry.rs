//! The finished, failed, expired and canceled registries: sorted sets of
//! task ids scored by the time the task ended, and requeueing failed tasks.

use redis::Value;

use super::keys::Keys;
use super::part::Part;
use super::producer::EMPTY_BATCH;
use super::record::text_of;
use super::{Store, StoreError, scripts};
use redis_tasks_protocol::model::TaskRecord;

/// Which registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    /// Tasks that ended with success.
    Finished,
    /// Tasks that ended with a failure.
    Failed,
    /// Tasks whose expiry passed before they started.
    Expired,
    /// Tasks canceled while queued, scheduled or running.
    Canceled,
}

impl RegistryKind {
    /// Every registry, in the order pages and searches list them.
    pub const ALL: [RegistryKind; 4] = [
        RegistryKind::Failed,
        RegistryKind::Finished,
        RegistryKind::Expired,
        RegistryKind::Canceled,
    ];

    /// Its name in lower case, as the key and the status say it.
    pub fn name(self) -> &'static str {
        match self {
            RegistryKind::Finished => "finished",
            RegistryKind::Failed => "failed",
            RegistryKind::Expired => "expired",
            RegistryKind::Canceled => "canceled",
        }
    }
}

/// One of the registries of ended tasks, newest last.
#[derive(Debug, Clone, Copy)]
pub struct Registry<'s> {
    store: &'s Store,
    kind: RegistryKind,
}

/// A task id that [`Store::requeue_failed`] left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The id given.
    pub id: String,
    /// Why it was not requeued.
    pub reason: String,
}

/// What [`Store::requeue_failed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequeueReport {
    /// How many tasks went back to their queue.
    pub requeued: usize,
    /// The ids that were not touched, with the reason.
    pub rejected: Vec<Rejected>,
}

impl Store {
    /// The registry of `kind`.
    pub fn registry(&self, kind: RegistryKind) -> Registry<'_> {
        Registry { store: self, kind }
    }

    /// The registry of finished tasks.
    pub fn finished(&self) -> Registry<'_> {
        Registry {
            store: self,
            kind: RegistryKind::Finished,
        }
    }

    /// The registry of failed tasks.
    pub fn failed(&self) -> Registry<'_> {
        Registry {
            store: self,
            kind: RegistryKind::Failed,
        }
    }

    /// The registry of expired tasks (never run: their expiry passed
    /// before they started, or before their next attempt was due).
    pub fn expired(&self) -> Registry<'_> {
        Registry {
            store: self,
            kind: RegistryKind::Expired,
        }
    }

    /// The registry of canceled tasks (while queued, scheduled or running).
    pub fn canceled(&self) -> Registry<'_> {
        Registry {
            store: self,
            kind: RegistryKind::Canceled,
        }
    }

    /// Puts failed tasks back at the tail of their origin queue with error
    /// and times cleared, in one atomic step. Ids that are not in the failed
    /// registry, or whose record is missing or not `failed`, are reported in
    /// [`RequeueReport::rejected`] and left alone.
    pub fn requeue_failed(&self, ids: &[String]) -> Result<RequeueReport, StoreError> {
        let mut report = RequeueReport::default();
        if ids.is_empty() {
            return Ok(report);
        }
        // Each partition requeues the ids in its failed registry and
        // leaves the others, which the next partition tries.
        let mut left = ids.to_vec();
        self.fenced(|part| {
            let r = part.requeue_failed(&left)?;
            report.requeued += r.requeued;
            left.clear();
            for rejected in r.rejected {
                if rejected.reason == NOT_IN_REGISTRY {
                    left.push(rejected.id);
                } else {
                    report.rejected.push(rejected);
                }
            }
            Ok(left.is_empty())
        })?;
        report.rejected.extend(left.into_iter().map(|id| Rejected {
            id,
            reason: NOT_IN_REGISTRY.to_owned(),
        }));
        // In the order the caller gave, as on one partition.
        report
            .rejected
            .sort_by_key(|r| ids.iter().position(|id| *id == r.id));
        Ok(report)
    }

    /// Requeues every task of the failed registry, a batch at a time (each
    /// batch is atomic); entries that cannot be requeued stay and are
    /// reported.
    pub fn requeue_all_failed(&self) -> Result<RequeueReport, StoreError> {
        let mut total = RequeueReport::default();
        for report in self.each(Part::requeue_all_failed)? {
            total.requeued += report.requeued;
            total.rejected.extend(report.rejected);
        }
        Ok(total)
    }
}

impl Registry<'_> {
    /// Which registry this is.
    pub fn kind(&self) -> RegistryKind {
        self.kind
    }

    /// How many ids it holds.
    pub fn count(&self) -> Result<u64, StoreError> {
        let counts = self.store.each(|p| p.registry_count(self.kind))?;
        Ok(counts.into_iter().sum())
    }

    /// Up to `len` ids from position `offset`, oldest first.
    pub fn ids(&self, offset: usize, len: usize) -> Result<Vec<String>, StoreError> {
        let kind = self.kind;
        self.store
            .merged_range(|k| registry_key(k, kind), offset, len)
    }

    /// The records of up to `len` tasks from position `offset`; a record
    /// that cannot be read is an `Err` in its place.
    pub fn tasks(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<Vec<Result<TaskRecord, StoreError>>, StoreError> {
        let ids = self.ids(offset, len)?;
        self.store.tasks(&ids)
    }

    /// Removes every entry and its task record; returns how many.
    pub fn empty(&self) -> Result<u64, StoreError> {
        let counts = self
            .store
            .each(|p| p.trim_registry(&registry_key(p.keys(), self.kind), "+inf"))?;
        Ok(counts.into_iter().sum())
    }
}

/// The key of the registry of `kind`.
pub(crate) fn registry_key(keys: &Keys, kind: RegistryKind) -> String {
    match kind {
        RegistryKind::Finished => keys.finished(),
        RegistryKind::Failed => keys.failed(),
        RegistryKind::Expired => keys.expired(),
        RegistryKind::Canceled => keys.canceled(),
    }
}

/// The reason `REQUEUE_FAILED` gives for an id its registry does not hold.
const NOT_IN_REGISTRY: &str = "not in the failed registry";

impl Part {
    pub(crate) fn requeue_failed(&self, ids: &[String]) -> Result<RequeueReport, StoreError> {
        let mut report = RequeueReport::default();
        if ids.is_empty() {
            return Ok(report);
        }
        let reply: Vec<Value> = self.run(&[], |c, keys| {
            let mut inv = scripts::REQUEUE_FAILED.prepare_invoke();
            inv.key(keys.failed()).key(keys.queues()).arg(keys.prefix());
            for id in ids {
                inv.arg(id);
            }
            inv.invoke(c)
        })?;
        let mut it = reply.into_iter();
        while let (Some(id), Some(why)) = (it.next(), it.next()) {
            let id = text_of("requeue", id)?;
            let why = text_of("requeue", why)?;
            if why.is_empty() {
                report.requeued += 1;
            } else {
                report.rejected.push(Rejected { id, reason: why });
            }
        }
        Ok(report)
    }

    pub(crate) fn requeue_all_failed(&self) -> Result<RequeueReport, StoreError> {
        let mut total = RequeueReport::default();
        let failed = self.keys().failed();
        let mut offset = 0;
        loop {
            let ids = self.id_range(&failed, "zset", offset, EMPTY_BATCH)?;
            if ids.is_empty() {
                return Ok(total);
            }
            let report = self.requeue_failed(&ids)?;
            offset += report.rejected.len();
            total.requeued += report.requeued;
            total.rejected.extend(report.rejected);
        }
    }

    /// How many ids the registry of `kind` holds.
    fn registry_count(&self, kind: RegistryKind) -> Result<u64, StoreError> {
        let key = registry_key(self.keys(), kind);
        self.read(&[(&key, "zset")], |c, _| {
            redis::cmd("ZCARD").arg(&key).query(c)
        })
    }

    /// Removes entries of the registry at `key` scored below `max` (or all,
    /// for `+inf`) with their records, a batch per step.
    pub(crate) fn trim_registry(&self, key: &str, max: &str) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n: u64 = self.run(&[], |c, keys| {
                scripts::TRIM_REGISTRY
                    .key(key)
                    .arg(keys.prefix())
                    .arg(max)
                    .arg(EMPTY_BATCH)
                    .invoke(c)
            })?;
            total += n;
            if n < EMPTY_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
