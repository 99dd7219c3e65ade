//! The set of slots: starting them, retiring them, and reconciling their
//! number with the number wanted.
//!
//! SIGTTIN and SIGTTOU only change [`SlotSet::desired`]; [`SlotSet::reconcile`]
//! closes the gap. A slot too many is retired through a pending retirement
//! that the first slot to be free claims: an idle slot within half a second,
//! otherwise the first busy one to finish its task. No running task is ever
//! interrupted to scale down.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use jiff::Timestamp;
use redis_tasks_store::SlotInfo;
use redis_tasks_store::Store;
use tracing::{info, warn};

use super::ControlEvent;
use crate::bell::{self, RingingSender};
use crate::execute::SlotCommand;
use crate::shared::{Shared, SlotView};
use crate::slot::Slot;
use crate::worker_process::WorkerProcess;

/// One slot as the control loop holds it.
#[derive(Debug)]
pub(super) struct SlotHandle {
    /// What is registered in Redis for it.
    pub info: SlotInfo,
    /// Its command channel (rings the slot awake while it waits on a
    /// task's worker process).
    pub commands: RingingSender<SlotCommand>,
    /// What it is doing.
    pub view: Arc<Mutex<SlotView>>,
    thread: Option<JoinHandle<()>>,
}

impl SlotHandle {
    /// A copy of what it is doing.
    pub(super) fn view(&self) -> SlotView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Every live slot of this supervisor, and how many are wanted.
#[derive(Debug)]
pub(super) struct SlotSet {
    /// Live slots by id.
    pub slots: BTreeMap<String, SlotHandle>,
    /// How many slots are wanted.
    pub desired: usize,
    next_index: usize,
    supervisor_id: String,
    host: String,
    events: Sender<ControlEvent>,
}

impl SlotSet {
    /// An empty set for supervisor `supervisor_id`.
    pub(super) fn new(
        supervisor_id: &str,
        host: &str,
        desired: usize,
        events: Sender<ControlEvent>,
    ) -> Self {
        SlotSet {
            slots: BTreeMap::new(),
            desired: desired.max(1),
            next_index: 0,
            supervisor_id: supervisor_id.to_owned(),
            host: host.to_owned(),
            events,
        }
    }

