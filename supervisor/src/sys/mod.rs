//! The supervisor crate's only `unsafe`: the few system calls a worker
//! process must make between `fork` and `exec`, where only
//! async-signal-safe calls are allowed (no allocation, no locks), the
//! private namespaces of an isolated worker process (`namespaces`), and
//! the anchor: the init of the PID namespace worker processes run in.

pub(crate) mod namespaces;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::resource::setrlimit;
use redis_tasks_protocol::ipc::WORKER_FD;

use crate::isolation::{ChildRestrictions, Step};

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
/// (parent-death signal), be a child subreaper, start its own children in
/// `children_pid_ns` when given, ignore [`IGNORED`], find `ipc_fd` at
/// [`WORKER_FD`] and no other descriptor above stdio; then, with
/// `restrictions`, to apply them in the documented order (limits, network
/// namespace, bounding set, groups and user, other capabilities,
/// no-new-privileges). A failed restriction makes `spawn` fail with
/// [`Step::code`] as its raw OS error.
pub(crate) fn prepare_child(
    cmd: &mut Command,
    ipc_fd: RawFd,
    restrictions: Option<ChildRestrictions>,
    children_pid_ns: Option<RawFd>,
) {
    let children_pid_ns = children_pid_ns.unwrap_or(-1);
    // SAFETY: `getpid` is a plain system call, safe in the parent.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec. It only
    // calls async-signal-safe system calls (prctl, getppid, setns, signal, fcntl,
    // dup2, close_range via syscall, then those `restrict` lists under its
    // own Safety section), allocates nothing and takes no lock (the
    // restrictions were computed in the parent and are moved in by value);
    // it builds errors with `from_raw_os_error`/`last_os_error`, which do
    // not allocate. `ipc_fd` and `children_pid_ns` are the child's copies of
    // descriptors the parent keeps open until after `spawn` returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Orphans among its descendants (a double fork) are re-parented
            // to it, not to init, so killing its tree reaches them.
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The supervisor may have died before prctl took effect. A child
            // in the worker processes' PID namespace reads 0 while its
            // parent (outside) lives, the anchor's 1 once it is gone.
            let ppid = libc::getppid();
            if ppid != parent && ppid != 0 {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // The fork server: its own pid stays the supervisor's view of
            // it, the worker processes it forks start in the namespace.
            if children_pid_ns >= 0 && libc::setns(children_pid_ns, libc::CLONE_NEWPID) != 0 {
                return Err(io::Error::last_os_error());
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
            // Everything above the IPC end is close-on-exec already; marking
            // it here makes that hold even for a descriptor someone opened
            // without the flag. Marked, not closed: std's own pipe, which
            // carries a failed step back to `spawn`, is among them and must
            // stay open until `exec`. Kernels before 5.11 lack the flag:
            // the flags set at opening still protect us there.
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            let first = (WORKER_FD + 1) as libc::c_uint;
            let _ = libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            );
            match &restrictions {
                Some(r) => restrict(r),
                None => Ok(()),
            }
        });
    }
}

/// The error `spawn` returns for a failed `step`: the step and the errno in
/// one code (`from_raw_os_error` does not allocate).
pub(super) fn failed(step: Step) -> io::Error {
    let errno = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL);
    io::Error::from_raw_os_error(step.code(errno))
}

/// Applies `r` in the child, between fork and exec.
///
/// # Safety
///
/// Only async-signal-safe system calls: setrlimit, unshare, socket, ioctl,
/// close, setgroups, setgid, setuid, prctl, capget, capset, and those of
/// [`namespaces::enter`]. No allocation.
unsafe fn restrict(r: &ChildRestrictions) -> io::Result<()> {
    for (step, resource, soft, hard) in r.rlimits.iter().flatten() {
        // nix's setrlimit is a plain call of setrlimit(2).
        if let Err(errno) = setrlimit(*resource, *soft, *hard) {
            return Err(io::Error::from_raw_os_error(step.code(errno as i32)));
        }
    }
    if r.unshare_net {
        // SAFETY: plain system calls on values we own.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(failed(Step::Network));
            }
            loopback_up()?;
        }
    }
    if r.drop_capabilities {
        // SAFETY: prctl and capget on this process, no pointers but a
        // local (see the function).
        unsafe { drop_bounding_set()? };
    }
    if let Some((uid, gid)) = r.ids {
        // SAFETY: plain system calls; setgroups gets an empty list.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 {
                return Err(failed(Step::Group));
            }
            if libc::setuid(uid) != 0 {
                return Err(failed(Step::User));
            }
        }
    }
    if r.drop_capabilities {
        // SAFETY: prctl and capset on this process with locals.
        unsafe { drop_capability_sets()? };
    }
    if r.no_new_privs {
        // SAFETY: a plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(failed(Step::NoNewPrivs));
        }
    }
    if let Some(ns) = &r.namespaces {
        // SAFETY: we are between fork and exec, single-threaded; the
        // strings `ns` holds were built before the fork.
        unsafe { namespaces::enter(ns)? };
    }
    Ok(())
}

