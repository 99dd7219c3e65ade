//! The two pipes that are a worker process's stdout and stderr, and
//! reading their supervisor ends without blocking.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// The write ends, for the worker process (its descriptors 1 and 2).
#[derive(Debug)]
pub(crate) struct ChildEnds {
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// The read ends, kept by the supervisor (non-blocking, stdout first).
#[derive(Debug)]
pub(crate) struct ReadEnds(pub(super) [OwnedFd; 2]);

/// Two new pipes, every end close-on-exec (the child gets its ends as
/// descriptors 1 and 2, which `dup2` makes inheritable), the read ends
/// non-blocking.
pub(crate) fn pipes() -> io::Result<(ChildEnds, ReadEnds)> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    for end in [&out_r, &err_r] {
        fcntl(end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    }
    Ok((
        ChildEnds {
            stdout: out_w,
            stderr: err_w,
        },
        ReadEnds([out_r, err_r]),
    ))
}

/// What one read of a pipe gave.
pub(super) enum Read {
    /// Some bytes, at the start of the buffer.
    Bytes(usize),
    /// Nothing now.
    Empty,
    /// The pipe's writers are all gone (or it cannot be read).
    Closed,
}

/// Reads what `fd` holds now into `buf`, without waiting.
pub(super) fn read_now(fd: impl AsFd, buf: &mut [u8]) -> Read {
    loop {
        match nix::unistd::read(fd.as_fd(), buf) {
            Ok(0) => return Read::Closed,
            Ok(n) => return Read::Bytes(n),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Read::Empty,
            Err(_) => return Read::Closed,
        }
    }
}
