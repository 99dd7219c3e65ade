//! Private namespaces for an isolated worker process, set up between
//! `fork` and `exec` without any privilege (where the kernel allows
//! unprivileged user namespaces): user, PID, IPC and mount, and network
//! when the profile turns it off.
//!
//! The order follows what bubblewrap and nsjail do, in our own shape:
//!
//! 1. `unshare` of every namespace at once, as the user the task will run
//!    as (the user switch has happened already). The new user namespace
//!    owns the others, so the process holds every capability over them,
//!    and none over anything outside.
//! 2. `setgroups` denied, then one-line uid and gid maps that map the
//!    task's own ids to themselves: an unprivileged process may write
//!    exactly that map for itself, and the task keeps a non-zero uid
//!    inside, so `exec` leaves it no capability even in its namespace.
//! 3. Mount propagation made private for the whole tree, then a tmpfs on
//!    `/tmp` (and `/dev/shm`), the slot's directory bound over the
//!    profile's `working_dir`, loopback up in a new network namespace.
//! 4. Two forks. `unshare(CLONE_NEWPID)` puts only the caller's future
//!    children in the new PID namespace: the first becomes its PID 1, a
//!    tiny init that only reaps orphans; the second is the worker process
//!    (PID 2), which goes on to `exec`. The worker is never PID 1: the
//!    kernel drops signals without a handler that an init sends itself,
//!    which would change how an `abort` ends. The process the supervisor
//!    started stays outside as the monitor: it waits for the worker, then
//!    kills the init (which empties the namespace), and ends the way the
//!    worker ended, so the supervisor reads the worker's exit from its
//!    own child as before.

use std::ffi::CStr;
use std::io;

use super::{drop_bounding_set, drop_capability_sets, failed, loopback_up};
use crate::isolation::{Namespaces, Step};

/// Sets up the namespaces of `ns` in the calling child of `fork`, then
/// forks the namespace's init and the worker process. Returns in the
/// worker process only (which then execs); the init and the monitor never
/// return.
///
/// # Safety
///
/// Only between `fork` and `exec` of a single-threaded child: it makes
/// async-signal-safe system calls only (unshare, open, write, close,
/// mount, chdir, fork, waitpid, kill, prctl, poll, pipe2, _exit) on
/// locals and on strings built before the fork, and allocates nothing.
pub(crate) unsafe fn enter(ns: &Namespaces) -> io::Result<()> {
    // SAFETY: see the function's Safety section.
    unsafe {
        let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWIPC;
        flags |= libc::CLONE_NEWNS;
        if ns.net {
            flags |= libc::CLONE_NEWNET;
        }
        // Read before: inside the new namespace, until it is mapped, every
        // id reads as the overflow id (65534).
        let (uid, gid) = (libc::geteuid(), libc::getegid());
        if libc::unshare(flags) != 0 {
            return Err(failed(Step::Namespaces));
        }
        map_own_ids(uid, gid)?;
        mount_private(ns)?;
        if ns.net {
            loopback_up()?;
        }
        split()
    }
}

/// Whether the host lets this process create the namespaces a worker
/// process gets (user, PID, IPC, mount, network) and mount a tmpfs in
/// them. Runs in the child of a `fork` that never execs. As root it first
/// becomes `unprivileged` (uid and gid): tasks never create them as root
/// (mapping uid 0 needs CAP_SETFCAP), and a security module may treat
/// root and other users differently.
///
/// # Safety
///
/// As [`enter`].
pub(crate) unsafe fn probe(unprivileged: u32) -> io::Result<()> {
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWNET;
    // SAFETY: see the function's Safety section.
    unsafe {
        if libc::geteuid() == 0
            && (libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(unprivileged) != 0
                || libc::setuid(unprivileged) != 0)
        {
            return Err(io::Error::last_os_error());
        }
        let (uid, gid) = (libc::geteuid(), libc::getegid());
        if libc::unshare(flags) != 0 {
            return Err(io::Error::last_os_error());
        }
        map_own_ids(uid, gid)?;
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        // Under AppArmor's restriction the namespace is created but holds
        // no capability: this mount is where that shows.
        if libc::mount(
            c"tmpfs".as_ptr(),
            c"/".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        loopback_up().map_err(|_| io::Error::last_os_error())?;
    }
    Ok(())
}

/// Denies `setgroups` and maps `uid` and `gid`, this process's effective
/// ids from before its `unshare`, to themselves in its new user namespace.
///
/// # Safety
///
/// Async-signal-safe calls only, on locals.
unsafe fn map_own_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: prctl cannot touch our memory; the writes use locals.
    unsafe {
        // A non-dumpable process's /proc files belong to root, so it could
        // not write its own maps: it is dumpable for these three writes
        // only, then non-dumpable again (it is a copy of the supervisor).
        let hidden = libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 1;
        if hidden && libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 {
            return Err(failed(Step::Namespaces));
        }
        let mut line = [0u8; 32];
        let written = write_file(c"/proc/self/setgroups", b"deny")
            .and_then(|()| {
                let len = id_map(uid, &mut line);
                write_file(c"/proc/self/uid_map", &line[..len])
            })
            .and_then(|()| {
                let len = id_map(gid, &mut line);
                write_file(c"/proc/self/gid_map", &line[..len])
            });
        if hidden && libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(failed(Step::Namespaces));
        }
        written
    }
}

