//! Each task's own output: what it writes to its stdout and stderr.
//!
//! A worker process's descriptors 1 and 2 are the write ends of two pipes
//! whose read ends the supervisor keeps ([`pipes`]): the worker process
//! does not collect its own output, so a crash loses nothing it wrote. One
//! thread per worker process reads both pipes as the bytes come. While a
//! task runs ([`Output::begin`] to [`Output::finish`]) every byte read is
//! the task's: the last `task_log_kib` KiB are kept ([`tail`]), and each
//! line goes to the supervisor's log as `[<task id>] line` (unless
//! `task_output_to_log` is off). [`Output::finish`] first reads what the
//! pipes still hold without waiting: a task's writes made before its
//! worker process sent `Finished` (or died) are in the pipe by then.
//! Output read while no task runs (the worker process's own messages, or a
//! task's leftover child, which the slot kills as the task ends) goes to
//! the log only, as `[worker process <pid>] line`; [`Output::begin`] reads
//! what the pipes hold before it hands them to the next task.
//!
//! Nothing a task writes can block or bloat the supervisor: the reader
//! never waits for anyone but the pipes, keeps at most the tail per task,
//! cuts log lines at [`lines::MAX_LINE`] bytes, and writes at most
//! [`LOG_LINES_PER_SEC`] lines a second per worker process to the log (the
//! rest are counted in one line). A task that writes faster than that is
//! only slowed down by its own full pipe.

mod lines;
mod pipes;
mod tail;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tracing::{info, warn};

use lines::Lines;
pub(crate) use pipes::{ChildEnds, ReadEnds, pipes};
use pipes::{Read, read_now};
pub(crate) use tail::Captured;
use tail::Tail;

/// Lines of output one worker process may write to the supervisor's log
/// each second.
pub(crate) const LOG_LINES_PER_SEC: u32 = 1000;

/// The most bytes [`Output::finish`] reads from the pipes: a descendant
/// that still writes cannot keep the slot there.
const FINISH_READ_MAX: usize = 4 << 20;

/// How long the reader waits in one `poll` (it looks for its end between).
const POLL_MS: u16 = 250;

/// One read's buffer.
const CHUNK: usize = 64 * 1024;

/// The buffer of the reads at a task's begin and end (usually of empty
/// pipes).
const DRAIN_CHUNK: usize = 4 * 1024;

const STREAMS: [&str; 2] = ["stdout", "stderr"];

/// The capture of one worker process's output.
#[derive(Debug)]
pub(crate) struct Output {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fds: [OwnedFd; 2],
    pid: u32,
    state: Mutex<State>,
    /// The worker process's handle is gone: the reader stops.
    stop: AtomicBool,
}

#[derive(Debug)]
struct State {
    task: Option<Running>,
    lines: [Lines; 2],
    open: [bool; 2],
    budget: Budget,
}

/// The task whose output is being read.
#[derive(Debug)]
struct Running {
    id: String,
    tail: Tail,
    to_log: bool,
}

/// One line for the log, and whose it is (`None`: the worker process's).
struct LogLine {
    task: Option<String>,
    stream: &'static str,
    text: String,
}

impl Output {
    /// Starts reading `ends` (of worker process `pid`) on a thread of its
    /// own, which ends when every writer has closed them, or soon after
    /// this handle is dropped.
    pub(crate) fn start(ends: ReadEnds, pid: u32) -> std::io::Result<Output> {
        let inner = Arc::new(Inner {
            fds: ends.0,
            pid,
            state: Mutex::new(State {
                task: None,
                lines: [Lines::default(), Lines::default()],
                open: [true, true],
                budget: Budget::new(),
            }),
            stop: AtomicBool::new(false),
        });
        let reader = Arc::clone(&inner);
        std::thread::Builder::new()
            .name(format!("output-{pid}"))
            .spawn(move || reader.read_loop())?;
        Ok(Output { inner })
    }

    /// From now on, the output is task `id`'s: `keep` bytes of it are
    /// kept, and its lines logged when `to_log`. Call it before the task
    /// is sent: what the pipes hold already is read first, as no task's.
    pub(crate) fn begin(&self, id: &str, keep: usize, to_log: bool) {
        let mut logged = Vec::new();
        {
            let mut state = self.inner.lock();
            // What the pipes hold now was written before the task was
            // sent: it belongs to no task, nor does an unfinished line.
            self.inner
                .read_open(&mut state, FINISH_READ_MAX, &mut logged);
            state.flush_lines(&mut logged);
            state.task = Some(Running {
                id: id.to_owned(),
                tail: Tail::new(keep),
                to_log,
            });
        }
        self.inner.log(logged);
    }

