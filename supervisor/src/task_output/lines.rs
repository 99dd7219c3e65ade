//! Cutting one stream of a task's output into lines for the supervisor's
//! log: whole lines only, each at most [`MAX_LINE`] bytes (a longer one
//! comes in pieces), bytes that are not UTF-8 replaced.

/// The longest line written to the log, in bytes.
pub(crate) const MAX_LINE: usize = 4096;

/// The unfinished line of one stream.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Appends the lines `bytes` completes to `out` (without their line
    /// ends); keeps the unfinished rest.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<String>) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.partial.extend_from_slice(&window[..end]);
                    out.push(self.take());
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.partial.len() >= MAX_LINE {
                        out.push(self.take());
                    }
                }
            }
        }
    }

    /// Like [`Lines::feed`] for lines nobody will read: returns how many
    /// `bytes` completes, without making them.
    pub(crate) fn skip(&mut self, mut bytes: &[u8]) -> u64 {
        let mut lines = 0;
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.partial.clear();
                    lines += 1;
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.partial.len() >= MAX_LINE {
                        self.partial.clear();
                        lines += 1;
                    }
                }
            }
        }
        lines
    }

    /// Appends the unfinished line, if any, to `out`.
    pub(crate) fn flush(&mut self, out: &mut Vec<String>) {
        if !self.partial.is_empty() {
            out.push(self.take());
        }
    }

    fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.partial);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        String::from_utf8_lossy(line).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_come_out_and_the_rest_waits() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        lines.feed(b"one\r\ntw", &mut out);
        assert_eq!(out, ["one"]);
        lines.feed(b"o\nthree", &mut out);
        assert_eq!(out, ["one", "two"]);
        lines.flush(&mut out);
        assert_eq!(out, ["one", "two", "three"]);
        lines.flush(&mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn long_lines_are_cut_and_garbage_is_replaced() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        lines.feed(&long, &mut out);
        lines.feed(b"\n\xff\xfe\n", &mut out);
        assert_eq!(
            out.len(),
            4,
            "{:?}",
            out.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1].len(), MAX_LINE);
        assert_eq!(out[2].len(), 10);
        assert_eq!(out[3], "\u{fffd}\u{fffd}");
    }

    #[test]
    fn skipping_counts_what_feeding_would_make() {
        let text = [&b"a\nbb\n"[..], &vec![b'x'; MAX_LINE + 3], b"\ntail"].concat();
        let mut fed = Vec::new();
        Lines::default().feed(&text, &mut fed);
        let mut skipper = Lines::default();
        assert_eq!(skipper.skip(&text), fed.len() as u64);
        // The unfinished line is kept for when lines are made again.
        let mut rest = Vec::new();
        skipper.feed(b" end\n", &mut rest);
        assert_eq!(rest, ["tail end"]);
    }
}
