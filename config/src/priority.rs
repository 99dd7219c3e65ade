//! The queues a supervisor serves and the order it takes them in: strict
//! priority (`high low`: always the first non-empty queue, as the
//! original), or weights (`high=5 low=1`: each fetch puts `high` first five
//! times as often as `low`, so no queue starves). See
//! docs/flow-control.md#priorities.

/// Queue names with their weights, as `worker` and `worker_queues` take
/// them: `name` (strict order) or `name=weight` for every queue (weights).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOrder {
    names: Vec<String>,
    /// One positive weight per name; empty for strict priority.
    weights: Vec<u32>,
}

impl QueueOrder {
    /// Reads `specs` (each `name` or `name=weight`, all of one kind, each
    /// name once); the error says what is wrong in a sentence.
    pub fn parse(specs: &[String]) -> Result<QueueOrder, String> {
        let mut names: Vec<String> = Vec::with_capacity(specs.len());
        let mut weights = Vec::new();
        let weighted = specs.iter().any(|s| s.contains('='));
        for spec in specs {
            let (name, weight) = match spec.split_once('=') {
                Some((name, weight)) => (name, Some(weight)),
                None => (spec.as_str(), None),
            };
            if name.is_empty() {
                return Err(format!("{spec:?} has no queue name"));
            }
            if names.iter().any(|n| n == name) {
                return Err(format!("queue {name:?} is listed twice"));
            }
            match (weighted, weight) {
                (true, Some(w)) => match w.parse::<u32>() {
                    Ok(w) if w > 0 => weights.push(w),
                    _ => {
                        return Err(format!(
                            "the weight of queue {name:?} ({w:?}) is not a whole number from 1"
                        ));
                    }
                },
                (true, None) => {
                    return Err(format!(
                        "queue {name:?} has no weight: give every queue one (name=weight) or none (strict priority)"
                    ));
                }
                (false, _) => {}
            }
            names.push(name.to_owned());
        }
        Ok(QueueOrder { names, weights })
    }

    /// The queue names, as given.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The weights, one per name; empty for strict priority.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// The order of one fetch: the names as given for strict priority;
    /// with weights, a draw without replacement where each queue comes
    /// next with a chance proportional to its weight. `random` supplies
    /// uniform numbers (one per position).
    pub fn draw(&self, mut random: impl FnMut() -> u64) -> Vec<String> {
        if self.weights.is_empty() {
            return self.names.clone();
        }
        let mut left: Vec<(usize, u64)> = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| (i, u64::from(*w)))
            .collect();
        let mut order = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let total: u64 = left.iter().map(|(_, w)| w).sum();
            let mut point = random() % total;
            let at = left
                .iter()
                .position(|(_, w)| {
                    if point < *w {
                        true
                    } else {
                        point -= w;
                        false
                    }
                })
                .unwrap_or(0);
            let (index, _) = left.remove(at);
            order.push(self.names[index].clone());
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn strict_and_weighted_lists_read() {
        let strict = QueueOrder::parse(&specs(&["high", "low"])).expect("strict");
        assert_eq!(strict.names(), ["high", "low"]);
        assert!(strict.weights().is_empty());
        assert_eq!(strict.draw(|| 7), ["high", "low"]);
        let w = QueueOrder::parse(&specs(&["high=5", "low=1"])).expect("weighted");
        assert_eq!(w.names(), ["high", "low"]);
        assert_eq!(w.weights(), [5, 1]);
        for (bad, says) in [
            (vec!["high=5", "low"], "has no weight"),
            (vec!["high=0", "low=1"], "not a whole number"),
            (vec!["high=x", "low=1"], "not a whole number"),
            (vec!["a", "a"], "listed twice"),
            (vec!["=3"], "no queue name"),
        ] {
            let err = QueueOrder::parse(&specs(&bad)).expect_err(says);
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn weights_set_how_often_a_queue_comes_first() {
        let w = QueueOrder::parse(&specs(&["high=5", "low=1"])).expect("weighted");
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let draws = 60_000;
        let low_first = (0..draws).filter(|_| w.draw(&mut next)[0] == "low").count();
        // 1 in 6, within a few per cent.
        assert!((9_000..11_000).contains(&low_first), "{low_first}");
        // Every draw lists every queue once.
        let mut order = w.draw(&mut next);
        order.sort();
        assert_eq!(order, ["high", "low"]);
    }
}