/// A command whose child checks whether this host lets the supervisor
/// give worker processes private user, PID, IPC, mount and network
/// namespaces: it creates them, mounts a tmpfs inside and exits, never
/// exec'ing; so a success reaches the parent as exit status 0 and a
/// failure as the error `spawn` returns. It runs as the supervisor's user,
/// or as `unprivileged` (a uid a task could run as) when that is root.
pub(crate) fn namespace_probe(unprivileged: u32) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes the async-signal-safe calls of `namespaces::probe`, then
    // `_exit`s.
    unsafe {
        cmd.pre_exec(move || {
            namespaces::probe(unprivileged)?;
            libc::_exit(0)
        });
    }
    cmd
}

/// `capget`/`capset`'s header (`struct __user_cap_header_struct`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One half of `capget`/`capset`'s data (`struct __user_cap_data_struct`);
/// version 3 takes two, for capabilities 0-31 and 32-63.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_SETPCAP: u32 = 8;

/// Empties the capability bounding set, so that nothing executed later
/// (the worker binary itself, run as root without `user`) gets a
/// capability back. Dropping needs CAP_SETPCAP: a supervisor without it
/// cannot, and skips this; no-new-privileges then keeps `exec` from
/// granting anything the process does not already hold, and
/// [`drop_capability_sets`] leaves it holding nothing.
///
/// # Safety
///
/// Async-signal-safe calls only (capget, prctl); the capget buffers are
/// locals of the sizes version 3 expects.
pub(super) unsafe fn drop_bounding_set() -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two `CapData` for version 3, which `data` holds.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(failed(Step::Capabilities));
    }
    if data[0].effective & (1 << CAP_SETPCAP) == 0 {
        return Ok(());
    }
    // Up to the kernel's last capability (/proc/sys/kernel/cap_last_cap):
    // the first number past it is refused with EINVAL.
    for cap in 0..64 {
        // SAFETY: a plain prctl on this process.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                break;
            }
            return Err(failed(Step::Capabilities));
        }
    }
    Ok(())
}

/// Empties the ambient, inheritable, permitted and effective sets, once
/// switching user and creating namespaces no longer need them. Dropping
/// needs no privilege.
///
/// # Safety
///
/// Async-signal-safe calls only (prctl, capset) with locals.
pub(super) unsafe fn drop_capability_sets() -> io::Result<()> {
    // SAFETY: a plain prctl; kernels before 4.3 have no ambient set and
    // answer EINVAL, which leaves nothing to clear.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if cleared != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(failed(Step::Capabilities));
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [CapData::default(); 2];
    // SAFETY: capset reads two `CapData` for version 3, which `none` holds.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, none.as_ptr()) } != 0 {
        return Err(failed(Step::Capabilities));
    }
    Ok(())
}

/// Brings up `lo` in the new network namespace (it starts down), so a task
/// can still talk to itself over 127.0.0.1.
///
/// # Safety
///
/// Async-signal-safe calls only; `req` is a local, zeroed `ifreq`.
pub(super) unsafe fn loopback_up() -> io::Result<()> {
    // SAFETY: socket/ioctl/close on a descriptor we create and close here;
    // the `ifreq` is a zeroed local whose name we fill with "lo" and a NUL.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(failed(Step::Network));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let ok = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) == 0
        };
        let err = failed(Step::Network);
        libc::close(sock);
        if ok { Ok(()) } else { Err(err) }
    }
}

