//! The worker crate's only `unsafe`: adopting the socket the supervisor
//! left at a known descriptor number, and (in `sigsys`) the SIGSYS handler
//! that names a system call the seccomp filter blocked.

pub(crate) mod sigsys;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};

/// Takes ownership of the inherited IPC socket at `fd` and marks it
/// close-on-exec at once, so the task's own subprocesses cannot hold the
/// channel open and hide a crash of this process.
pub(crate) fn take_inherited_socket(fd: i32) -> io::Result<UnixStream> {
    if fd <= 2 {
        return Err(io::Error::other("descriptor is stdio, not an ipc socket"));
    }
    // SAFETY: `fd` comes from the `--redis-tasks-worker-fd` argument the
    // supervisor passed when it started this process, after placing its end
    // of a socket pair there; nothing else in this process has opened or
    // adopted that number (this runs once, before any task code), so the
    // `OwnedFd` is its only owner. `F_GETFD` first proves the number is an
    // open descriptor; `fcntl` on a raw number cannot touch memory. If the
    // type check below then fails, dropping the `OwnedFd` closes a
    // descriptor nothing else here uses.
    let owned = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let stat = fstat(&owned).map_err(io::Error::from)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::other("descriptor is not a socket"));
    }
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(UnixStream::from(owned))
}
