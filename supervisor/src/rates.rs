//! Holding a task's progress and meta updates to the documented rate,
//! whatever its worker process sends.
//!
//! `TaskContext` already sends at most one progress report per 250 ms, but
//! a task owns its worker process and can write raw frames on its socket
//! (155,000 Redis commands in 5 s were seen before this module). So the
//! supervisor keeps its own window per kind of update: the first update in
//! a window is written at once, later ones replace a single waiting value,
//! which is written when the window opens again, and the last waiting one
//! is written when the run ends. Redis sees at most one progress write and
//! one meta write per [`MIN_INTERVAL`] per task (plus one of each at the
//! end), and the latest report is never lost. Nothing is said to the
//! worker process. A meta update larger than the meta limit is dropped.

use std::time::{Duration, Instant};

use redis_tasks_protocol::Progress;

use crate::execute::RunHooks;

/// The shortest time between two writes of one kind of update for one
/// task (the worker side's `PROGRESS_INTERVAL`).
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// One kind of update: when it was last written and the value waiting
/// for the next window. Pure: the time is passed in.
#[derive(Debug)]
pub(crate) struct Window<T> {
    last: Option<Instant>,
    waiting: Option<T>,
}

impl<T> Window<T> {
    pub(crate) fn new() -> Self {
        Window {
            last: None,
            waiting: None,
        }
    }

    /// Offers `value` at `now`: returns it when it may be written now;
    /// else it waits, replacing any value waiting before.
    pub(crate) fn offer(&mut self, value: T, now: Instant) -> Option<T> {
        let open = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= MIN_INTERVAL);
        if open {
            self.last = Some(now);
            self.waiting = None;
            Some(value)
        } else {
            self.waiting = Some(value);
            None
        }
    }

    /// When the waiting value may be written, if one waits.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.waiting.as_ref()?;
        let last = self.last?;
        Some(last.checked_add(MIN_INTERVAL).unwrap_or(last))
    }

    /// The waiting value, if its window is open at `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<T> {
        if self.due()? > now {
            return None;
        }
        self.last = Some(now);
        self.waiting.take()
    }

    /// The waiting value, whatever the time (the run is over).
    pub(crate) fn flush(&mut self) -> Option<T> {
        self.waiting.take()
    }
}

/// The windows of one run, and the meta size limit.
pub(crate) struct Rates {
    progress: Window<Progress>,
    meta: Window<String>,
    /// The largest meta update written, in bytes of JSON
    /// (`max_args_bytes`).
    max_meta_bytes: u64,
    /// Whether an oversized meta update was already logged for this run.
    warned: bool,
}

impl Rates {
    pub(crate) fn new(max_meta_bytes: u64) -> Rates {
        Rates {
            progress: Window::new(),
            meta: Window::new(),
            max_meta_bytes,
            warned: false,
        }
    }

    /// A progress report of task `id` from its worker process.
    pub(crate) fn progress(
        &mut self,
        id: &str,
        progress: Progress,
        now: Instant,
        hooks: &mut dyn RunHooks,
    ) {
        if let Some(progress) = self.progress.offer(progress, now) {
            hooks.update_progress(id, progress);
        }
    }

