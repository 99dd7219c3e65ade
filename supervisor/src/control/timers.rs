//! When the control loop has something to do besides reacting to events:
//! the watchdog ping, heartbeats, maintenance, and the end of a drain
//! period.
//!
//! Pure: every method takes `now`, so the tests below never sleep.

use std::time::{Duration, Instant};

/// The control loop's timers.
#[derive(Debug, Clone)]
pub(crate) struct Timers {
    next_heartbeat: Instant,
    next_maintenance: Instant,
    /// The watchdog interval systemd asked for, and the next ping.
    watchdog: Option<(Duration, Instant)>,
    /// While draining: when running tasks get interrupted.
    drain_until: Option<Instant>,
}

/// Which timers fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// Tell systemd we are alive.
    pub watchdog: bool,
    /// The drain period is over: interrupt running tasks.
    pub drain_over: bool,
    /// Heartbeat every slot.
    pub heartbeat: bool,
    /// Run a maintenance pass.
    pub maintenance: bool,
}

impl Timers {
    /// Timers starting at `now`: the watchdog and maintenance are due at
    /// once, the first heartbeat one interval from now (registering a slot
    /// is its first heartbeat).
    pub(crate) fn new(now: Instant, heartbeat_every: Duration, watchdog: Option<Duration>) -> Self {
        Timers {
            next_heartbeat: now + heartbeat_every,
            next_maintenance: now,
            watchdog: watchdog.map(|every| (every, now)),
            drain_until: None,
        }
    }

    /// The earliest instant at which something is due.
    pub(crate) fn next(&self) -> Instant {
        let mut next = self.next_heartbeat.min(self.next_maintenance);
        if let Some((_, at)) = self.watchdog {
            next = next.min(at);
        }
        if let Some(at) = self.drain_until {
            next = next.min(at);
        }
        next
    }

    /// Begins a drain period ending at `until`.
    pub(crate) fn drain_until(&mut self, until: Instant) {
        self.drain_until = Some(until);
    }

    /// Ends a drain period early (an immediate shutdown).
    pub(crate) fn cancel_drain(&mut self) {
        self.drain_until = None;
    }

    /// Whether a drain period is running.
    pub(crate) fn draining(&self) -> bool {
        self.drain_until.is_some()
    }

    /// What is due at `now`; each timer that fired is set to its next
    /// instant (`heartbeat_every` and `maintenance_every` are read now, so
    /// a reload changes them from the next round on).
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        heartbeat_every: Duration,
        maintenance_every: Duration,
    ) -> Due {
        let mut due = Due::default();
        if let Some((every, at)) = &mut self.watchdog
            && now >= *at
        {
            due.watchdog = true;
            *at = now + *every;
        }
        if self.drain_until.is_some_and(|at| now >= at) {
            due.drain_over = true;
            self.drain_until = None;
        }
        if now >= self.next_heartbeat {
            due.heartbeat = true;
            self.next_heartbeat = now + heartbeat_every;
        }
        if now >= self.next_maintenance {
            due.maintenance = true;
            self.next_maintenance = now + maintenance_every;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn maintenance_and_watchdog_are_due_at_once_heartbeats_later() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, 10 * SEC, Some(2 * SEC));
        assert_eq!(timers.next(), t0);
        let due = timers.take_due(t0, 10 * SEC, 60 * SEC);
        assert_eq!(
            due,
            Due {
                watchdog: true,
                maintenance: true,
                ..Due::default()
            }
        );
        assert_eq!(timers.next(), t0 + 2 * SEC);
        let due = timers.take_due(t0 + 10 * SEC, 10 * SEC, 60 * SEC);
        assert!(due.heartbeat && due.watchdog && !due.maintenance);
        assert_eq!(timers.next(), t0 + 12 * SEC);
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, 10 * SEC, None);
        timers.take_due(t0, 10 * SEC, 60 * SEC);
        assert_eq!(
            timers.take_due(t0 + 9 * SEC, 10 * SEC, 60 * SEC),
            Due::default()
        );
        assert_eq!(timers.next(), t0 + 10 * SEC);
    }

    #[test]
    fn a_drain_period_fires_once_and_can_be_cancelled() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, 10 * SEC, None);
        timers.take_due(t0, 10 * SEC, 60 * SEC);
        timers.drain_until(t0 + 3 * SEC);
        assert!(timers.draining());
        assert_eq!(timers.next(), t0 + 3 * SEC);
        assert!(!timers.take_due(t0 + 2 * SEC, 10 * SEC, 60 * SEC).drain_over);
        assert!(timers.take_due(t0 + 3 * SEC, 10 * SEC, 60 * SEC).drain_over);
        assert!(!timers.draining());
        timers.drain_until(t0 + 5 * SEC);
        timers.cancel_drain();
        assert!(!timers.take_due(t0 + 6 * SEC, 10 * SEC, 60 * SEC).drain_over);
    }

    #[test]
    fn a_reload_changes_the_interval_from_the_next_round_on() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, 10 * SEC, None);
        timers.take_due(t0, 10 * SEC, 60 * SEC);
        timers.take_due(t0 + 10 * SEC, 2 * SEC, 60 * SEC);
        assert_eq!(timers.next(), t0 + 12 * SEC);
    }
}
