//! The supervisor crate's only `unsafe`: the few system calls a worker
//! process must make between `fork` and `exec`, where only
//! async-signal-safe calls are allowed (no allocation, no locks).

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use redis_tasks_protocol::ipc::WORKER_FD;

/// Signals a worker process ignores, so that `systemctl kill -s SIGTTIN`
/// (or a Ctrl-C in a terminal) sent to the whole group or cgroup only
/// reaches the supervisor: the scaling, reload, pause and dump signals of
/// the signal table. Ignored dispositions survive `exec`.
const IGNORED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGHUP,
    libc::SIGTSTP,
    libc::SIGUSR1,
];

/// Arranges for the child of `cmd` to: die with the thread that spawned it
/// (parent-death signal), ignore [`IGNORED`], find `ipc_fd` at
/// [`WORKER_FD`] and no other descriptor above stdio.
pub(crate) fn prepare_child(cmd: &mut Command, ipc_fd: RawFd) {
    // SAFETY: `getpid` is a plain system call, safe in the parent.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec. It only
    // calls async-signal-safe system calls (prctl, getppid, signal, fcntl,
    // dup2, close_range via syscall), allocates nothing and takes no lock;
    // it builds errors with `from_raw_os_error`/`last_os_error`, which do
    // not allocate. `ipc_fd` is the child's copy of a descriptor the parent
    // keeps open until after `spawn` returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The supervisor may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            for sig in IGNORED {
                if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            if ipc_fd == WORKER_FD {
                // dup2 onto itself would keep close-on-exec set.
                if libc::fcntl(ipc_fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(ipc_fd, WORKER_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Everything above the IPC end is close-on-exec already; closing
            // it here makes that hold even for a descriptor someone opened
            // without the flag. Kernels before 5.9 lack close_range: the
            // flags still protect us there.
            let first = (WORKER_FD + 1) as libc::c_uint;
            let _ = libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0);
            Ok(())
        });
    }
}
