//! A worker process's frames, read by the thread that waits for them.
//!
//! No thread of its own reads a worker process's socket: the handshake,
//! and then the slot running a task, read it while they wait, with `poll`
//! on the socket next to their [bells](crate::bell). A frame thus reaches
//! the slot without a hand-over between threads (one wake-up and two
//! context switches less per task), and a process costs no reader thread
//! to start (see docs/performance.md).
//!
//! The socket is read without blocking (`MSG_DONTWAIT`, which leaves the
//! descriptor itself blocking for the sends): a worker process that stops
//! half-way through a frame cannot stall the slot, whose timer and
//! commands keep working. Bytes are read only when the waiter looks, so a
//! process that floods frames ends up blocked on its own writes instead of
//! growing the supervisor's memory.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, recv};
use redis_tasks_protocol::ipc::{FrameError, FromWorker, MAX_FRAME_BYTES, decode};

use super::WorkerEvent;

/// How much one read asks for when no frame is under way (most frames are
/// a few hundred bytes).
const SMALL_READ: usize = 4 * 1024;
/// How much one read asks for at most, for the rest of a large frame.
const LARGE_READ: usize = 1024 * 1024;

/// How the stream ended, once it has.
#[derive(Debug, Clone)]
enum End {
    Closed,
    Violation(String),
}

/// The bytes read from a worker process's socket that are not a whole
/// frame yet, and whether the stream has ended.
#[derive(Debug)]
pub(crate) struct Frames {
    buf: Vec<u8>,
    end: Option<End>,
    /// The socket may hold bytes not read yet (false after a read found
    /// nothing, until `poll` says otherwise).
    unread: bool,
}

/// What [`wait`] saw.
pub(crate) struct Woken {
    /// The socket is readable (or closed).
    pub socket: bool,
    /// Which of the bells are readable, in the order given.
    pub bells: Vec<bool>,
}

impl Frames {
    pub(crate) fn new() -> Self {
        Frames {
            buf: Vec::new(),
            end: None,
            unread: true,
        }
    }

    /// Reads nothing more until [`wait`](Self::wait) says the socket is
    /// readable (a stray that raced in is seen by that `poll`).
    pub(crate) fn await_poll(&mut self) {
        self.unread = false;
    }

    /// Whether bytes of a frame were read and not handed out yet.
    pub(crate) fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next event the socket holds now, without waiting: a whole
    /// frame, or the end of the stream (again at every later call).
    pub(crate) fn next_now(&mut self, socket: BorrowedFd<'_>) -> Option<WorkerEvent> {
        loop {
            if let Some(event) = self.parse() {
                return Some(event);
            }
            match &self.end {
                Some(End::Closed) => return Some(WorkerEvent::Closed),
                Some(End::Violation(detail)) => {
                    return Some(WorkerEvent::Violation(detail.clone()));
                }
                None => {}
            }
            if !self.unread {
                return None;
            }
            self.fill(socket);
        }
    }

    /// [`next_now`](Self::next_now), waiting until `until` (for ever with
    /// `None`) for the socket to have something; `None` when it had not.
    pub(crate) fn next_until(
        &mut self,
        socket: BorrowedFd<'_>,
        until: Option<Instant>,
    ) -> Option<WorkerEvent> {
        loop {
            if let Some(event) = self.next_now(socket) {
                return Some(event);
            }
            let woken = self.wait(socket, &[], until);
            if !woken.socket && until.is_some_and(|t| Instant::now() >= t) {
                return None;
            }
        }
    }

