//! Keeping Redis's picture of the fleet true: heartbeats, the maintenance
//! pass, and recovery of this supervisor's previous incarnation.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks_store::{Incarnation, Store, StoreError};
use tracing::{info, warn};

use super::slots::SlotSet;
use crate::liveness;
use crate::recovery::recover_slot;
use crate::shared::Shared;

/// Heartbeats every live slot; registers again any slot Redis forgot
/// (Redis restarted without its data, or someone flushed it).
pub(super) fn heartbeat(store: &Store, shared: &Shared, slots: &SlotSet) {
    match store.heartbeat(&slots.ids(), Timestamp::now()) {
        Ok(vanished) => {
            shared.note_redis_ok();
            for id in vanished {
                if let Some(handle) = slots.slots.get(&id) {
                    warn!(slot = %id, "slot missing from Redis (data lost?); registering it again");
                    if let Err(e) = store.register_slot(&handle.info) {
                        warn!(slot = %id, "cannot register slot again: {e}");
                    }
                }
            }
        }
        Err(e) => {
            shared.note_redis_error(&e);
            warn!("heartbeat failed: {e}");
        }
    }
}

/// One maintenance pass, unless another supervisor holds the lock: recover
/// dead slots (not ours), expire old registry entries, free uniqueness
/// keys whose task vanished.
pub(super) fn maintenance(
    store: &Store,
    shared: &Shared,
    supervisor_id: &str,
    own: &[String],
) -> Result<(), StoreError> {
    let current = shared.current();
    let settings = &current.config.settings;
    let lock_ttl = Duration::from_secs(settings.maintenance_freq.max(30));
    if !store.try_lock("maintenance", supervisor_id, lock_ttl)? {
        return Ok(());
    }
    let now = Timestamp::now();
    let dead = store.dead_slots(now, current.config.heartbeat_timeout())?;
    for slot in dead.iter().filter(|s| !own.contains(s)) {
        let done = recover_slot(store, shared, slot)?;
        warn!(
            slot = %slot,
            "dead slot recovered: {} task(s) requeued, {} given an outcome",
            done.requeued, done.settled
        );
    }
    let ttl = Duration::from_secs(settings.expiring_registries_ttl);
    store.expire_registries(now, ttl)?;
    store.expire_dead_slots(now, settings.dead_worker_expiry())?;
    let freed = store.free_stale_unique_keys()?;
    if freed > 0 {
        info!("freed {freed} uniqueness key(s) whose task vanished");
    }
    store.release_lock("maintenance", supervisor_id)?;
    Ok(())
}

/// A supervisor restarted on the same host under the same instance name
/// recovers the slots of its previous incarnation at once, unless that
/// process is still alive (two supervisors sharing an instance name).
///
/// Claims the schema first ([`Store::claim_schema`]): this is a
/// supervisor's first write, and a prefix holding data of another format
/// stops the start-up here with [`StoreError::ForeignSchema`].
///
/// The previous incarnation is alive only if its recorded process (pid,
/// start time, boot id) still runs and is not a zombie; a pid alone is not
/// trusted, since it may be a zombie or reused. A mapping from an older
/// version without that identity falls back to "some non-zombie process
/// has the slot's pid", erring on the side of not recovering.
pub(super) fn recover_previous_incarnation(
    store: &Store,
    shared: &Shared,
    host: &str,
    supervisor_id: &str,
) -> Result<(), StoreError> {
    store.claim_schema()?;
    let instance = shared.current().config.instance.clone();
    let me = match liveness::current() {
        Ok(me) => Some(me),
        Err(e) => {
            warn!("cannot read this process's identity ({e}); a restart will not recover at once");
            None
        }
    };
    if let Some(previous) = store.incarnation(host, &instance)? {
        let slots = store.slots_of_supervisor(&previous.supervisor_id)?;
        let infos = if previous.process.is_none() {
            store.worker_infos()?
        } else {
            Vec::new()
        };
        for slot in slots {
            let alive = match &previous.process {
                Some(p) => me.as_ref() != Some(p) && liveness::is_alive(p),
                None => infos
                    .iter()
                    .find(|w| w.id == slot)
                    .and_then(|w| w.pid)
                    .is_some_and(|pid| pid != std::process::id() && liveness::pid_runs(pid)),
            };
            if alive {
                warn!(
                    slot = %slot,
                    "instance {instance:?} on {host} runs already ({:?}); not recovering its tasks",
                    previous.process,
                );
                continue;
            }
            let done = recover_slot(store, shared, &slot)?;
            info!(
                slot = %slot,
                "recovered the previous incarnation's slot: {} task(s) requeued, {} given an outcome",
                done.requeued, done.settled
            );
        }
    }
    store.set_incarnation(
        host,
        &instance,
        &Incarnation {
            supervisor_id: supervisor_id.to_owned(),
            process: me,
        },
    )?;
    Ok(())
}
