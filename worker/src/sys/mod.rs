//! The worker crate's only `unsafe`: adopting descriptors the supervisor
//! handed over (the inherited socket, sockets received by the fork server),
//! `fork` in the fork server, and (in `sigsys`) the SIGSYS handler that
//! names a system call the seccomp filter blocked.

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

/// Adopts an inherited descriptor (the fork server's control socket) and
/// marks it close-on-exec.
pub(crate) fn adopt_fd(fd: i32) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::other("descriptor is stdio, not a socket"));
    }
    // SAFETY: as in `take_inherited_socket`: the number comes from the
    // argument the supervisor passed after placing the socket there, and
    // nothing else in this process owns it; F_GETFD proves it is open.
    let owned = unsafe {
        if libc::fcntl(fd, libc::F_GETFD) < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(owned)
}

/// Takes ownership of descriptors received with `SCM_RIGHTS`.
pub(crate) fn adopt_all(fds: Vec<std::os::fd::RawFd>) -> Vec<OwnedFd> {
    fds.into_iter()
        // SAFETY: `recvmsg` just created these descriptors in this process
        // (close-on-exec) and returned their numbers to us alone.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// The number of a descriptor.
pub(crate) fn raw(fd: &OwnedFd) -> std::os::fd::RawFd {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

/// Closes a descriptor by number in a forked child, where its `OwnedFd`
/// belongs to the parent's copy of the program state.
pub(crate) fn close_raw(fd: std::os::fd::RawFd) {
    // SAFETY: closing a number is memory-safe; in the child the number is
    // the child's own copy, and the owning `OwnedFd` is never used again
    // there (the child ends with `exit`).
    unsafe {
        libc::close(fd);
    }
}

/// Which side of a `fork` this is.
pub(crate) enum Forked {
    /// The parent, with the child's pid.
    Parent(u32),
    /// The child.
    Child,
}

/// Forks the fork server.
pub(crate) fn fork_child() -> Result<Forked, nix::errno::Errno> {
    // SAFETY: only the fork server calls this, and it never starts a
    // thread, so the child is a complete copy of a single-threaded process
    // and may run any code (allocate, lock) afterwards.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => {
            Ok(Forked::Parent(child.as_raw().unsigned_abs()))
        }
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// In a freshly forked child: lead a process group of its own, die with
/// the fork server, and adopt orphans of its own descendants.
pub(crate) fn become_worker() -> io::Result<()> {
    let parent = nix::unistd::getppid();
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
        .map_err(io::Error::from)?;
    // SAFETY: a plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if nix::unistd::getppid() != parent {
        return Err(io::Error::other("the fork server is gone"));
    }
    // Orphans among its descendants come back to it, so its tree is all of
    // what the task started (the flag is not inherited across fork).
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
    Ok(())
}

/// Makes this process non-dumpable: no core dumps, and no process of the
/// same user (a task, say) may trace it, read its memory or environment
/// through /proc, or copy its descriptors with `pidfd_getfd`. The flag is
/// inherited by `fork` and reset by `exec`.
pub(crate) fn forbid_inspection() -> io::Result<()> {
    // SAFETY: a plain prctl on this process; no pointers are passed.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