    /// Waits until the socket or one of `bells` is readable, or `until`
    /// passes (for ever with `None`).
    pub(crate) fn wait(
        &mut self,
        socket: BorrowedFd<'_>,
        bells: &[BorrowedFd<'_>],
        until: Option<Instant>,
    ) -> Woken {
        let mut fds: Vec<PollFd<'_>> = std::iter::once(socket)
            .chain(bells.iter().copied())
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let timeout = match until {
            None => PollTimeout::NONE,
            Some(t) => {
                // Rounded up: a wait that ends just short of `t` would
                // come back for a zero-length one.
                let ms = t
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX))
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        let readable = match poll(&mut fds, timeout) {
            Ok(0) => vec![false; fds.len()],
            Ok(_) => fds.iter().map(|fd| fd.any().unwrap_or(true)).collect(),
            // Interrupted, or poll itself failed: look at everything.
            Err(_) => vec![true; fds.len()],
        };
        if readable[0] {
            self.unread = true;
        }
        Woken {
            socket: readable[0],
            bells: readable[1..].to_vec(),
        }
    }

    /// One whole frame off the front of the buffer, if there is one. A
    /// frame that cannot be read ends the stream as a violation.
    fn parse(&mut self) -> Option<WorkerEvent> {
        let header: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(header);
        if len > MAX_FRAME_BYTES {
            self.violate(FrameError::Oversized {
                len: u64::from(len),
                max: MAX_FRAME_BYTES,
            });
            return None;
        }
        let whole = 4 + len as usize;
        let payload = self.buf.get(4..whole)?;
        let event = match decode::<FromWorker>(payload) {
            Ok(msg) => WorkerEvent::Message(msg),
            Err(e) => {
                self.violate(e);
                return None;
            }
        };
        self.buf.drain(..whole);
        if self.buf.is_empty() && self.buf.capacity() > LARGE_READ {
            // A large frame's room is not kept for the life of the process.
            self.buf = Vec::new();
        }
        Some(event)
    }

    fn violate(&mut self, error: FrameError) {
        self.buf = Vec::new();
        self.end = Some(End::Violation(error.to_string()));
    }

    /// Reads what the socket holds now (the rest of the frame under way,
    /// up to [`LARGE_READ`], else [`SMALL_READ`]).
    fn fill(&mut self, socket: BorrowedFd<'_>) {
        let start = self.buf.len();
        let rest = self
            .buf
            .get(..4)
            .and_then(|h| <[u8; 4]>::try_from(h).ok())
            .map_or(0, |h| {
                (4 + u32::from_le_bytes(h) as usize).saturating_sub(start)
            });
        self.buf
            .resize(start + rest.clamp(SMALL_READ, LARGE_READ), 0);
        let read = loop {
            match recv(
                socket.as_raw_fd(),
                &mut self.buf[start..],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Err(Errno::EINTR) => {}
                other => break other,
            }
        };
        let got = match &read {
            Ok(n) => *n,
            Err(_) => 0,
        };
        self.buf.truncate(start + got);
        match read {
            Ok(0) if start == 0 => self.end = Some(End::Closed),
            Ok(0) => {
                let expected = self
                    .buf
                    .get(..4)
                    .and_then(|h| <[u8; 4]>::try_from(h).ok())
                    .map_or(4, |h| 4 + u32::from_le_bytes(h) as usize);
                self.violate(FrameError::Truncated {
                    expected,
                    got: start,
                });
            }
            Ok(_) => {}
            Err(Errno::EAGAIN) => self.unread = false,
            // A worker process that died with our last message unread
            // resets the connection: that is its end, not a bad frame.
            Err(Errno::ECONNRESET | Errno::EPIPE) => self.end = Some(End::Closed),
            Err(e) => self.violate(FrameError::Io(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use redis_tasks_protocol::ipc::send;

    use super::*;

    fn ready_frame() -> Vec<u8> {
        let mut bytes = Vec::new();
        send(&mut bytes, &FromWorker::Ready).expect("in-memory write");
        bytes
    }

    #[test]
    fn a_frame_written_in_two_parts_is_handed_out_whole_once_complete() {
        let (mut worker, ours) = UnixStream::pair().expect("socket pair");
        let mut frames = Frames::new();
        let bytes = ready_frame();
        let (head, tail) = bytes.split_at(3);
        worker.write_all(head).expect("write");
        assert!(frames.next_now(ours.as_fd()).is_none());
        assert!(frames.has_partial(), "the first bytes are kept");
        worker.write_all(tail).expect("write");
        let event = frames.next_until(ours.as_fd(), Some(Instant::now() + Duration::from_secs(10)));
        assert!(
            matches!(event, Some(WorkerEvent::Message(FromWorker::Ready))),
            "{event:?}"
        );
        assert!(!frames.has_partial());
    }

    #[test]
    fn a_process_stopped_inside_a_frame_does_not_hold_the_waiter_past_its_time() {
        let (mut worker, ours) = UnixStream::pair().expect("socket pair");
        let mut frames = Frames::new();
        worker.write_all(&ready_frame()[..2]).expect("write");
        let until = Instant::now() + Duration::from_millis(50);
        assert!(frames.next_until(ours.as_fd(), Some(until)).is_none());
        assert!(Instant::now() >= until);
    }

    #[test]
    fn the_end_of_the_stream_is_closed_between_frames_and_a_violation_inside_one() {
        let (mut worker, ours) = UnixStream::pair().expect("socket pair");
        let mut frames = Frames::new();
        worker.write_all(&ready_frame()).expect("write");
        drop(worker);
        let first = frames.next_now(ours.as_fd());
        assert!(
            matches!(first, Some(WorkerEvent::Message(FromWorker::Ready))),
            "{first:?}"
        );
        let end = frames.next_now(ours.as_fd());
        assert!(matches!(end, Some(WorkerEvent::Closed)), "{end:?}");

        let (mut worker, ours) = UnixStream::pair().expect("socket pair");
        let mut frames = Frames::new();
        worker.write_all(&ready_frame()[..3]).expect("write");
        drop(worker);
        let end = frames.next_until(ours.as_fd(), Some(Instant::now() + Duration::from_secs(10)));
        assert!(
            matches!(&end, Some(WorkerEvent::Violation(d)) if d.contains("stream ended inside a frame")),
            "{end:?}"
        );
    }

    #[test]
    fn an_oversized_or_garbled_frame_ends_the_stream_as_a_violation() {
        let (mut worker, ours) = UnixStream::pair().expect("socket pair");
        let mut frames = Frames::new();
        worker.write_all(&u32::MAX.to_le_bytes()).expect("write");
        let event = frames.next_now(ours.as_fd());
        assert!(
            matches!(&event, Some(WorkerEvent::Violation(d)) if d.contains("over the")),
            "{event:?}"
        );
        // And stays ended: nothing after it is read as a frame.
        worker.write_all(&ready_frame()).expect("write");
        assert!(matches!(
            frames.next_now(ours.as_fd()),
            Some(WorkerEvent::Violation(_))
        ));

        let (mut worker, ours) = UnixStream::pair().expect("socket pair");
        let mut frames = Frames::new();
        worker
            .write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
            .expect("write");
        let event = frames.next_now(ours.as_fd());
        assert!(
            matches!(&event, Some(WorkerEvent::Violation(d)) if d.contains("malformed")),
            "{event:?}"
        );
    }

    #[test]
    fn frames_are_read_only_as_the_waiter_takes_them() {
        let (mut worker, ours) = UnixStream::pair().expect("socket pair");
        worker.set_nonblocking(true).expect("non-blocking");
        // A flooding process fills the socket and then cannot write more:
        // nothing is read on its behalf while nobody looks.
        let frame = ready_frame();
        let mut written = 0usize;
        while worker.write(&frame).is_ok() {
            written += 1;
        }
        assert!(written > 0);
        let mut frames = Frames::new();
        let mut taken = 0usize;
        while let Some(WorkerEvent::Message(FromWorker::Ready)) = frames.next_now(ours.as_fd()) {
            taken += 1;
            assert!(frames.buf.len() <= LARGE_READ, "the buffer stays small");
        }
        assert!(taken >= written, "{taken} of {written} frames read");
    }
}
