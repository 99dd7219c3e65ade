//! Tasks that misbehave on purpose, to show (and test) that the supervisor
//! still records an outcome. The demo's `unsafe` lives here and in the other
//! hostile modules (`hostile_*.rs`), each call with its `SAFETY:` comment.

use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

use redis_tasks::protocol::ipc::WORKER_FD;

/// Dies by SIGSEGV, as a task with a memory bug would.
pub fn segfault() -> ! {
    // SAFETY: `signal` restores the default action for SIGSEGV (Rust's own
    // handler only exists to report stack overflows); `raise` then delivers
    // the signal to this thread, and the default action ends the process.
    // Neither call touches memory we own.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    unreachable!("SIGSEGV with its default action ends the process")
}

/// The IPC socket of this worker process, borrowed without taking it over.
fn ipc_socket() -> ManuallyDrop<UnixStream> {
    // SAFETY: in a worker process descriptor WORKER_FD is the open IPC
    // socket, owned by the worker loop. ManuallyDrop keeps this second
    // handle from closing it; the task only writes through it.
    ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(WORKER_FD) })
}

/// Writes bytes that are not a valid frame (a hostile or buggy task).
pub fn write_garbage_frame() -> Result<(), String> {
    let mut socket = ipc_socket();
    socket
        .write_all(&[3, 0, 0, 0, 0xff, 0xfe, 0xfd])
        .map_err(|e| e.to_string())?;
    std::thread::sleep(std::time::Duration::from_secs(30));
    Ok(())
}

/// Announces a frame far above the size limit.
pub fn write_oversized_frame() -> Result<(), String> {
    let mut socket = ipc_socket();
    socket
        .write_all(&u32::MAX.to_le_bytes())
        .map_err(|e| e.to_string())?;
    std::thread::sleep(std::time::Duration::from_secs(30));
    Ok(())
}

/// Calls `ptrace(PTRACE_TRACEME)`, a call the seccomp deny list blocks.
pub fn ptrace_self() -> Result<(), String> {
    // SAFETY: PTRACE_TRACEME takes no pointers; it only marks this process
    // as traceable by its parent.
    let rc = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("ptrace: {}", std::io::Error::last_os_error()))
    }
}

/// Tries to copy descriptors 0..64 of the parent (the supervisor, or the
/// fork server) with `pidfd_getfd`, as an attacker after its authenticated
/// Redis connections would; returns how many it got.
pub fn steal_parent_fds() -> Result<u32, String> {
    // Outside this task's PID namespace the parent cannot even be named:
    // nothing to copy.
    let Some(parent) = crate::host_ids::local_pid(crate::host_ids::parent()) else {
        return Ok(0);
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) };
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    let mut stolen = 0;
    for fd in 0..64 {
        // SAFETY: pidfd_getfd takes the pidfd, a descriptor number of the
        // target and flags, and returns a new descriptor or -1.
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) };
        if copy >= 0 {
            stolen += 1;
            // SAFETY: `copy` is a descriptor this call just created.
            unsafe { libc::close(copy as i32) };
        }
    }
    // SAFETY: `pidfd` is a descriptor this function opened.
    unsafe { libc::close(pidfd as i32) };
    Ok(stolen)
}

/// Looks for the other worker processes of its supervisor (or fork server)
/// running as its own user, and tries what an attacker would: open their memory and
/// copy a descriptor with `pidfd_getfd`. Returns how many it reached.
pub fn reach_siblings() -> Result<u32, String> {
    let me = crate::host_ids::pid();
    let parent = crate::host_ids::parent();
    let uid = std::fs::metadata("/proc/self").map_err(|e| e.to_string())?;
    let uid = std::os::unix::fs::MetadataExt::uid(&uid);
    let mut reached = 0;
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
        };
        // Siblings: other children of this worker process's parent.
        let sibling = field("PPid:") == Some(parent) && field("Uid:") == Some(uid);
        if pid == me || !sibling {
            continue;
        }
        if std::fs::File::open(format!("/proc/{pid}/mem")).is_ok() {
            reached += 1;
            continue;
        }
        let Some(local) = crate::host_ids::local_pid(pid) else {
            continue;
        };
        // SAFETY: pidfd_open takes a pid and flags, returns a descriptor or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, local, 0) };
        if pidfd >= 0 {
            // SAFETY: pidfd_getfd takes the pidfd, a target descriptor number
            // and flags, and returns a new descriptor or -1.
            let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) };
            if copy >= 0 {
                reached += 1;
                // SAFETY: `copy` was just created by this call.
                unsafe { libc::close(copy as i32) };
            }
            // SAFETY: `pidfd` was opened above.
            unsafe { libc::close(pidfd as i32) };
        }
    }
    Ok(reached)
}

/// Sends SIGKILL to every process it may signal (`kill(-1)`), as a task out
/// to take its sibling tasks down would. Refuses to run as root, where it
/// would hit far more than tasks. (The kernel answers "sent" as soon as any
/// process was tried, even one it was not allowed to signal.)
pub fn kill_everyone() -> Result<String, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Err("kill_everyone refuses to run as root".into());
    }
    // SAFETY: kill takes a pid and a signal number; -1 addresses every
    // process this one may signal, except itself and init.
    let sent = unsafe { libc::kill(-1, libc::SIGKILL) };
    Ok(if sent == 0 {
        "sent".to_owned()
    } else {
        std::io::Error::last_os_error().to_string()
    })
}