/// Takes ownership of a descriptor received with `SCM_RIGHTS`.
pub(crate) fn adopt_received(fd: RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `recvmsg` just created this descriptor in this process and
    // returned its number to the caller alone.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Makes the supervisor non-dumpable: no core dumps, and no process of the
/// same user (a task, say) may trace it, read its memory or environment
/// (where the Redis URL and password are) through /proc, or copy its
/// authenticated Redis sockets with `pidfd_getfd`. Worker processes start
/// by `exec`, which makes them dumpable again.
pub(crate) fn forbid_inspection() -> io::Result<()> {
    // SAFETY: a plain prctl on this process; no pointers are passed.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The anchor's command name (`/proc/<pid>/comm`, at most 15 bytes), so
/// that `ps` tells it from the supervisor it was forked from.
const ANCHOR_NAME: &std::ffi::CStr = c"rt-pidns-anchor";

/// The init of the PID namespace worker processes run in: a forked copy
/// of the supervisor that does nothing but reap (see [`start_anchor`]).
#[derive(Debug)]
pub(crate) struct Anchor {
    /// Its pid (in the supervisor's namespace).
    pub(crate) pid: u32,
    /// Its PID namespace, entered by a spawning thread with [`enter_pid_ns`].
    pub(crate) ns: OwnedFd,
    /// The supervisor's own PID namespace, to return to.
    pub(crate) host: OwnedFd,
}

/// Makes this thread's future children start in the PID namespace `ns`
/// (`setns(CLONE_NEWPID)` changes only the calling thread's namespace for
/// children; the thread itself stays where it is).
pub(crate) fn enter_pid_ns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a plain system call on a descriptor the caller borrows.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a PID namespace and its init, the anchor, as a child of the
/// calling thread, and leaves the thread's own children in the
/// supervisor's namespace. Call it on the thread that lives as long as
/// the supervisor: the anchor dies with that thread (parent-death
/// signal, which follows the thread), and when the init of a PID
/// namespace dies the kernel kills every process in it.
///
/// `unshare(CLONE_NEWPID)` acts on the calling thread only and makes its
/// *next* child the namespace's pid 1, so the anchor is forked at once;
/// `setns` to the namespace the thread started in (its active one) then
/// restores the thread. Both need CAP_SYS_ADMIN; without it this fails
/// with the kernel's error and nothing changed.
pub(crate) fn start_anchor() -> io::Result<Anchor> {
    let host = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/pid")?);
    // A pidfd of this process tells the anchor whether the supervisor died
    // before its parent-death signal was armed (getppid cannot: the
    // supervisor is outside the anchor's namespace, where it reads 0).
    // SAFETY: pidfd_open takes a pid and flags; no memory is passed.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    let pidfd = match libc::c_int::try_from(pidfd) {
        // SAFETY: pidfd_open just created this descriptor (close-on-exec)
        // and returned it to us alone.
        Ok(fd) if fd >= 0 => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => None,
    };
    // SAFETY: a plain system call; it changes this thread's namespace for
    // children only.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let parent_fd = pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    // SAFETY: the child of this fork runs only `anchor`, which makes
    // async-signal-safe system calls, allocates nothing, takes no lock
    // and never returns, so a fork of a multi-threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see the fork above; `parent_fd` is -1 or our copy of the
        // pidfd.
        unsafe { anchor(parent_fd) }
    }
    let forked = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid.unsigned_abs())
    };
    drop(pidfd);
    // Whatever happened, this thread's next child must not become the
    // namespace's init.
    enter_pid_ns(host.as_fd())?;
    let pid = forked?;
    match std::fs::File::open(format!("/proc/{pid}/ns/pid")) {
        Ok(ns) => Ok(Anchor {
            pid,
            ns: OwnedFd::from(ns),
            host,
        }),
        Err(e) => {
            // It died at once (the supervisor is going away): reap it.
            // SAFETY: plain system calls on our own unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
            Err(e)
        }
    }
}

/// The anchor's whole life, in the child of a fork: die with the thread
/// that forked it, drop every descriptor of the supervisor, block every
/// signal that can be blocked (a `systemctl kill` of the unit, or a Ctrl-C
/// to the terminal's group, must not end the namespace; the kernel ignores
/// signals without a handler sent to a namespace's init from inside it
/// anyway), and reap whatever is re-parented to it: as the namespace's
/// init it adopts the orphans of worker processes that died. It is the
/// reaper of those alone; the supervisor only kills them (see `family`).
///
/// # Safety
///
/// Only in the child of a `fork`: async-signal-safe system calls (prctl,
/// poll, close_range, sigprocmask, waitpid, sigtimedwait, _exit) on
/// locals, no allocation, no lock.
unsafe fn anchor(parent_fd: RawFd) -> ! {
    // SAFETY: plain system calls on locals; see the function's Safety.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            libc::_exit(1);
        }
        if parent_fd >= 0 {
            let mut p = libc::pollfd {
                fd: parent_fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // Readable: the supervisor has exited already.
            if libc::poll(&mut p, 1, 0) != 0 {
                libc::_exit(1);
            }
        }
        let _ = libc::syscall(libc::SYS_close_range, 0, libc::c_uint::MAX, 0);
        let _ = libc::prctl(libc::PR_SET_NAME, ANCHOR_NAME.as_ptr(), 0, 0, 0);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        // A blocked SIGCHLD is queued (not ignored) and wakes the wait; the
        // timeout is a second line only.
        let tick = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        loop {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            libc::sigtimedwait(&chld, std::ptr::null_mut(), &tick);
        }
    }
}
