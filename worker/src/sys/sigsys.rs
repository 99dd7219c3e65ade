//! Naming a blocked system call (for `confine`).
//!
//! The seccomp filter answers a denied call with `SECCOMP_RET_TRAP`: the
//! kernel does not make the call and sends SIGSYS, with the call's number
//! in the signal information. The handler installed here turns that number
//! into an exit code (`EXIT_BLOCKED_SYSCALL_BASE` + its index in the deny
//! list), which the supervisor reads back into "blocked system call
//! ptrace". It only reads the signal information and calls `_exit`, both
//! async-signal-safe. The filter keeps a task from replacing it (see
//! `confine::seccomp`).

use std::io;

use redis_tasks_config::settings::isolation::{DENIED_SYSCALLS, EXIT_BLOCKED_SYSCALL_BASE};

/// The denied calls' numbers on this architecture, in the order of
/// [`DENIED_SYSCALLS`] (checked by a test); -1 for a call this
/// architecture does not have.
pub(crate) const TABLE: [(&str, i64); 49] = [
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("clone", libc::SYS_clone),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("iopl", x86::IOPL),
    ("ioperm", x86::IOPERM),
    ("modify_ldt", x86::MODIFY_LDT),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("uselib", x86::USELIB),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("seccomp", libc::SYS_seccomp),
    ("prctl", libc::SYS_prctl),
];

/// Calls only x86 has.
#[cfg(target_arch = "x86_64")]
mod x86 {
    pub(super) const IOPL: i64 = libc::SYS_iopl;
    pub(super) const IOPERM: i64 = libc::SYS_ioperm;
    pub(super) const MODIFY_LDT: i64 = libc::SYS_modify_ldt;
    pub(super) const USELIB: i64 = libc::SYS_uselib;
}

/// Calls only x86 has: absent here.
#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    pub(super) const IOPL: i64 = -1;
    pub(super) const IOPERM: i64 = -1;
    pub(super) const MODIFY_LDT: i64 = -1;
    pub(super) const USELIB: i64 = -1;
}

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
            .position(|(_, n)| *n == i64::from(nr) && *n >= 0)
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