    /// A meta update (JSON text) of task `id` from its worker process.
    pub(crate) fn meta(&mut self, id: &str, json: String, now: Instant, hooks: &mut dyn RunHooks) {
        if u64::try_from(json.len()).unwrap_or(u64::MAX) > self.max_meta_bytes {
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    task = id,
                    "dropping a meta update of {} bytes, over max_args_bytes ({}), which bounds meta",
                    json.len(),
                    self.max_meta_bytes
                );
            }
            return;
        }
        if let Some(json) = self.meta.offer(json, now) {
            hooks.update_meta(id, &json);
        }
    }

    /// When the next waiting update is due, if one waits.
    pub(crate) fn due(&self) -> Option<Instant> {
        match (self.progress.due(), self.meta.due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the waiting updates whose window is open at `now`.
    pub(crate) fn write_due(&mut self, id: &str, now: Instant, hooks: &mut dyn RunHooks) {
        if let Some(progress) = self.progress.take_due(now) {
            hooks.update_progress(id, progress);
        }
        if let Some(json) = self.meta.take_due(now) {
            hooks.update_meta(id, &json);
        }
    }

    /// Writes every waiting update (the run ended).
    pub(crate) fn flush(&mut self, id: &str, hooks: &mut dyn RunHooks) {
        if let Some(json) = self.meta.flush() {
            hooks.update_meta(id, &json);
        }
        if let Some(progress) = self.progress.flush() {
            hooks.update_progress(id, progress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn one_write_per_window_and_the_latest_value_waits() {
        let t0 = Instant::now();
        let mut w = Window::new();
        assert_eq!(w.offer(1, t0), Some(1));
        assert_eq!(w.due(), None);
        assert_eq!(w.offer(2, t0 + 10 * MS), None);
        assert_eq!(w.offer(3, t0 + 20 * MS), None);
        assert_eq!(w.due(), Some(t0 + MIN_INTERVAL));
        assert_eq!(w.take_due(t0 + 100 * MS), None);
        assert_eq!(w.take_due(t0 + MIN_INTERVAL), Some(3));
        assert_eq!(w.due(), None);
        // The window restarted at the delayed write.
        assert_eq!(w.offer(4, t0 + MIN_INTERVAL + 10 * MS), None);
        assert_eq!(w.flush(), Some(4));
        assert_eq!(w.flush(), None);
    }

    #[test]
    fn a_flood_costs_one_write_per_window() {
        #[derive(Default)]
        struct Count(u32, u32, Option<String>);
        impl RunHooks for Count {
            fn update_meta(&mut self, _: &str, meta_json: &str) {
                self.1 += 1;
                self.2 = Some(meta_json.to_owned());
            }
            fn set_result(&mut self, _: String) {}
            fn update_progress(&mut self, _: &str, _: Progress) {
                self.0 += 1;
            }
        }
        let t0 = Instant::now();
        let mut rates = Rates::new(100);
        let mut hooks = Count::default();
        // 10,000 frames of each kind over one simulated second.
        for n in 0..10_000u32 {
            let now = t0 + Duration::from_micros(u64::from(n) * 100);
            rates.write_due("t", now, &mut hooks);
            rates.progress("t", Progress::new(u64::from(n), None, ""), now, &mut hooks);
            rates.meta("t", format!("{{\"n\":{n}}}"), now, &mut hooks);
        }
        rates.meta(
            "t",
            "x".repeat(101),
            t0 + Duration::from_secs(2),
            &mut hooks,
        );
        rates.flush("t", &mut hooks);
        assert!(hooks.0 <= 6, "{} progress writes", hooks.0);
        assert!(hooks.1 <= 6, "{} meta writes", hooks.1);
        assert_eq!(hooks.2.as_deref(), Some("{\"n\":9999}"));
    }

    #[derive(Default)]
    struct Writes {
        progress: u64,
        meta: u64,
        last_progress: Option<Progress>,
    }

    impl RunHooks for Writes {
        fn update_meta(&mut self, _: &str, meta_json: &str) {
            assert!(meta_json.len() <= 64);
            self.meta += 1;
        }
        fn set_result(&mut self, _: String) {}
        fn update_progress(&mut self, _: &str, progress: Progress) {
            self.progress += 1;
            self.last_progress = Some(progress);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Any sequence of progress and meta frames, at any pace: no panic,
        /// at most one write per window and kind (plus the last one), the
        /// last progress report kept, no meta over the limit written.
        #[test]
        fn any_frames_at_any_pace_stay_within_the_rate(
            frames in proptest::collection::vec(
                (proptest::prelude::any::<bool>(), proptest::prelude::any::<u64>(),
                 proptest::prelude::any::<Option<u64>>(), ".{0,300}", 0u64..100_000),
                1..300,
            ),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut rates = Rates::new(64);
            let mut hooks = Writes::default();
            let mut last = None;
            for (is_progress, done, total, text, step_us) in frames {
                now += Duration::from_micros(step_us);
                if rates.due().is_some_and(|due| due <= now) {
                    rates.write_due("t", now, &mut hooks);
                }
                if is_progress {
                    let p = Progress { done, total, message: text }.bounded();
                    last = Some(p.clone());
                    rates.progress("t", p, now, &mut hooks);
                } else {
                    rates.meta("t", text, now, &mut hooks);
                }
            }
            rates.flush("t", &mut hooks);
            let windows = u64::try_from(
                (now - t0).as_nanos() / MIN_INTERVAL.as_nanos()
            ).unwrap_or(u64::MAX);
            proptest::prop_assert!(hooks.progress <= windows + 2, "{} progress writes in {windows} windows", hooks.progress);
            proptest::prop_assert!(hooks.meta <= windows + 2, "{} meta writes in {windows} windows", hooks.meta);
            proptest::prop_assert_eq!(hooks.last_progress, last);
        }
    }
}
