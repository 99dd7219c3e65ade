//! Isolation profiles: the restrictions a worker process runs a task under.
//!
//! Untrusted tasks (uploads, user scripts, parsers) must be contained: a
//! profile lists resource limits, the user and group to run as, the
//! environment, network and filesystem access, and a system-call deny list.
//! A profile comes from a `[queues.<name>]` table of the settings file and
//! from a task function's options; [`Isolation::over`] merges them field by
//! field, the task's own value winning. An empty profile
//! ([`Isolation::is_unrestricted`]) means "as today": the fast path of
//! re-used worker processes. See `docs/security.md`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The restrictions for one task (or queue). Every field is optional: unset
/// means "not restricted by this profile" (or, for the environment, the
/// default allow-list).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Isolation {
    /// Most bytes of private writable memory (heap, anonymous mappings,
    /// thread stacks) the worker process may hold: `RLIMIT_DATA`.
    pub memory_limit: Option<u64>,
    /// Seconds of CPU time the worker process may use: `RLIMIT_CPU`
    /// (SIGXCPU at the limit, SIGKILL a second later).
    pub cpu_time_limit: Option<u64>,
    /// Most open descriptors: `RLIMIT_NOFILE`.
    pub open_files_limit: Option<u64>,
    /// Most processes and threads of the user the task runs as:
    /// `RLIMIT_NPROC`. The kernel counts every process of that user, so it
    /// needs [`user`](Isolation::user) set to a dedicated account, and it does
    /// not apply to root.
    pub process_limit: Option<u64>,
    /// Allow core dumps (default: off in every isolated worker process).
    pub core_dumps: Option<bool>,
    /// The user to run as: a name, a numeric id, or `"dynamic"` (a uid of
    /// each slot's own). Supplementary groups are dropped. Unset under a
    /// root supervisor, a restricted profile runs as `"dynamic"`: as root
    /// it would pass every file permission check (docs/security.md, "A
    /// profile is never root"); unset under another supervisor, as the
    /// supervisor's own user.
    pub user: Option<String>,
    /// The group to run as: a name or a numeric id (default: the user's
    /// primary group).
    pub group: Option<String>,
    /// Names of environment variables passed from the supervisor's
    /// environment (default: a minimal set, see `PASSED_ENV` in the
    /// supervisor). Redis and systemd variables are never passed.
    pub env: Option<Vec<String>>,
    /// The working directory of the worker process. One the task may write
    /// is split per slot: each slot works in its own `slot-<N>` below it
    /// (mode 0700), which the task sees at this path when it has private
    /// namespaces.
    pub working_dir: Option<PathBuf>,
    /// `Some(false)`: a new network namespace with only loopback, and no
    /// Unix-domain sockets (`socket(AF_UNIX)` fails; `socketpair` works).
    pub network: Option<bool>,
    /// With Landlock: paths the task may read (and execute) below.
    pub read_only_paths: Option<Vec<PathBuf>>,
    /// With Landlock: paths the task may read and write below.
    pub read_write_paths: Option<Vec<PathBuf>>,
    /// `Some(true)`: the seccomp deny list [`DENIED_SYSCALLS`].
    pub seccomp: Option<bool>,
    /// Queues a task under this profile may enqueue tasks to from inside
    /// (`TaskContext::enqueue`); `"*"`: any. Unset: any for an
    /// unrestricted profile, none for a restricted one. Not a restriction
    /// of the process: it alone does not make a profile restricted.
    pub enqueue_queues: Option<Vec<String>>,
    /// Task functions such a task may enqueue, as
    /// [`enqueue_queues`](Isolation::enqueue_queues).
    pub enqueue_tasks: Option<Vec<String>>,
}

impl Isolation {
    /// No restriction at all (the default).
    pub fn new() -> Self {
        Isolation::default()
    }

    /// Whether this profile restricts nothing, so a task under it may run
    /// on an ordinary, re-used worker process.
    pub fn is_unrestricted(&self) -> bool {
        let process = Isolation {
            enqueue_queues: None,
            enqueue_tasks: None,
            ..self.clone()
        };
        process == Isolation::default()
    }

