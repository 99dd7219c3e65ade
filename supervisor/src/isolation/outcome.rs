//! Naming the limit a task hit.
//!
//! A worker process that hits a limit does not say so: it dies by a signal
//! (SIGXCPU for CPU time, SIGABRT when an allocation fails under the
//! memory limit), exits with a code its SIGSYS handler chose, or the task
//! returns an error because `fork` failed. The slot knows which profile was
//! in force, so it can tell "killed by signal 24 (SIGXCPU)" is "CPU time
//! limit (10 s) exceeded". Pure functions, no I/O.

use redis_tasks_config::settings::Isolation;
use redis_tasks_config::settings::isolation::{DENIED_SYSCALLS, EXIT_BLOCKED_SYSCALL_BASE};
use redis_tasks_protocol::model::LimitHit;
use redis_tasks_protocol::{ExitReason, Failure, FailureKind, Outcome};

/// `ended` with a limit named when the profile explains it; unchanged
/// otherwise.
pub(crate) fn explain(ended: Outcome, profile: &Isolation, oom_killed: Option<bool>) -> Outcome {
    let Outcome::Failure(Failure { kind, .. }) = ended else {
        return ended;
    };
    let kind = match kind {
        // The task's cgroup says for sure (its memory.events).
        FailureKind::Crashed(how) if oom_killed == Some(true) => {
            FailureKind::LimitExceeded(LimitHit::Memory {
                bytes: profile.memory_limit.unwrap_or_default(),
                how,
            })
        }
        FailureKind::Crashed(ExitReason::Signal(libc::SIGKILL))
            if oom_killed == Some(false) && profile.cpu_time_limit.is_none() =>
        {
            FailureKind::Crashed(ExitReason::Signal(libc::SIGKILL))
        }
        FailureKind::Crashed(reason) => match limit_of_crash(reason, profile) {
            Some(hit) => FailureKind::LimitExceeded(hit),
            None => FailureKind::Crashed(reason),
        },
        FailureKind::Error(text) | FailureKind::Panic(text)
            if profile.process_limit.is_some() && looks_like_fork_failure(&text) =>
        {
            FailureKind::LimitExceeded(LimitHit::Processes {
                max: profile.process_limit.unwrap_or_default(),
                detail: text,
            })
        }
        other => other,
    };
    Outcome::failure(kind)
}

fn limit_of_crash(reason: ExitReason, profile: &Isolation) -> Option<LimitHit> {
    match reason {
        ExitReason::Code(code) if profile.seccomp == Some(true) => {
            let index = usize::try_from(code.checked_sub(EXIT_BLOCKED_SYSCALL_BASE)?).ok()?;
            if index > DENIED_SYSCALLS.len() {
                return None;
            }
            let name = DENIED_SYSCALLS
                .get(index)
                .map_or_else(|| "(a denied one)".to_owned(), |n| (*n).to_owned());
            Some(LimitHit::BlockedSyscall { name })
        }
        ExitReason::Signal(libc::SIGSYS) if profile.seccomp == Some(true) => {
            Some(LimitHit::BlockedSyscall {
                name: "(a denied one)".to_owned(),
            })
        }
        ExitReason::Signal(libc::SIGXCPU) => profile
            .cpu_time_limit
            .map(|secs| LimitHit::CpuTime { secs }),
        // The hard CPU limit (a task that caught SIGXCPU) ends in SIGKILL;
        // with no CPU limit, a SIGKILL under a memory limit is the kernel
        // out of memory.
        ExitReason::Signal(libc::SIGKILL) => match (profile.cpu_time_limit, profile.memory_limit) {
            (Some(secs), _) => Some(LimitHit::CpuTime { secs }),
            (None, Some(bytes)) => Some(LimitHit::Memory { bytes, how: reason }),
            (None, None) => None,
        },
        // Rust aborts when an allocation fails.
        ExitReason::Signal(libc::SIGABRT) => profile
            .memory_limit
            .map(|bytes| LimitHit::Memory { bytes, how: reason }),
        _ => None,
    }
}

/// Whether a task's error reads like `fork`, `clone` or thread creation
/// failing with EAGAIN, which is what the process limit makes them do.
fn looks_like_fork_failure(text: &str) -> bool {
    text.contains("(os error 11)")
        || text.contains("code: 11,")
        || text.contains("Resource temporarily unavailable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crashed(reason: ExitReason, profile: &Isolation) -> String {
        explain(
            Outcome::failure(FailureKind::Crashed(reason)),
            profile,
            None,
        )
        .error_text()
        .unwrap_or_default()
    }

    #[test]
    fn signals_under_limits_name_the_limit() {
        let profile = Isolation::new().memory_limit(256 << 20).cpu_time_limit(10);
        assert_eq!(
            crashed(ExitReason::Signal(libc::SIGXCPU), &profile),
            "CPU time limit (10 s) exceeded"
        );
        assert_eq!(
            crashed(ExitReason::Signal(libc::SIGABRT), &profile),
            "memory limit (256 MiB) exceeded: worker process killed by signal 6 (SIGABRT)"
        );
        // Without the limits, the plain words stay.
        assert_eq!(
            crashed(ExitReason::Signal(libc::SIGABRT), &Isolation::new()),
            "worker process killed by signal 6 (SIGABRT)"
        );
    }

    #[test]
    fn the_supervisors_own_kill_is_never_a_limit() {
        let profile = Isolation::new().memory_limit(256 << 20).cpu_time_limit(10);
        let ours = Outcome::failure(FailureKind::KilledBySupervisor("why".into()));
        assert_eq!(explain(ours.clone(), &profile, None), ours);
        assert_eq!(
            ours.error_text().unwrap_or_default(),
            "worker process killed by the supervisor: why"
        );
    }

    #[test]
    fn seccomp_exit_codes_name_the_call() {
        let profile = Isolation::new().seccomp(true);
        let ptrace = DENIED_SYSCALLS
            .iter()
            .position(|n| *n == "ptrace")
            .and_then(|i| i32::try_from(i).ok())
            .expect("ptrace is denied");
        assert_eq!(
            crashed(
                ExitReason::Code(EXIT_BLOCKED_SYSCALL_BASE + ptrace),
                &profile
            ),
            "blocked system call ptrace"
        );
        assert_eq!(
            crashed(ExitReason::Code(3), &profile),
            "worker process exited with code 3"
        );
    }

    #[test]
    fn fork_failures_under_a_process_limit_name_it() {
        let profile = Isolation::new().user("nobody").process_limit(8);
        let text = "cannot start sleep: Resource temporarily unavailable (os error 11)";
        let ended = explain(
            Outcome::failure(FailureKind::Error(text.into())),
            &profile,
            None,
        );
        assert_eq!(
            ended,
            Outcome::failure(FailureKind::LimitExceeded(LimitHit::Processes {
                max: 8,
                detail: text.into()
            }))
        );
        for text in [
            "no such file",
            "cannot connect to 127.0.0.1:1: Connection refused (os error 111)",
        ] {
            let other = Outcome::failure(FailureKind::Error(text.into()));
            assert_eq!(explain(other.clone(), &profile, None), other);
        }
    }
}
