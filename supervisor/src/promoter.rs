//! The promoter thread: moves due delayed tasks to their queue, and hands
//! cancel requests to the slot running the task.
//!
//! Every supervisor runs one, with a Redis connection of its own, so a
//! busy control loop cannot make a due task late. Each pass is one script
//! call ([`Store::promote_due`]), atomic in Redis, so many supervisors
//! racing (and restarts) promote each task exactly once. Between passes
//! the thread sleeps until the next task is due, at most [`POLL`], so a
//! task enqueued with a short delay by another process is seen within
//! that time; with idle slots blocked on their queue, a promoted task
//! starts at once.
//!
//! The same pass reads the cancel requests of running tasks
//! ([`Store::cancel_requests`]); a request for one of this supervisor's
//! slots goes to the control loop, which passes it to that slot. The
//! thread sleeps in a `BLPOP` on its wake list, which a cancel request for
//! one of its tasks pokes, so such a request is seen at once.
//!
//! An operator's command for this supervisor (`redis-tasks supervisor
//! quiet|stop|scale`, or the dashboard) is queued in Redis and pokes the
//! same wake list: the thread takes the commands when woken (and every
//! [`COMMANDS_EVERY`] in case a poke was lost) and hands them to the
//! control loop, which acts as on the matching signal.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use jiff::Timestamp;
use redis_tasks_store::Store;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::control::ControlEvent;

/// The longest sleep between two passes.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How often queued supervisor commands are read without a poke.
pub(crate) const COMMANDS_EVERY: Duration = Duration::from_secs(2);

/// How many due tasks one script call moves (a bigger backlog takes more
/// calls, back to back).
const BATCH: usize = 200;

/// How long before a cancel request still pending is passed on again (the
/// slot may have been between two tasks).
const RESEND: Duration = Duration::from_secs(1);

/// The running promoter thread.
#[derive(Debug)]
pub(crate) struct Promoter {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Promoter {
    /// Starts the thread for the slots of `supervisor_id`.
    pub(crate) fn start(
        store: Store,
        supervisor_id: &str,
        events: Sender<ControlEvent>,
    ) -> std::io::Result<Promoter> {
        let (stop, stopped) = bounded(1);
        let state = State {
            store,
            supervisor_id: supervisor_id.to_owned(),
            own_prefix: format!("{supervisor_id}-"),
            events,
            sent: HashMap::new(),
            cancels_failing: false,
            commands_read: None,
        };
        let thread = std::thread::Builder::new()
            .name("promoter".to_owned())
            .spawn(move || state.run(&stopped))?;
        Ok(Promoter {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (at most one Redis call and one
    /// [`POLL`] wait).
    pub(crate) fn finish(mut self) {
        let _ = self.stop.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    store: Store,
    /// This supervisor's id (its wake list's name).
    supervisor_id: String,
    /// Slot ids of this supervisor start with this.
    own_prefix: String,
    events: Sender<ControlEvent>,
    /// Cancel requests passed on, and when.
    sent: HashMap<String, Instant>,
    /// Reading the cancel requests failed last time (already logged).
    cancels_failing: bool,
    /// When the queued supervisor commands were last read.
    commands_read: Option<Instant>,
}

impl State {
    fn run(mut self, stopped: &Receiver<()>) {
        let mut backoff = Backoff::new();
        loop {
            let wait = match self.pass() {
                Ok(wait) => {
                    if backoff.failures() > 0 {
                        info!("promoter: Redis reachable again");
                    }
                    backoff.reset();
                    // Sleeps on Redis, so that a cancel request for one of
                    // our tasks wakes us at once.
                    match self.store.wait_for_wake(&self.supervisor_id, wait) {
                        Ok(woken) => {
                            self.pass_on_commands(woken);
                            Duration::ZERO
                        }
                        Err(e) => {
                            debug!("promoter: waiting on Redis failed ({e})");
                            wait
                        }
                    }
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    if backoff.failures() <= 1 {
                        warn!("promoter: cannot promote delayed tasks ({e}); retrying in {wait:?}");
                    }
                    wait
                }
            };
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// One pass; returns how long to sleep before the next one.
    fn pass(&mut self) -> Result<Duration, redis_tasks_store::StoreError> {
        let mut moved = 0;
        let promoted = loop {
            let promoted = self.store.promote_due(Timestamp::now(), BATCH)?;
            moved += promoted.moved;
            if promoted.moved < BATCH as u64 {
                break promoted;
            }
        };
        if moved > 0 {
            debug!("promoter: {moved} due task(s) moved to their queue");
        }
        // A failure here (a foreign key where the requests live, say) must
        // not hold up promotions: it is logged once until it clears.
        match self.pass_on_cancels() {
            Ok(()) => self.cancels_failing = false,
            Err(e) => {
                if !self.cancels_failing {
                    warn!("promoter: cannot read cancel requests ({e})");
                }
                self.cancels_failing = true;
            }
        }
        let until_due = promoted.next_due.map_or(POLL, |at| {
            let left = at.duration_since(Timestamp::now());
            Duration::try_from(left).unwrap_or(Duration::ZERO)
        });
        Ok(until_due.clamp(Duration::from_millis(1), POLL))
    }

    /// Hands the queued operator commands to the control loop, when woken
    /// or when [`COMMANDS_EVERY`] has passed.
    fn pass_on_commands(&mut self, woken: bool) {
        let now = Instant::now();
        let due = woken
            || self
                .commands_read
                .is_none_or(|at| now.duration_since(at) >= COMMANDS_EVERY);
        if !due {
            return;
        }
        self.commands_read = Some(now);
        match self.store.take_supervisor_commands(&self.supervisor_id) {
            Ok(commands) => {
                for command in commands {
                    let _ = self.events.send(ControlEvent::Command(command));
                }
            }
            Err(e) => debug!("promoter: cannot read supervisor commands ({e})"),
        }
    }

    fn pass_on_cancels(&mut self) -> Result<(), redis_tasks_store::StoreError> {
        let requests = self.store.cancel_requests()?;
        let now = Instant::now();
        self.sent
            .retain(|id, _| requests.iter().any(|(pending, _)| pending == id));
        for (task, slot) in requests {
            if !slot.starts_with(&self.own_prefix) {
                continue;
            }
            let due = self
                .sent
                .get(&task)
                .is_none_or(|at| now.duration_since(*at) >= RESEND);
            if due {
                self.sent.insert(task.clone(), now);
                let _ = self.events.send(ControlEvent::Cancel { slot, task });
            }
        }
        Ok(())
    }
}