/// Writes `"<id> <id> 1\n"` into `buf` without allocating; returns its
/// length.
fn id_map(id: u32, buf: &mut [u8; 32]) -> usize {
    let mut digits = [0u8; 10];
    let mut n = id;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    for _ in 0..2 {
        for i in (0..count).rev() {
            buf[len] = digits[i];
            len += 1;
        }
        buf[len] = b' ';
        len += 1;
    }
    buf[len] = b'1';
    buf[len + 1] = b'\n';
    len + 2
}

/// Writes `data` to the file at `path` in one `write`.
///
/// # Safety
///
/// Async-signal-safe calls only.
unsafe fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: open/write/close with a NUL-terminated path and a buffer of
    // `data.len()` bytes.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(failed(Step::Namespaces));
        }
        let written = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = failed(Step::Namespaces);
        libc::close(fd);
        if written == data.len() as isize {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// Mount propagation private for the whole tree (nothing mounted here
/// reaches the host, nothing mounted on the host later reaches here),
/// then the private `/tmp`, `/dev/shm` and working directory.
///
/// # Safety
///
/// Async-signal-safe calls only, on strings built before the fork.
unsafe fn mount_private(ns: &Namespaces) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    let tmpfs = c"tmpfs".as_ptr();
    let hidden = libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: mount and chdir with NUL-terminated strings that outlive
    // the calls, or null where mount allows it.
    unsafe {
        if libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            null.cast(),
        ) != 0
        {
            return Err(failed(Step::Namespaces));
        }
        if let Some(options) = &ns.tmp
            && libc::mount(
                tmpfs,
                c"/tmp".as_ptr(),
                tmpfs,
                hidden,
                options.as_ptr().cast(),
            ) != 0
        {
            return Err(failed(Step::Namespaces));
        }
        if ns.dev_shm
            && libc::mount(
                tmpfs,
                c"/dev/shm".as_ptr(),
                tmpfs,
                hidden,
                c"mode=1777".as_ptr().cast(),
            ) != 0
        {
            return Err(failed(Step::Namespaces));
        }
        if let Some((slot_dir, working_dir, identity)) = &ns.private_dir {
            bind_slot_dir(slot_dir, working_dir, *identity)?;
        }
    }
    Ok(())
}