    /// Registers and starts one slot, optionally with a worker process
    /// already started.
    pub(super) fn start_one(
        &mut self,
        store: &Store,
        shared: &Arc<Shared>,
        process: Option<WorkerProcess>,
    ) -> Result<(), redis_tasks_store::StoreError> {
        let index = self.next_index;
        self.next_index += 1;
        let current = shared.current();
        let info = SlotInfo {
            id: format!("{}-{index}", self.supervisor_id),
            description: current.config.description.clone(),
            queues: current.config.queues.clone(),
            supervisor: self.supervisor_id.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            started_at: Timestamp::now(),
        };
        let (commands, receiver) =
            bell::channel(None).map_err(|e| redis_tasks_store::StoreError::UnexpectedReply {
                what: "create a slot's command channel",
                detail: e.to_string(),
            })?;
        store.register_slot(&info)?;
        let view = Arc::new(Mutex::new(SlotView {
            pid: process.as_ref().map(WorkerProcess::pid),
            ..SlotView::default()
        }));
        let slot = Slot {
            id: info.id.clone(),
            index,
            shared: Arc::clone(shared),
            store: store.independent()?,
            commands: receiver,
            events: self.events.clone(),
            process,
            spare: crate::worker_process::Spare::new(),
            view: Arc::clone(&view),
            next: None,
            last: None,
            pending: None,
            reading_ahead: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("slot-{index}"))
            .spawn(move || slot.run());
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                let _ = store.deregister_slot(&info.id);
                return Err(redis_tasks_store::StoreError::UnexpectedReply {
                    what: "start a slot thread",
                    detail: e.to_string(),
                });
            }
        };
        self.slots.insert(
            info.id.clone(),
            SlotHandle {
                info,
                commands,
                view,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// Forgets a slot whose thread ended and deregisters it.
    pub(super) fn ended(&mut self, store: &Store, id: &str) {
        if let Some(mut handle) = self.slots.remove(id) {
            if let Some(thread) = handle.thread.take() {
                let _ = thread.join();
            }
            if let Err(e) = store.deregister_slot(id) {
                warn!(slot = %id, "cannot deregister slot: {e}");
            }
        }
    }

    /// Starts or retires slots until [`SlotSet::desired`] are live.
    pub(crate) fn reconcile(&mut self, store: &Store, shared: &Arc<Shared>) {
        let claimed = self.slots.values().filter(|h| h.view().retiring).count();
        let pending = shared.retire_requests.load(Ordering::SeqCst);
        let gap = Gap::between(self.desired, self.slots.len(), claimed, pending);
        for _ in 0..gap.cancel {
            // Taking back a pending retirement is claiming it ourselves; a
            // slot may have claimed it meanwhile, then start one instead.
            if !shared.claim_retirement()
                && let Err(e) = self.start_one(store, shared, None)
            {
                warn!("cannot start a slot: {e}");
                return;
            }
        }
        for _ in 0..gap.start {
            if let Err(e) = self.start_one(store, shared, None) {
                warn!("cannot start a slot: {e}");
                return;
            }
        }
        if gap.retire > 0 {
            shared
                .retire_requests
                .fetch_add(gap.retire, Ordering::SeqCst);
            info!(
                "{} slot(s) will retire as soon as they are free",
                gap.retire
            );
            // Wake idle slots waiting out a Redis backoff.
            self.broadcast(SlotCommand::Wake);
        }
    }

    /// Sends `command` to every slot.
    pub(super) fn broadcast(&self, command: SlotCommand) {
        for handle in self.slots.values() {
            let _ = handle.commands.send(command.clone());
        }
    }

    /// Ids of the live slots.
    pub(super) fn ids(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }
}

/// What closes the gap between the slots wanted and the slots there are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gap {
    /// Pending retirements to take back.
    pub cancel: usize,
    /// Slots to start.
    pub start: usize,
    /// Retirements to ask for.
    pub retire: usize,
}

impl Gap {
    /// `live` slots run, `claimed` of them are retiring, and `pending`
    /// retirements wait for a slot to claim them; `desired` are wanted.
    /// A missing slot takes back a pending retirement before a new one is
    /// started; a slot too many is retired when it is free.
    pub(crate) fn between(desired: usize, live: usize, claimed: usize, pending: usize) -> Gap {
        let effective = live.saturating_sub(claimed + pending);
        if effective < desired {
            let missing = desired - effective;
            let cancel = missing.min(pending);
            Gap {
                cancel,
                start: missing - cancel,
                retire: 0,
            }
        } else {
            Gap {
                retire: effective - desired,
                ..Gap::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Gap;

    #[test]
    fn missing_slots_take_back_pending_retirements_first() {
        assert_eq!(
            Gap::between(4, 2, 0, 0),
            Gap {
                start: 2,
                ..Gap::default()
            }
        );
        // 4 live, 2 asked to retire, 3 wanted again: take one back.
        assert_eq!(
            Gap::between(3, 4, 0, 2),
            Gap {
                cancel: 1,
                ..Gap::default()
            }
        );
        assert_eq!(
            Gap::between(5, 4, 0, 2),
            Gap {
                cancel: 2,
                start: 1,
                retire: 0
            }
        );
    }

    #[test]
    fn extra_slots_retire_and_claimed_ones_do_not_count() {
        assert_eq!(
            Gap::between(1, 3, 0, 0),
            Gap {
                retire: 2,
                ..Gap::default()
            }
        );
        // One slot is already on its way out: it is not live any more.
        assert_eq!(Gap::between(2, 3, 1, 0), Gap::default());
        assert_eq!(
            Gap::between(3, 3, 1, 0),
            Gap {
                start: 1,
                ..Gap::default()
            }
        );
    }
}
