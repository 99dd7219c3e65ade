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

use crossbeam_channel::{Sender, unbounded};
use jiff::Timestamp;
use redis_tasks_store::SlotInfo;
use redis_tasks_store::Store;
use tracing::{info, warn};

use super::ControlEvent;
use crate::execute::SlotCommand;
use crate::shared::{Shared, SlotView};
use crate::slot::Slot;
use crate::worker_process::WorkerProcess;

/// One slot as the control loop holds it.
#[derive(Debug)]
pub struct SlotHandle {
    /// What is registered in Redis for it.
    pub info: SlotInfo,
    /// Its command channel.
    pub commands: Sender<SlotCommand>,
    /// What it is doing.
    pub view: Arc<Mutex<SlotView>>,
    thread: Option<JoinHandle<()>>,
}

impl SlotHandle {
    /// A copy of what it is doing.
    pub fn view(&self) -> SlotView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Every live slot of this supervisor, and how many are wanted.
#[derive(Debug)]
pub struct SlotSet {
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
    pub fn new(
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
    pub fn start_one(
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
        store.register_slot(&info)?;
        let (commands, receiver) = unbounded();
        let view = Arc::new(Mutex::new(SlotView::default()));
        let slot = Slot {
            id: info.id.clone(),
            shared: Arc::clone(shared),
            store: store.independent()?,
            commands: receiver,
            events: self.events.clone(),
            process,
            view: Arc::clone(&view),
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
    pub fn ended(&mut self, store: &Store, id: &str) {
        if let Some(mut handle) = self.slots.remove(id) {
            if let Some(thread) = handle.thread.take() {
                let _ = thread.join();
            }
            if let Err(e) = store.deregister_slot(id) {
                warn!(slot = %id, "cannot deregister slot: {e}");
            }
        }
    }

    /// Slots that are not on their way out.
    pub fn effective(&self, shared: &Shared) -> usize {
        let claimed = self.slots.values().filter(|h| h.view().retiring).count();
        let pending = shared.retire_requests.load(Ordering::SeqCst);
        self.slots.len().saturating_sub(claimed + pending)
    }

    /// Starts or retires slots until [`SlotSet::desired`] are live.
    pub fn reconcile(&mut self, store: &Store, shared: &Arc<Shared>) {
        let mut effective = self.effective(shared);
        while effective < self.desired {
            if shared
                .retire_requests
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                if let Err(e) = self.start_one(store, shared, None) {
                    warn!("cannot start a slot: {e}");
                    return;
                }
            }
            effective += 1;
        }
        if effective > self.desired {
            let extra = effective - self.desired;
            shared.retire_requests.fetch_add(extra, Ordering::SeqCst);
            info!("{extra} slot(s) will retire as soon as they are free");
            // Wake idle slots waiting out a Redis backoff.
            for handle in self.slots.values() {
                let _ = handle.commands.send(SlotCommand::Wake);
            }
        }
    }

    /// Sends `command` to every slot.
    pub fn broadcast(&self, command: SlotCommand) {
        for handle in self.slots.values() {
            let _ = handle.commands.send(command);
        }
    }

    /// Ids of the live slots.
    pub fn ids(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }
}
