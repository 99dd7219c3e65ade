//! Keeping Redis's picture of the fleet true: heartbeats, the maintenance
//! pass, and recovery of this supervisor's previous incarnation.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks_store::{Store, StoreError};
use tracing::{info, warn};

use super::slots::SlotSet;
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
/// dead slots (not ours) and expire old registry entries.
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
    store.release_lock("maintenance", supervisor_id)?;
    Ok(())
}

/// A supervisor restarted on the same host under the same instance name
/// recovers the slots of its previous incarnation at once, unless that
/// process is still alive (two supervisors sharing an instance name).
pub(super) fn recover_previous_incarnation(
    store: &Store,
    shared: &Shared,
    host: &str,
    supervisor_id: &str,
) -> Result<(), StoreError> {
    let instance = shared.current().config.instance.clone();
    if let Some(previous) = store.supervisor_id(host, &instance)? {
        let slots = store.slots_of_supervisor(&previous)?;
        let infos = store.worker_infos()?;
        for slot in slots {
            let pid = infos.iter().find(|w| w.id == slot).and_then(|w| w.pid);
            let ours = std::process::id();
            if pid.is_some_and(|pid| pid != ours && process_exists(pid)) {
                warn!(
                    slot = %slot,
                    "instance {instance:?} on {host} seems to run already (pid {pid:?}); not recovering its tasks",
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
    store.set_supervisor_id(host, &instance, supervisor_id)?;
    Ok(())
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