    /// Ends the task's capture: reads what the pipes hold now (without
    /// waiting), and returns what was kept of the task's output.
    pub(crate) fn finish(&self) -> Captured {
        let mut logged = Vec::new();
        let captured = {
            let mut state = self.inner.lock();
            self.inner
                .read_open(&mut state, FINISH_READ_MAX, &mut logged);
            state.flush_lines(&mut logged);
            let dropped = state.budget.take_dropped(true);
            let captured = state
                .task
                .take()
                .map(|task| task.tail.into_captured())
                .unwrap_or_default();
            (captured, dropped)
        };
        let (captured, dropped) = captured;
        self.inner.log(logged);
        self.inner.log_dropped(dropped);
        captured
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_loop(&self) {
        let mut logged = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let open = self.lock().open;
            if open == [false, false] || self.stop.load(Ordering::Relaxed) {
                break;
            }
            let mut fds: Vec<PollFd<'_>> = self
                .fds
                .iter()
                .zip(open)
                .filter(|(_, open)| *open)
                .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::from(POLL_MS)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            drop(fds);
            let dropped = {
                let mut state = self.lock();
                // One round reads at most a few chunks per pipe, so that
                // `finish` never waits long for the lock.
                self.read_open_into(&mut buf, &mut state, 4 * CHUNK, &mut logged);
                state.budget.take_dropped(false)
            };
            self.log(std::mem::take(&mut logged));
            self.log_dropped(dropped);
        }
        let mut state = self.lock();
        state.flush_lines(&mut logged);
        drop(state);
        self.log(logged);
    }

    /// Reads what each open pipe holds, up to `max` bytes in all per pipe.
    /// Called twice per task (its begin and its end), mostly on empty
    /// pipes: a small buffer on the stack, not a zeroed 64 KiB one each time.
    fn read_open(&self, state: &mut State, max: usize, logged: &mut Vec<LogLine>) {
        let mut buf = [0u8; DRAIN_CHUNK];
        self.read_open_into(&mut buf, state, max, logged);
    }

    /// [`Inner::read_open`] with the caller's buffer.
    fn read_open_into(
        &self,
        buf: &mut [u8],
        state: &mut State,
        max: usize,
        logged: &mut Vec<LogLine>,
    ) {
        let ready = self.ready_now(state.open);
        for (i, fd) in self.fds.iter().enumerate() {
            let mut read = 0;
            while ready[i] && state.open[i] && read < max {
                match read_now(fd, buf) {
                    Read::Bytes(n) => {
                        read += n;
                        state.take(i, &buf[..n], logged);
                    }
                    Read::Empty => break,
                    Read::Closed => state.open[i] = false,
                }
            }
        }
    }

    /// Which of the `open` pipes have something to read (or were closed)
    /// right now: one `poll` for both, instead of a `read` of each that
    /// most often finds nothing. If the poll fails, both are read.
    fn ready_now(&self, open: [bool; 2]) -> [bool; 2] {
        let mut fds = [
            PollFd::new(self.fds[0].as_fd(), PollFlags::POLLIN),
            PollFd::new(self.fds[1].as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => [0, 1].map(|i| open[i] && fds[i].any().unwrap_or(true)),
            Err(_) => open,
        }
    }

    fn log_dropped(&self, dropped: Option<u64>) {
        if let Some(n) = dropped {
            let pid = self.pid;
            warn!(
                target: "redis_tasks_supervisor::task_output",
                pid,
                "{n} lines of output of worker process {pid} were not logged (over {LOG_LINES_PER_SEC} a second); a task's last task_log_kib KiB are kept with it"
            );
        }
    }

    fn log(&self, lines: Vec<LogLine>) {
        for line in lines {
            let LogLine { task, stream, text } = line;
            match task {
                Some(id) => info!(
                    target: "redis_tasks_supervisor::task_output",
                    task = %id, stream, "[{id}] {text}"
                ),
                None => info!(
                    target: "redis_tasks_supervisor::task_output",
                    pid = self.pid, stream, "[worker process {}] {text}", self.pid
                ),
            }
        }
    }
}

impl State {
    /// Takes `bytes` read from stream `i`.
    fn take(&mut self, i: usize, bytes: &[u8], logged: &mut Vec<LogLine>) {
        let to_log = match &mut self.task {
            Some(task) => {
                task.tail.push(bytes);
                task.to_log
            }
            None => true,
        };
        if !to_log {
            return;
        }
        if self.budget.spent() {
            // A flood: count its lines rather than make them.
            let skipped = self.lines[i].skip(bytes);
            self.budget.skipped(skipped);
            return;
        }
        let mut texts = Vec::new();
        self.lines[i].feed(bytes, &mut texts);
        self.queue(i, texts, logged);
    }

