//! The last bytes of a task's output: a buffer that never holds more than
//! its limit and counts what it let go.

use std::collections::VecDeque;

/// The last `limit` bytes pushed into it.
#[derive(Debug)]
pub(crate) struct Tail {
    buf: VecDeque<u8>,
    limit: usize,
    dropped: u64,
}

impl Tail {
    /// An empty tail keeping at most `limit` bytes (`0`: none).
    pub(crate) fn new(limit: usize) -> Tail {
        Tail {
            buf: VecDeque::new(),
            limit,
            dropped: 0,
        }
    }

    /// Appends `bytes`, dropping the oldest bytes over the limit.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if self.limit == 0 {
            self.dropped = self.dropped.saturating_add(len);
            return;
        }
        // Of a chunk larger than the limit, only its end can stay.
        let skip = bytes.len().saturating_sub(self.limit);
        let kept = &bytes[skip..];
        let over = (self.buf.len() + kept.len()).saturating_sub(self.limit);
        self.buf.drain(..over);
        self.buf.extend(kept);
        let gone = u64::try_from(skip + over).unwrap_or(u64::MAX);
        self.dropped = self.dropped.saturating_add(gone);
    }

    /// What was kept, and how many bytes before it were dropped.
    pub(crate) fn into_captured(self) -> Captured {
        Captured {
            bytes: self.buf.into(),
            dropped: if self.limit == 0 { 0 } else { self.dropped },
        }
    }
}

/// A task's captured output once its run ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Captured {
    /// The last bytes it wrote (stdout and stderr in the order read).
    pub(crate) bytes: Vec<u8>,
    /// How many bytes it wrote before those, not kept.
    pub(crate) dropped: u64,
}

impl Captured {
    /// Whether the task wrote nothing that was kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The value stored with the task: the kept bytes, after a first line
    /// that says how much came before them when something was dropped.
    pub(crate) fn stored(&self) -> Vec<u8> {
        if self.dropped == 0 {
            return self.bytes.clone();
        }
        let note = format!(
            "[redis-tasks: {} earlier bytes of output were dropped; the last {} are kept (task_log_kib)]\n",
            self.dropped,
            self.bytes.len()
        );
        let mut out = note.into_bytes();
        out.extend_from_slice(&self.bytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_counts_the_rest() {
        let mut t = Tail::new(8);
        t.push(b"abc");
        t.push(b"defgh");
        t.push(b"ij");
        let c = t.into_captured();
        assert_eq!(c.bytes, b"cdefghij");
        assert_eq!(c.dropped, 2);
        let stored = String::from_utf8(c.stored()).expect("text");
        assert!(
            stored.starts_with("[redis-tasks: 2 earlier bytes"),
            "{stored}"
        );
        assert!(stored.ends_with("]\ncdefghij"), "{stored}");
    }

    #[test]
    fn a_chunk_over_the_limit_keeps_its_end() {
        let mut t = Tail::new(4);
        t.push(b"xy");
        t.push(b"0123456789");
        let c = t.into_captured();
        assert_eq!(c.bytes, b"6789");
        assert_eq!(c.dropped, 8);
    }

    #[test]
    fn a_zero_limit_keeps_nothing_and_says_nothing() {
        let mut t = Tail::new(0);
        t.push(b"hello");
        let c = t.into_captured();
        assert!(c.is_empty());
        assert!(c.stored().is_empty());
    }
}
