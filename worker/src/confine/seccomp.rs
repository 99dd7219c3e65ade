//! The seccomp filters of an isolated worker process.
//!
//! Up to two filters, installed in this order (the kernel runs every
//! filter on every call and the strictest answer wins):
//!
//! 1. an errno filter: `clone3` fails with ENOSYS under the deny list (its
//!    flags sit in a struct the filter cannot read, so libc must fall back
//!    to `clone`, whose flags it can: namespaces and `CLONE_PARENT` are
//!    denied there); with the network off, `socket`
//!    for `AF_UNIX` fails with EAFNOSUPPORT (a network namespace does not
//!    hide pathname sockets such as Redis's; `socketpair` stays allowed)
//!    and `io_uring_setup` with ENOSYS (io_uring can open and connect
//!    sockets without a system call the filter sees);
//! 2. the deny list, [`DENIED_SYSCALLS`]: a denied call is not made, the
//!    kernel sends SIGSYS, and the handler of `sys::sigsys` exits with a
//!    code that names the call. The same filter stops a task from taking
//!    that handler away (`rt_sigaction` on SIGSYS) or stacking a filter of
//!    its own that could make the handler's `exit_group` fail (`seccomp`,
//!    `prctl(PR_SET_SECCOMP)`); a task that blocks SIGSYS instead is killed
//!    by it, since the kernel forces a seccomp SIGSYS through.

use std::collections::BTreeMap;

use redis_tasks_config::settings::isolation::DENIED_SYSCALLS;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::sys::sigsys::TABLE;

/// The `clone` flags a task may not use: those that create namespaces,
/// and `CLONE_PARENT`, which makes the new process a child of the worker
/// process's parent (the supervisor), outside the worker process's tree,
/// where the kill of its descendants would miss it (the supervisor's own
/// check before a reused process's next task catches it too; this is
/// defence in depth). (`CLONE_NEWTIME` shares its bit with the exit signal
/// in `clone`'s flags and exists only for `unshare` and `clone3`, both
/// denied; `clone3` fails with ENOSYS, so its flags need no rule.)
const DENIED_CLONE_FLAGS: [libc::c_int; 8] = [
    libc::CLONE_PARENT,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// Installs the filters: the deny list when `deny_list`, the Unix-socket
/// refusal when `deny_unix_sockets`.
pub(super) fn apply(deny_list: bool, deny_unix_sockets: bool) -> Result<(), String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        format!(
            "seccomp filters are not built for {}",
            std::env::consts::ARCH
        )
    })?;
    let mut absent = BTreeMap::new();
    if deny_list {
        absent.insert(libc::SYS_clone3, Vec::new());
    }
    if deny_unix_sockets {
        absent.insert(libc::SYS_io_uring_setup, Vec::new());
        let unix = rule(vec![condition(0, SeccompCmpOp::Eq, libc::AF_UNIX as u64)?])?;
        install(filter(
            BTreeMap::from([(libc::SYS_socket, vec![unix])]),
            SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
            arch,
        )?)?;
    }
    if !absent.is_empty() {
        install(filter(
            absent,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )?)?;
    }
    if deny_list {
        let denied = filter(deny_list_rules()?, SeccompAction::Trap, arch)?;
        crate::sys::sigsys::install()
            .map_err(|e| format!("cannot install the SIGSYS handler: {e}"))?;
        // Last: it forbids installing filters.
        install(denied)?;
    }
    Ok(())
}

/// The system-call number of a name in [`DENIED_SYSCALLS`] on this
/// architecture (`None` for a call it does not have).
pub(super) fn syscall_number(name: &str) -> Option<i64> {
    TABLE
        .iter()
        .find(|(n, nr)| *n == name && *nr >= 0)
        .map(|(_, nr)| *nr)
}

/// Every call of the deny list with the arguments that make it denied
/// (no rule: denied whatever its arguments).
fn deny_list_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules = BTreeMap::new();
    for name in DENIED_SYSCALLS {
        let Some(nr) = syscall_number(name) else {
            continue;
        };
        let matching = match name {
            "clone" => DENIED_CLONE_FLAGS
                .iter()
                .map(|flag| {
                    let flag = *flag as u64;
                    rule(vec![condition(0, SeccompCmpOp::MaskedEq(flag), flag)?])
                })
                .collect::<Result<_, _>>()?,
            // Reading the action stays allowed; setting one (a handler or
            // SIG_IGN) is denied.
            "rt_sigaction" => vec![rule(vec![
                condition(0, SeccompCmpOp::Eq, libc::SIGSYS as u64)?,
                SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, 0)
                    .map_err(compile_error)?,
            ])?],
            "prctl" => vec![rule(vec![condition(
                0,
                SeccompCmpOp::Eq,
                libc::PR_SET_SECCOMP as u64,
            )?])?],
            _ => Vec::new(),
        };
        rules.insert(nr, matching);
    }
    Ok(rules)
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(compile_error)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(compile_error)
}

fn compile_error(e: BackendError) -> String {
    format!("cannot build the filter: {e}")
}

fn filter(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    SeccompFilter::new(rules, SeccompAction::Allow, action, arch)
        .map_err(compile_error)?
        .try_into()
        .map_err(compile_error)
}

fn install(program: BpfProgram) -> Result<(), String> {
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| format!("the kernel refused the filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_follows_the_deny_list() {
        let names: Vec<&str> = TABLE.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, DENIED_SYSCALLS);
        assert_eq!(syscall_number("mount"), Some(libc::SYS_mount));
        assert_eq!(syscall_number("fsopen"), Some(libc::SYS_fsopen));
    }

    #[test]
    fn the_deny_list_compiles() {
        let rules = deny_list_rules().expect("rules");
        assert_eq!(rules[&libc::SYS_clone].len(), DENIED_CLONE_FLAGS.len());
        assert!(rules[&libc::SYS_ptrace].is_empty());
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("arch");
        filter(rules, SeccompAction::Trap, arch).expect("program");
    }
}