    /// Whether a task under this profile may enqueue task function `task`
    /// on `queue` from inside (see [`enqueue_queues`](Isolation::enqueue_queues)).
    pub fn may_enqueue(&self, queue: &str, task: &str) -> bool {
        let open = self.is_unrestricted();
        let allows = |list: &Option<Vec<String>>, name: &str| match list {
            Some(names) => names.iter().any(|n| n == "*" || n == name),
            None => open,
        };
        allows(&self.enqueue_queues, queue) && allows(&self.enqueue_tasks, task)
    }

    /// This profile over `base`: each field set here wins, the others come
    /// from `base` (a task's options over its queue's table).
    pub fn over(&self, base: &Isolation) -> Isolation {
        fn pick<T: Clone>(ours: &Option<T>, theirs: &Option<T>) -> Option<T> {
            ours.clone().or_else(|| theirs.clone())
        }
        Isolation {
            memory_limit: pick(&self.memory_limit, &base.memory_limit),
            cpu_time_limit: pick(&self.cpu_time_limit, &base.cpu_time_limit),
            open_files_limit: pick(&self.open_files_limit, &base.open_files_limit),
            process_limit: pick(&self.process_limit, &base.process_limit),
            core_dumps: pick(&self.core_dumps, &base.core_dumps),
            user: pick(&self.user, &base.user),
            group: pick(&self.group, &base.group),
            env: pick(&self.env, &base.env),
            working_dir: pick(&self.working_dir, &base.working_dir),
            network: pick(&self.network, &base.network),
            read_only_paths: pick(&self.read_only_paths, &base.read_only_paths),
            read_write_paths: pick(&self.read_write_paths, &base.read_write_paths),
            seccomp: pick(&self.seccomp, &base.seccomp),
            enqueue_queues: pick(&self.enqueue_queues, &base.enqueue_queues),
            enqueue_tasks: pick(&self.enqueue_tasks, &base.enqueue_tasks),
        }
    }

    /// Whether the profile asks for Landlock filesystem rules.
    pub fn wants_landlock(&self) -> bool {
        self.read_only_paths.is_some() || self.read_write_paths.is_some()
    }