/// Binds `slot_dir` over `working_dir` and enters it, if `slot_dir`, opened
/// without following a link, is still the directory `identity` (device,
/// inode) the supervisor checked. The mount's source is the descriptor's
/// `/proc/self/fd` entry (opened in this mount namespace, as a bind mount
/// requires), so nothing swapped in after the check is bound.
///
/// # Safety
///
/// Async-signal-safe calls only (open, fstat, mount, chdir, close), on
/// locals and strings built before the fork.
unsafe fn bind_slot_dir(
    slot_dir: &CStr,
    working_dir: &CStr,
    identity: (u64, u64),
) -> io::Result<()> {
    // SAFETY: see the function's Safety section; `stat` and `source` are
    // locals of the sizes the calls expect, `source` NUL-terminated.
    unsafe {
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = libc::open(slot_dir.as_ptr(), flags);
        if fd < 0 {
            return Err(failed(Step::Namespaces));
        }
        let mut stat: libc::stat = std::mem::zeroed();
        let same = libc::fstat(fd, &mut stat) == 0 && (stat.st_dev, stat.st_ino) == identity;
        let mut source = [0u8; 32];
        fd_path(fd, &mut source);
        let bound = same
            && libc::mount(
                source.as_ptr().cast(),
                working_dir.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) == 0
            && libc::chdir(working_dir.as_ptr()) == 0;
        let err = if same {
            failed(Step::Namespaces)
        } else {
            io::Error::from_raw_os_error(Step::Namespaces.code(libc::ESTALE))
        };
        libc::close(fd);
        if bound { Ok(()) } else { Err(err) }
    }
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `buf` without allocating.
fn fd_path(fd: libc::c_int, buf: &mut [u8; 32]) {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = PREFIX.len();
    for i in (0..count).rev() {
        buf[len] = digits[i];
        len += 1;
    }
    buf[len] = 0;
}

/// Forks the PID namespace's init and then the worker process; returns in
/// the worker process only.
///
/// # Safety
///
/// Async-signal-safe calls only; see [`enter`].
unsafe fn split() -> io::Result<()> {
    // SAFETY: see the function's Safety section.
    unsafe {
        // Held open by the monitor: its end tells the init and the worker
        // whether the monitor died before their parent-death signal was set.
        let mut alive = [-1; 2];
        if libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(failed(Step::Namespaces));
        }
        let init = libc::fork();
        if init < 0 {
            return Err(failed(Step::Namespaces));
        }
        if init == 0 {
            follow_monitor(alive);
            reap_forever();
        }
        let worker = libc::fork();
        if worker < 0 {
            let err = failed(Step::Namespaces);
            libc::kill(init, libc::SIGKILL);
            libc::waitpid(init, std::ptr::null_mut(), 0);
            return Err(err);
        }
        if worker == 0 {
            follow_monitor(alive);
            // Not inherited across fork: a double fork of the task comes
            // back to the worker process, as without namespaces.
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                return Err(failed(Step::Namespaces));
            }
            // The namespace's capabilities are not for the task: a uid 0
            // inside would get them back at exec otherwise.
            drop_bounding_set()?;
            drop_capability_sets()?;
            return Ok(());
        }
        monitor(init, worker, alive[1])
    }
}

/// In the init or the worker: die with the monitor, and leave at once if
/// it is gone already.
///
/// # Safety
///
/// Async-signal-safe calls only.
unsafe fn follow_monitor(alive: [libc::c_int; 2]) {
    // SAFETY: prctl, close and poll on our own descriptors.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            libc::_exit(1);
        }
        libc::close(alive[1]);
        let mut p = libc::pollfd {
            fd: alive[0],
            events: libc::POLLIN,
            revents: 0,
        };
        // Hang-up: the monitor (the only writer) is gone.
        if libc::poll(&mut p, 1, 0) != 0 {
            libc::_exit(1);
        }
        libc::close(alive[0]);
    }
}

