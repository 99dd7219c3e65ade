//! Channels a slot can wait on with `poll`, next to a worker process's
//! socket.
//!
//! A slot running a task waits for three things at once: the worker
//! process's frames (its socket), the process's exit, and the control
//! loop's commands. Frames are read from the socket on the slot's own
//! thread (`worker_process::frames`), so the other two must be visible to
//! `poll` as well: each is a channel whose sender rings a [`Bell`] (a
//! non-blocking pipe) after every message and when it goes away.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crossbeam_channel::{Receiver, SendError, Sender};
use nix::errno::Errno;
use nix::fcntl::OFlag;

/// A wake-up `poll` can wait on: readable once rung, until drained.
#[derive(Debug)]
pub(crate) struct Bell {
    read: OwnedFd,
    write: OwnedFd,
}

impl Bell {
    /// A new, silent bell (both ends close-on-exec and non-blocking).
    pub(crate) fn new() -> io::Result<Arc<Bell>> {
        let flags = OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let (read, write) = nix::unistd::pipe2(flags).map_err(io::Error::from)?;
        Ok(Arc::new(Bell { read, write }))
    }

    /// Makes the bell readable. A full pipe is readable already, so a
    /// write that would block is simply dropped.
    pub(crate) fn ring(&self) {
        let _ = nix::unistd::write(&self.write, &[1]);
    }

    /// Silences the bell: call it before looking at the channel it stands
    /// for, so that a message sent after the look rings it again.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(self.read.as_fd(), &mut buf) {
                Ok(n) if n == buf.len() => {}
                Err(Errno::EINTR) => {}
                _ => return,
            }
        }
    }

    /// The end to `poll` for reading.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

/// The sending side of a channel whose receiver may be waiting in `poll`:
/// every message, and the sender's drop, rings the bell.
#[derive(Debug)]
pub(crate) struct RingingSender<T> {
    tx: Sender<T>,
    bell: Arc<Bell>,
}

impl<T> RingingSender<T> {
    /// Sends `msg`, then rings.
    pub(crate) fn send(&self, msg: T) -> Result<(), SendError<T>> {
        let sent = self.tx.send(msg);
        self.bell.ring();
        sent
    }
}

impl<T> Drop for RingingSender<T> {
    fn drop(&mut self) {
        // The receiver sees the channel closed on its next look.
        self.bell.ring();
    }
}

/// The receiving side: the channel and the bell its sender rings.
#[derive(Debug)]
pub(crate) struct RingingReceiver<T> {
    pub(crate) rx: Receiver<T>,
    pub(crate) bell: Arc<Bell>,
}

/// A channel of `cap` messages (unbounded for `None`) whose sender rings a
/// new bell.
pub(crate) fn channel<T>(cap: Option<usize>) -> io::Result<(RingingSender<T>, RingingReceiver<T>)> {
    let bell = Bell::new()?;
    let (tx, rx) = match cap {
        Some(cap) => crossbeam_channel::bounded(cap),
        None => crossbeam_channel::unbounded(),
    };
    Ok((
        RingingSender {
            tx,
            bell: Arc::clone(&bell),
        },
        RingingReceiver { rx, bell },
    ))
}
