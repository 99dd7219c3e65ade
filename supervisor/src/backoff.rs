//! Waiting out a Redis outage.
//!
//! Every Redis call of the supervisor that must not be lost (fetching,
//! recording an outcome, heartbeats) is retried while Redis is unreachable,
//! with these waits between attempts: 0.1 s, 0.2 s, 0.4 s, 0.8 s, 1.6 s,
//! 3.2 s, then 5 s for as long as it takes. Tasks stay where they are in the
//! meantime: a fetched task waits in its slot's private list, an outcome
//! waits in memory. Each failed attempt is logged with the next wait.

use std::time::Duration;

/// The wait sequence above; [`Backoff::reset`] after a success.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backoff {
    attempt: u32,
}

/// The longest wait between two attempts.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

impl Backoff {
    /// A fresh sequence.
    pub(crate) fn new() -> Self {
        Backoff::default()
    }

    /// The wait before the next attempt.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = Duration::from_millis(100u64.saturating_mul(1u64 << self.attempt.min(16)));
        self.attempt = self.attempt.saturating_add(1);
        wait.min(MAX_WAIT)
    }

    /// Forgets past failures.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub(crate) fn failures(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..9).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
        for _ in 0..100 {
            assert!(b.next_wait() <= MAX_WAIT);
        }
    }
}
