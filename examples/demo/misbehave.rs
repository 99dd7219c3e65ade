//! Tasks that misbehave on purpose, to show (and test) that the supervisor
//! still records an outcome. The demo keeps its `unsafe` here and in
//! `hostile_tree.rs`.

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