/// The namespace's init: holds no descriptor, blocks every signal it can,
/// and reaps whatever is re-parented to it until the monitor kills it.
///
/// # Safety
///
/// Async-signal-safe calls only.
unsafe fn reap_forever() -> ! {
    // SAFETY: close_range, sigprocmask, waitpid and sigtimedwait on locals.
    unsafe {
        let _ = libc::syscall(libc::SYS_close_range, 0, libc::c_uint::MAX, 0);
        let _ = libc::prctl(libc::PR_SET_NAME, c"rt-ns-init".as_ptr(), 0, 0, 0);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
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

/// The process the supervisor started, outside the namespace: closes every
/// descriptor but `alive` (the worker alone holds the IPC socket, and
/// `spawn` returns once the worker has exec'd), waits for the worker, kills the init (the
/// kernel then kills everything left in the namespace) and ends as the
/// worker ended.
///
/// # Safety
///
/// Async-signal-safe calls only.
unsafe fn monitor(init: libc::pid_t, worker: libc::pid_t, alive: libc::c_int) -> ! {
    // SAFETY: close_range, prctl, waitpid, kill, signal, sigprocmask,
    // setrlimit and _exit on locals.
    unsafe {
        // All but the write end of `alive`, which the init and the worker
        // watch until they have their parent-death signal.
        let keep = alive as libc::c_uint;
        if keep > 0 {
            let _ = libc::syscall(libc::SYS_close_range, 0, keep - 1, 0);
        }
        let _ = libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0);
        let _ = libc::prctl(libc::PR_SET_NAME, c"rt-ns-monitor".as_ptr(), 0, 0, 0);
        let mut status = 0;
        while libc::waitpid(worker, &mut status, 0) < 0 {
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                status = 255 << 8;
                break;
            }
        }
        libc::kill(init, libc::SIGKILL);
        while libc::waitpid(init, std::ptr::null_mut(), 0) < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            // The worker's core (if any) is the one that matters.
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, ExitStatus};
    use std::time::{Duration, Instant};

    use super::id_map;
    use crate::isolation::{ChildRestrictions, Namespaces};

    /// Runs `sh -c script` as a worker process would start, with private
    /// namespaces when `private`; `None` when the host allows none.
    fn run(script: &str, private: bool) -> Option<ExitStatus> {
        // Tasks never get namespaces as root (see `userns::plan`).
        let ids = nix::unistd::Uid::effective()
            .is_root()
            .then_some((61184, 61184));
        run_as(script, private, ids)
    }

    /// Like [`run`], as user and group `ids` (the supervisor must be root).
    fn run_as(script: &str, private: bool, ids: Option<(u32, u32)>) -> Option<ExitStatus> {
        static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let allowed = ALLOWED.get_or_init(|| {
            crate::sys::namespace_probe(65534)
                .status()
                .is_ok_and(|s| s.success())
        });
        if !allowed {
            eprintln!("skipped: no user namespaces here");
            return None;
        }
        let (_ours, theirs) = UnixStream::pair().expect("pair");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        // As a task gets them: a private /tmp and /dev/shm too.
        let namespaces = Namespaces {
            tmp: Some(c"mode=1777".to_owned()),
            dev_shm: std::path::Path::new("/dev/shm").is_dir(),
            ..Namespaces::default()
        };
        let restrictions = ChildRestrictions {
            namespaces: private.then_some(namespaces),
            ids,
            drop_capabilities: true,
            no_new_privs: true,
            ..ChildRestrictions::default()
        };
        super::super::prepare_child(
            &mut cmd,
            std::os::fd::AsRawFd::as_raw_fd(&theirs),
            Some(restrictions),
            None,
        );
        match cmd.spawn() {
            Ok(mut child) => Some(child.wait().expect("wait")),
            Err(e) => panic!(
                "{e}: {:?}",
                crate::isolation::NotApplied::from_spawn_error(&e)
            ),
        }
    }

    #[test]
    fn the_monitor_ends_as_the_worker_ended() {
        let Some(status) = run("exit 3", true) else {
            return;
        };
        assert_eq!(status.code(), Some(3));
        let status = run("kill -ABRT $$", true).expect("ran");
        assert_eq!(status.signal(), Some(libc::SIGABRT));
        // PID 2 in a namespace of its own, its parent (the monitor)
        // outside it.
        let status = run("test $$ = 2 && test $PPID = 0", true).expect("ran");
        assert_eq!(status.code(), Some(0), "not PID 2 of its own namespace");
        if nix::unistd::Uid::effective().is_root() {
            // A root supervisor's task: another user first, then namespaces
            // that map that user to itself.
            let status = run("test $(id -u) = 61184", true);
            assert_eq!(status.and_then(|s| s.code()), Some(0));
        }
    }

    /// What the namespaces add to a worker process's start:
    /// `cargo test -p redis-tasks-supervisor start_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn start_cost() {
        const N: u32 = 200;
        let mut mean = [Duration::ZERO; 2];
        for (i, private) in [false, true].into_iter().enumerate() {
            let start = Instant::now();
            for _ in 0..N {
                let Some(status) = run("exit 0", private) else {
                    return;
                };
                assert!(status.success());
            }
            mean[i] = start.elapsed() / N;
        }
        println!(
            "start and exit of /bin/sh: {:?} plain, {:?} with private namespaces (+{:?})",
            mean[0],
            mean[1],
            mean[1].saturating_sub(mean[0])
        );
    }

    #[test]
    fn a_descriptor_path_is_built_without_allocating() {
        let mut buf = [0u8; 32];
        super::fd_path(1234, &mut buf);
        let end = buf.iter().position(|&b| b == 0).expect("NUL");
        assert_eq!(&buf[..end], b"/proc/self/fd/1234");
    }

    #[test]
    fn an_id_map_line_is_the_id_twice_and_a_count_of_one() {
        let mut buf = [0u8; 32];
        let len = id_map(61184, &mut buf);
        assert_eq!(&buf[..len], b"61184 61184 1\n");
        let len = id_map(0, &mut buf);
        assert_eq!(&buf[..len], b"0 0 1\n");
        let len = id_map(u32::MAX, &mut buf);
        assert_eq!(&buf[..len], b"4294967295 4294967295 1\n");
    }
}