    /// Queues the unfinished lines for the log, as their owner's.
    fn flush_lines(&mut self, logged: &mut Vec<LogLine>) {
        for i in 0..2 {
            let mut texts = Vec::new();
            self.lines[i].flush(&mut texts);
            self.queue(i, texts, logged);
        }
    }

    fn queue(&mut self, i: usize, texts: Vec<String>, logged: &mut Vec<LogLine>) {
        let task = self.task.as_ref().map(|t| t.id.clone());
        for text in texts {
            if self.budget.allow() {
                logged.push(LogLine {
                    task: task.clone(),
                    stream: STREAMS[i],
                    text,
                });
            }
        }
    }
}

/// At most [`LOG_LINES_PER_SEC`] log lines each second; the others are
/// counted, and reported once their second is over.
#[derive(Debug)]
struct Budget {
    window: Instant,
    used: u32,
    /// Lines left out in this second.
    dropped: u64,
    /// Lines left out in seconds that are over, not reported yet.
    unreported: u64,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            window: Instant::now(),
            used: 0,
            dropped: 0,
            unreported: 0,
        }
    }

    /// Whether this second's lines are all used (starting the next second
    /// when this one is over).
    fn spent(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
            self.unreported = self
                .unreported
                .saturating_add(std::mem::take(&mut self.dropped));
        }
        self.used >= LOG_LINES_PER_SEC
    }

    /// Whether one more line may be logged (counted if not).
    fn allow(&mut self) -> bool {
        if self.spent() {
            self.dropped = self.dropped.saturating_add(1);
            false
        } else {
            self.used += 1;
            true
        }
    }

    /// Counts `lines` left out of the log.
    fn skipped(&mut self, lines: u64) {
        self.dropped = self.dropped.saturating_add(lines);
    }

    /// How many lines were left out of the log and not reported yet: those
    /// of seconds that are over, or all of them with `now`.
    fn take_dropped(&mut self, now: bool) -> Option<u64> {
        self.spent();
        let mut n = std::mem::take(&mut self.unreported);
        if now {
            n = n.saturating_add(std::mem::take(&mut self.dropped));
        }
        (n > 0).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::OwnedFd;

    use super::*;

    fn writer(fd: OwnedFd) -> std::fs::File {
        std::fs::File::from(fd)
    }

    #[test]
    fn bytes_belong_to_the_task_running_when_they_were_read() {
        let (child, read) = pipes().expect("pipes");
        let output = Output::start(read, 0).expect("start");
        let (mut out, mut err) = (writer(child.stdout), writer(child.stderr));
        out.write_all(b"before any task\n").expect("write");
        output.begin("t1", 1024, false);
        out.write_all(b"one out\n").expect("write");
        err.write_all(b"one err\n").expect("write");
        // Read at once by `finish`, whether or not the thread got there.
        let first = output.finish();
        let text = String::from_utf8(first.bytes).expect("text");
        assert!(
            text.contains("one out\n") && text.contains("one err\n"),
            "{text:?}"
        );
        assert!(!text.contains("before"), "{text:?}");
        out.write_all(b"between tasks\n").expect("write");
        output.begin("t2", 1024, false);
        out.write_all(b"two\n").expect("write");
        let second = output.finish();
        assert_eq!(second.bytes, b"two\n");
        // No task: nothing captured.
        assert!(output.finish().is_empty());
    }

    #[test]
    fn a_flood_keeps_only_the_tail_and_ends_with_the_writer() {
        let (child, read) = pipes().expect("pipes");
        let output = Output::start(read, 0).expect("start");
        output.begin("flood", 4096, false);
        let mut out = writer(child.stdout);
        drop(child.stderr);
        let line = [b'x'; 1023];
        for _ in 0..4096 {
            out.write_all(&line).expect("write");
            out.write_all(b"\n").expect("write");
        }
        out.write_all(b"the end\n").expect("write");
        drop(out);
        let captured = output.finish();
        assert_eq!(captured.bytes.len(), 4096);
        assert!(captured.bytes.ends_with(b"the end\n"));
        assert_eq!(captured.dropped, 4096 * 1024 + 8 - 4096);
    }

    #[test]
    fn the_log_gets_its_budget_and_a_count_of_the_rest() {
        let mut budget = Budget::new();
        let allowed = (0..LOG_LINES_PER_SEC + 5)
            .filter(|_| budget.allow())
            .count();
        assert_eq!(allowed, LOG_LINES_PER_SEC as usize);
        assert!(budget.spent());
        budget.skipped(10);
        assert_eq!(budget.take_dropped(false), None, "its second is not over");
        assert_eq!(budget.take_dropped(true), Some(15));
        assert_eq!(budget.take_dropped(true), None);
    }
}
