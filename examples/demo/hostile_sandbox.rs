//! Tasks that try to leave the sandbox of an isolation profile (see
//! docs/security.md, "Threat model"): mount over a host directory, create
//! namespaces, replace the SIGSYS handler that names a blocked call, steal
//! the supervisor's descriptors, keep root's capabilities, reach a Unix
//! socket with the network off. Each returns `Ok` only when its attack
//! worked, so a finished task is a hole in the profile.

use std::ffi::CString;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_tasks::{App, TaskContext};
use serde::Deserialize;
use serde_json::Value;

type Result = std::result::Result<(), String>;

/// Registers every task of this module on `app`.
pub fn register(app: App) -> App {
    app.task("mount_over", mount_over)
        .task("clone_namespaces", |_, _: Value| clone_namespaces())
        .task("unshare_namespaces", |_, _: Value| unshare_namespaces())
        .task("own_sigsys_handler", own_sigsys_handler)
        .task("steal_parent_fd", |_, _: Value| steal_parent_fd())
        .task("capabilities", capabilities)
        .task("unix_connect", unix_connect)
}

#[derive(Deserialize)]
struct Path {
    path: String,
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Mounts a fresh tmpfs over `path` with the new mount API (`fsopen`,
/// `fsconfig`, `fsmount`, `move_mount`) and plants a file in it.
fn mount_over(_: &TaskContext, a: Path) -> Result {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let target = CString::new(a.path.clone()).map_err(|e| e.to_string())?;
    // SAFETY: raw system calls with NUL-terminated strings that outlive
    // them and null pointers where the calls allow them; no memory of ours
    // is written.
    unsafe {
        let fs = libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC);
        if fs < 0 {
            return Err(os_error("fsopen"));
        }
        let null = std::ptr::null::<libc::c_char>();
        if libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, null, null, 0) < 0 {
            return Err(os_error("fsconfig"));
        }
        let mnt = libc::syscall(libc::SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
        if mnt < 0 {
            return Err(os_error("fsmount"));
        }
        let empty = c"".as_ptr();
        let moved = libc::syscall(
            libc::SYS_move_mount,
            mnt,
            empty,
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        if moved < 0 {
            return Err(os_error("move_mount"));
        }
    }
    std::fs::write(format!("{}/planted", a.path), "mounted over")
        .map_err(|e| format!("cannot plant: {e}"))
}

/// Forks with `clone(CLONE_NEWUSER | CLONE_NEWNS)` through the raw system
/// call (as a task could without libc's help); the child exits at once.
fn clone_namespaces() -> Result {
    let flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: without CLONE_VM the child gets its own copy of the memory,
    // as with fork; it only calls the async-signal-safe `_exit`. The parent
    // waits for it with a status variable it owns.
    unsafe {
        let pid = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
        if pid == 0 {
            libc::_exit(0);
        }
        if pid < 0 {
            return Err(os_error("clone"));
        }
        let mut status = 0;
        libc::waitpid(pid as libc::pid_t, &mut status, 0);
    }
    Ok(())
}

/// `unshare(CLONE_NEWUSER | CLONE_NEWNS)`.
fn unshare_namespaces() -> Result {
    // SAFETY: a plain system call without pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } == 0 {
        Ok(())
    } else {
        Err(os_error("unshare"))
    }
}

#[derive(Deserialize)]
struct How {
    /// `handler`: install a handler of its own; `ignore`: SIG_IGN;
    /// `mask`: block SIGSYS.
    how: String,
}

static TRAPPED: AtomicBool = AtomicBool::new(false);

extern "C" fn swallow(_: libc::c_int) {
    TRAPPED.store(true, Ordering::SeqCst);
}

/// Takes SIGSYS away from the worker process (`how`), then calls `ptrace`,
/// which the deny list blocks: the task survives if the blocked call
/// merely returns.
fn own_sigsys_handler(_: &TaskContext, a: How) -> Result {
    // SAFETY: `signal` with a valid disposition (an `extern "C"` handler
    // that only stores to an atomic, or SIG_IGN), `sigprocmask` with a
    // local set; `ptrace(PTRACE_TRACEME)` takes no pointers.
    unsafe {
        match a.how.as_str() {
            "handler" | "ignore" => {
                let action = if a.how == "handler" {
                    swallow as extern "C" fn(libc::c_int) as libc::sighandler_t
                } else {
                    libc::SIG_IGN
                };
                if libc::signal(libc::SIGSYS, action) == libc::SIG_ERR {
                    return Err(os_error("signal"));
                }
            }
            "mask" => {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGSYS);
                if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                    return Err(os_error("pthread_sigmask"));
                }
            }
            other => return Err(format!("unknown way {other:?}")),
        }
        libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
    }
    println!(
        "survived a blocked call (trapped: {})",
        TRAPPED.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Opens a pidfd of the parent (the supervisor) and copies its
/// descriptors with `pidfd_getfd`.
fn steal_parent_fd() -> Result {
    // SAFETY: plain system calls on numbers; the stolen descriptors are
    // closed at once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getppid(), 0);
        if pidfd < 0 {
            return Err(os_error("pidfd_open"));
        }
        let mut stolen = 0;
        for fd in 0..64 {
            let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0);
            if copy >= 0 {
                stolen += 1;
                libc::close(copy as libc::c_int);
            }
        }
        if stolen == 0 {
            return Err(os_error("pidfd_getfd"));
        }
        println!("stole {stolen} descriptors of the supervisor");
    }
    Ok(())
}

/// Records the capability sets of the worker process in the meta object
/// (`CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`, as hex strings).
fn capabilities(ctx: &TaskContext, _: Value) -> Result {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or_default();
        ctx.set_meta(set, value)?;
    }
    Ok(())
}

/// Connects to the Unix socket at `path` and says PING: succeeds if
/// something (Redis) answers.
fn unix_connect(_: &TaskContext, a: Path) -> Result {
    let mut stream = std::os::unix::net::UnixStream::connect(&a.path)
        .map_err(|e| format!("cannot connect to {}: {e}", a.path))?;
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).map_err(|e| e.to_string())?;
    println!(
        "{} answered {}",
        a.path,
        String::from_utf8_lossy(&answer).trim()
    );
    Ok(())
}
