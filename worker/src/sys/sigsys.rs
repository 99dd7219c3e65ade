//! Naming a blocked system call (for `confine`).
//!
//! The seccomp filter answers a denied call with `SECCOMP_RET_TRAP`: the
//! kernel does not make the call and sends SIGSYS, with the call's number
//! in the signal information. The handler installed here turns that number
//! into an exit code (`EXIT_BLOCKED_SYSCALL_BASE` + its index in the deny
//! list), which the supervisor reads back into "blocked system call
//! ptrace". It only reads the signal information and calls `_exit`, both
//! async-signal-safe.

use std::io;

use redis_tasks_config::settings::isolation::{DENIED_SYSCALLS, EXIT_BLOCKED_SYSCALL_BASE};

/// The denied calls' numbers on this architecture, in the order of
/// [`DENIED_SYSCALLS`] (checked by a test).
pub(crate) const TABLE: [(&str, i64); 19] = [
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("setns", libc::SYS_setns),
    ("unshare", libc::SYS_unshare),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
];

const _: () = assert!(TABLE.len() == DENIED_SYSCALLS.len());

/// Where the kernel puts the call number in a SIGSYS `siginfo_t` on 64-bit
/// Linux: after `si_signo`, `si_errno`, `si_code`, padding to 8 bytes, and
/// the `_call_addr` pointer of the `_sigsys` member.
#[cfg(target_pointer_width = "64")]
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let unknown = EXIT_BLOCKED_SYSCALL_BASE + TABLE.len() as i32;
    let code = if info.is_null() {
        unknown
    } else {
        // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO
        // handler; for a seccomp SIGSYS its `_sigsys._syscall` field is
        // the `c_int` at SI_SYSCALL_OFFSET, inside the 128-byte structure.
        let nr = unsafe {
            info.cast::<u8>()
                .add(SI_SYSCALL_OFFSET)
                .cast::<libc::c_int>()
                .read()
        };
        TABLE
            .iter()
            .position(|(_, n)| *n == i64::from(nr))
            .map_or(unknown, |i| EXIT_BLOCKED_SYSCALL_BASE + i as i32)
    };
    // SAFETY: `_exit` is async-signal-safe and ends the whole process.
    unsafe { libc::_exit(code) }
}

/// Installs the SIGSYS handler that reports a trapped call by exit code.
pub(crate) fn install() -> io::Result<()> {
    // SAFETY: a zeroed `sigaction` is a valid starting value; we set the
    // handler (an `extern "C"` function with the SA_SIGINFO signature, which
    // only reads its argument and calls `_exit`) and the flags, and pass
    // pointers to live locals.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