    /// Allows tasks under this profile to enqueue to these queues (`"*"`:
    /// any).
    pub fn enqueue_queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = S>) -> Self {
        self.enqueue_queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Allows tasks under this profile to enqueue these task functions
    /// (`"*"`: any).
    pub fn enqueue_tasks<S: Into<String>>(mut self, tasks: impl IntoIterator<Item = S>) -> Self {
        self.enqueue_tasks = Some(tasks.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the memory limit in bytes.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Sets the CPU-time limit in seconds.
    pub fn cpu_time_limit(mut self, secs: u64) -> Self {
        self.cpu_time_limit = Some(secs);
        self
    }

    /// Sets the open-file limit.
    pub fn open_files_limit(mut self, files: u64) -> Self {
        self.open_files_limit = Some(files);
        self
    }

    /// Sets the process/thread limit of the task's user.
    pub fn process_limit(mut self, processes: u64) -> Self {
        self.process_limit = Some(processes);
        self
    }

    /// Runs as this user (name or numeric id).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Runs as this group (name or numeric id).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Passes only these environment variables.
    pub fn env<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.env = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Starts the worker process in this directory.
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// `false`: no network but loopback.
    pub fn network(mut self, on: bool) -> Self {
        self.network = Some(on);
        self
    }

    /// Landlock: readable paths.
    pub fn read_only_paths<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.read_only_paths = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// Landlock: readable and writable paths.
    pub fn read_write_paths<P: Into<PathBuf>>(
        mut self,
        paths: impl IntoIterator<Item = P>,
    ) -> Self {
        self.read_write_paths = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// `true`: block the system calls of [`DENIED_SYSCALLS`].
    pub fn seccomp(mut self, on: bool) -> Self {
        self.seccomp = Some(on);
        self
    }
}

/// System calls the seccomp deny list blocks, grouped after systemd's
/// `SystemCallFilter=` sets and Docker's default profile (see
/// docs/security.md): reaching into other processes (`@debug`, pidfds),
/// mounting (`@mount` with the new mount API), namespaces, kernel modules
/// (`@module`), rebooting and kexec (`@reboot`), swap (`@swap`), raw I/O
/// (`@raw-io`), setting the clock (`@clock`), keyrings, and kernel
/// interfaces with a history of exploits (bpf, userfaultfd, io_uring).
/// The last three keep the filter itself in force: changing the SIGSYS
/// action and stacking another filter.
///
/// Some are blocked only with certain arguments (the worker's filter says
/// which): `clone` with a `CLONE_NEW*` flag, `rt_sigaction` installing an
/// action for SIGSYS, `prctl(PR_SET_SECCOMP)`; `seccomp` itself always. `clone3`, whose flags the
/// filter cannot read, fails with ENOSYS instead so libc falls back to
/// `clone`. Calls an architecture lacks (`iopl` off x86) are skipped. A task
/// that makes one is killed, and the outcome names the call.
pub const DENIED_SYSCALLS: [&str; 49] = [
    // Other processes: @debug, and pidfds (a pidfd cannot be restricted to
    // the task's own children by a filter, so it is denied outright).
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_getfd",
    "perf_event_open",
    // @mount, the new mount API included.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "mount_setattr",
    // Namespaces.
    "unshare",
    "setns",
    "clone",
    // @module.
    "init_module",
    "finit_module",
    "delete_module",
    // @reboot.
    "reboot",
    "kexec_load",
    "kexec_file_load",
    // @swap.
    "swapon",
    "swapoff",
    // @raw-io and @cpu-emulation (x86 only).
    "iopl",
    "ioperm",
    "modify_ldt",
    // @privileged leftovers Docker also denies, and @obsolete.
    "acct",
    "quotactl",
    "open_by_handle_at",
    "name_to_handle_at",
    "uselib",
    // @clock (setting it).
    "settimeofday",
    "clock_settime",
    // Keyrings.
    "keyctl",
    "add_key",
    "request_key",
    // Kernel attack surface; io_uring also makes system calls the filter
    // never sees.
    "bpf",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // The filter's own integrity.
    "rt_sigaction",
    "seccomp",
    "prctl",
];

/// Exit codes from here up (one per entry of [`DENIED_SYSCALLS`], in
/// order) mean "killed for making that denied system call": the worker
/// process's SIGSYS handler exits with them, since a signal cannot say
/// which call it was. One more code (`base + len`) means a denied call
/// whose number the handler did not know.
pub const EXIT_BLOCKED_SYSCALL_BASE: i32 = 160;

/// Whether an environment variable must never reach a worker process,
/// whatever a profile allows: Redis settings and credentials, our own
/// settings, and systemd's notification and watchdog variables.
pub fn is_forbidden_env(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.contains("REDIS")
        || upper.starts_with("RT_")
        || upper == "NOTIFY_SOCKET"
        || upper.starts_with("WATCHDOG_")
        || upper == "LISTEN_FDS"
        || upper == "LISTEN_PID"
        || upper == "LISTEN_FDNAMES"
}

pub use redis_tasks_protocol::model::Bytes;

/// Reads a size: a whole number of bytes, or a number with a unit (`K`,
/// `M`, `G`, with or without `i` and `B`; all powers of 1024): `"256M"`,
/// `"1GiB"`, `"512 KiB"`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_profile_wins_field_by_field() {
        let queue = Isolation::new()
            .memory_limit(1 << 30)
            .user("nobody")
            .network(false);
        let task = Isolation::new().memory_limit(64 << 20).network(true);
        let merged = task.over(&queue);
        assert_eq!(merged.memory_limit, Some(64 << 20));
        assert_eq!(merged.user.as_deref(), Some("nobody"));
        assert_eq!(merged.network, Some(true));
        assert!(Isolation::new().over(&Isolation::new()).is_unrestricted());
        assert!(!merged.is_unrestricted());
    }

    #[test]
    fn sizes_read_and_print_in_binary_units() {
        assert_eq!(parse_bytes("256M"), Some(256 << 20));
        assert_eq!(parse_bytes("1 GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes("M"), None);
        assert_eq!(Bytes(256 << 20).to_string(), "256 MiB");
        assert_eq!(Bytes(1536 << 20).to_string(), "1.5 GiB");
        assert_eq!(Bytes(100).to_string(), "100 B");
    }

    #[test]
    fn redis_and_systemd_variables_are_forbidden() {
        for name in [
            "REDIS_URL",
            "redis_password",
            "RT_SETTINGS",
            "NOTIFY_SOCKET",
        ] {
            assert!(is_forbidden_env(name), "{name}");
        }
        assert!(is_forbidden_env("WATCHDOG_USEC"));
        assert!(!is_forbidden_env("PATH"));
    }
}
