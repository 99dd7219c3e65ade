//! Which label values a metric may carry, so that the number of series stays
//! bounded whatever a producer writes to Redis.
//!
//! A task's `queue` and `task` fields, and the names in the `P:queues` set,
//! are written by producers, some of them outside the trust boundary (a raw
//! producer in another language, a web application with a restricted ACL
//! user). Labelled with them freely, 30,000 made-up queue names made a
//! 97 MB page and a 150 MB supervisor. So:
//!
//! - a `queue` label is one of the queues this supervisor serves (its
//!   configuration, finite), else [`OTHER`];
//! - a `task` label is one of the task functions registered in the binary,
//!   else [`OTHER`];
//! - `queue_length` shows the queues this supervisor serves and the
//!   [`MAX_QUEUE_SERIES`] longest others; the remaining queues are summed
//!   into one `queue="other"` series ([`top_queues`]).

use std::collections::BTreeSet;
use std::sync::{PoisonError, RwLock};

/// The label value of everything the supervisor does not know to be finite.
pub(crate) const OTHER: &str = "other";

/// How many queues the supervisor does not serve get a `queue_length` series
/// of their own (the longest ones); the rest are summed under [`OTHER`].
pub(crate) const MAX_QUEUE_SERIES: usize = 50;

/// The label values a supervisor allows.
#[derive(Debug, Default)]
pub(crate) struct Bounds {
    /// Queues served since start (a reload may add some; series of a queue
    /// no longer served stay valid, and configurations are finite).
    queues: RwLock<BTreeSet<String>>,
    /// Task functions registered in the binary (fixed for its life).
    tasks: BTreeSet<String>,
}

impl Bounds {
    /// Bounds for a supervisor serving `queues` with `tasks` registered.
    pub(crate) fn new<Q, T>(queues: Q, tasks: T) -> Bounds
    where
        Q: IntoIterator,
        Q::Item: Into<String>,
        T: IntoIterator,
        T::Item: Into<String>,
    {
        Bounds {
            queues: RwLock::new(queues.into_iter().map(Into::into).collect()),
            tasks: tasks.into_iter().map(Into::into).collect(),
        }
    }

    /// Adds the queues of a new configuration.
    pub(crate) fn serve<'a>(&self, queues: impl IntoIterator<Item = &'a String>) {
        let mut known = self.queues.write().unwrap_or_else(PoisonError::into_inner);
        known.extend(queues.into_iter().cloned());
    }

    /// The `queue` label for `queue`.
    pub(crate) fn queue(&self, queue: &str) -> String {
        let known = self.queues.read().unwrap_or_else(PoisonError::into_inner);
        if known.contains(queue) {
            queue.to_owned()
        } else {
            OTHER.to_owned()
        }
    }

    /// Whether this supervisor serves `queue`.
    pub(crate) fn serves(&self, queue: &str) -> bool {
        self.queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(queue)
    }

    /// The `task` label for `task`.
    pub(crate) fn task(&self, task: Option<&str>) -> String {
        match task {
            Some(name) if self.tasks.contains(name) => name.to_owned(),
            _ => OTHER.to_owned(),
        }
    }
}

/// The `queue_length` series out of every queue's length: the queues for
/// which `keep` holds, then the [`MAX_QUEUE_SERIES`] longest others (ties by
/// name), then the sum of the rest under [`OTHER`] (present, maybe 0, when
/// there is a rest).
pub(crate) fn top_queues(
    mut lengths: Vec<(String, u64)>,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, u64)> {
    let (mut shown, mut others): (Vec<_>, Vec<_>) =
        lengths.drain(..).partition(|(name, _)| keep(name));
    others.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = others.split_off(others.len().min(MAX_QUEUE_SERIES));
    shown.extend(others);
    if !rest.is_empty() {
        let sum = rest.iter().fold(0u64, |sum, (_, n)| sum.saturating_add(*n));
        // A served queue named "other" is merged with the rest.
        if let Some(existing) = shown.iter_mut().find(|(name, _)| name == OTHER) {
            existing.1 = existing.1.saturating_add(sum);
        } else {
            shown.push((OTHER.to_owned(), sum));
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_outside_the_served_queues_and_registered_tasks_are_other() {
        let bounds = Bounds::new(["default"], ["send"]);
        assert_eq!(bounds.queue("default"), "default");
        assert_eq!(bounds.queue("made-up-1"), OTHER);
        assert_eq!(bounds.task(Some("send")), "send");
        assert_eq!(bounds.task(Some("made-up")), OTHER);
        assert_eq!(bounds.task(None), OTHER);
        bounds.serve(&["high".to_owned()]);
        assert_eq!(bounds.queue("high"), "high");
    }

    #[test]
    fn queue_lengths_keep_served_queues_and_the_longest_others() {
        let mut lengths: Vec<(String, u64)> =
            (0..10_000u64).map(|i| (format!("q{i}"), i % 97)).collect();
        lengths.push(("default".to_owned(), 0));
        let total: u64 = lengths.iter().map(|(_, n)| n).sum();
        let shown = top_queues(lengths, |q| q == "default");
        assert_eq!(shown.len(), 1 + MAX_QUEUE_SERIES + 1);
        assert_eq!(shown[0], ("default".to_owned(), 0));
        assert!(shown[1..=MAX_QUEUE_SERIES].iter().all(|(_, n)| *n == 96));
        assert_eq!(shown.last().map(|(q, _)| q.as_str()), Some(OTHER));
        assert_eq!(shown.iter().map(|(_, n)| n).sum::<u64>(), total);
    }

    #[test]
    fn few_queues_need_no_other_series() {
        let shown = top_queues(vec![("a".to_owned(), 3), ("b".to_owned(), 1)], |_| false);
        assert_eq!(shown, [("a".to_owned(), 3), ("b".to_owned(), 1)]);
    }
}
