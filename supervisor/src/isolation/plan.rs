//! Turning an isolation profile into what a spawn needs: the restrictions
//! the child applies between `fork` and `exec` (plain numbers, nothing to
//! allocate there), its environment and working directory, and the
//! [`Confine`] it applies to itself after the handshake.
//!
//! Everything that can be checked in the supervisor is checked here
//! (the user exists, the directory exists, a process limit is not asked of
//! root), so that a refusal names the restriction and a reason a person can
//! act on. What only the kernel can refuse is reported from the child as
//! an encoded error code, decoded by [`NotApplied::from_spawn_error`].

use std::borrow::Cow;
use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use nix::sys::resource::Resource;
use nix::unistd::{Group, Uid, User};
use redis_tasks_config::settings::Isolation;
use redis_tasks_config::settings::isolation::is_forbidden_env;
use redis_tasks_protocol::FailureKind;
use redis_tasks_protocol::ipc::message::{Confine, Refusal};

/// One step the child takes between `fork` and `exec`, in order. A failed
/// step travels back to the supervisor inside the error code of `spawn`
/// (`step * STEP_UNIT + errno`), since nothing can be allocated there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum Step {
    /// `setrlimit(RLIMIT_DATA)`.
    Memory = 1,
    /// `setrlimit(RLIMIT_CPU)`.
    CpuTime = 2,
    /// `setrlimit(RLIMIT_NOFILE)`.
    OpenFiles = 3,
    /// `setrlimit(RLIMIT_NPROC)`.
    Processes = 4,
    /// `setrlimit(RLIMIT_CORE)`.
    CoreDumps = 5,
    /// `unshare(CLONE_NEWNET)` and bringing loopback up.
    Network = 6,
    /// `setgroups` and `setgid`.
    Group = 7,
    /// `setuid`.
    User = 8,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs = 9,
    /// Dropping every capability: the bounding set (before switching user,
    /// it needs CAP_SETPCAP), then ambient, inheritable, permitted and
    /// effective (after, when nothing needs them any more).
    Capabilities = 10,
    /// The private user, PID, IPC and mount namespaces (`sys::namespaces`).
    Namespaces = 11,
}

/// The multiplier that separates a [`Step`] from the errno in a child's
/// error code (errno values stay below it).
pub(crate) const STEP_UNIT: i32 = 4096;

impl Step {
    const ALL: [Step; 11] = [
        Step::Memory,
        Step::CpuTime,
        Step::OpenFiles,
        Step::Processes,
        Step::CoreDumps,
        Step::Network,
        Step::Group,
        Step::User,
        Step::NoNewPrivs,
        Step::Capabilities,
        Step::Namespaces,
    ];

    /// The error code the child reports when this step fails with `errno`.
    pub(crate) fn code(self, errno: i32) -> i32 {
        self as i32 * STEP_UNIT + errno.clamp(0, STEP_UNIT - 1)
    }

    /// The restriction's name in the settings.
    pub(crate) fn restriction(self) -> &'static str {
        match self {
            Step::Memory => "memory_limit",
            Step::CpuTime => "cpu_time_limit",
            Step::OpenFiles => "open_files_limit",
            Step::Processes => "process_limit",
            Step::CoreDumps => "core_dumps",
            Step::Network => "network",
            Step::Group => "group",
            Step::User => "user",
            Step::NoNewPrivs => "no_new_privileges",
            Step::Capabilities => "capabilities",
            Step::Namespaces => "namespaces",
        }
    }

    fn hint(self, errno: i32) -> &'static str {
        match (self, errno) {
            (Step::Network, libc::EPERM) => " (creating a network namespace needs CAP_SYS_ADMIN)",
            (Step::Group | Step::User, libc::EPERM) => {
                " (switching user needs CAP_SETUID and CAP_SETGID)"
            }
            (Step::Processes, libc::EAGAIN) => " (the user already has that many processes)",
            (Step::Namespaces, libc::ENOSPC) => " (user.max_user_namespaces reached)",
            (Step::Namespaces, libc::ESTALE) => {
                " (the slot's directory was replaced after it was checked)"
            }
            _ => "",
        }
    }
}

/// A resource limit the child sets: which step, which resource, soft and
/// hard value.
pub(super) type Rlimit = (Step, Resource, u64, u64);

/// The private namespaces of an isolated worker process (see
/// `sys::namespaces`); strings built before the fork.
#[derive(Debug, Clone, Default)]
pub(crate) struct Namespaces {
    /// A network namespace too, with only loopback.
    pub net: bool,
    /// tmpfs options for a private `/tmp`; `None`: the host's `/tmp`
    /// (it holds the binary or a path the profile names).
    pub tmp: Option<CString>,
    /// A private tmpfs on `/dev/shm` (POSIX shared memory).
    pub dev_shm: bool,
    /// The slot's own directory, bound over the profile's `working_dir`,
    /// if it still is the directory (device, inode) that was checked.
    pub private_dir: Option<(CString, CString, (u64, u64))>,
}

/// What the child does between `fork` and `exec`; plain data, moved into
/// the `pre_exec` closure.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildRestrictions {
    /// Limits to set, in order.
    pub rlimits: [Option<Rlimit>; 5],
    /// Enter a new network namespace with only loopback.
    pub unshare_net: bool,
    /// Switch to this user and group, dropping supplementary groups.
    pub ids: Option<(u32, u32)>,
    /// Set no-new-privileges.
    pub no_new_privs: bool,
    /// Drop every capability, the bounding set included: a root
    /// supervisor's worker process would keep all of root's otherwise
    /// when no `user` is set.
    pub drop_capabilities: bool,
    /// Private namespaces, entered last (after the user switch).
    pub namespaces: Option<Namespaces>,
}

/// A restriction that cannot be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{restriction}: {reason}")]
pub struct NotApplied {
    /// The restriction, as the settings name it.
    pub restriction: String,
    /// Why.
    pub reason: String,
}

impl NotApplied {
    fn new(restriction: &str, reason: impl Into<String>) -> Self {
        NotApplied {
            restriction: restriction.to_owned(),
            reason: reason.into(),
        }
    }

    /// Reads the restriction back from the error of a spawn whose child
    /// failed a [`Step`]; `None` for any other error.
    pub fn from_spawn_error(err: &io::Error) -> Option<NotApplied> {
        let code = err.raw_os_error()?;
        let step = Step::ALL
            .into_iter()
            .find(|s| code / STEP_UNIT == *s as i32)?;
        let errno = code % STEP_UNIT;
        Some(NotApplied::new(
            step.restriction(),
            format!(
                "{}{}",
                io::Error::from_raw_os_error(errno),
                step.hint(errno)
            ),
        ))
    }

    /// The outcome of a task that was not run because of this.
    pub fn failure(&self) -> FailureKind {
        FailureKind::NotIsolated {
            restriction: self.restriction.clone(),
            reason: self.reason.clone(),
        }
    }
}

impl From<Refusal> for NotApplied {
    fn from(r: Refusal) -> Self {
        NotApplied {
            restriction: r.restriction,
            reason: r.reason,
        }
    }
}

/// Everything a spawn needs to start a worker process under a profile.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Applied between `fork` and `exec`.
    pub child: ChildRestrictions,
    /// The worker process's whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub working_dir: Option<PathBuf>,
    /// Applied by the worker process itself after the handshake.
    pub confine: Option<Confine>,
    /// Limits its cgroup takes, where the controllers allow them.
    pub cgroup_limits: crate::cgroup::Limits,
}

/// The value of `user` that asks for a uid of the slot's own.
pub(crate) const DYNAMIC_USER: &str = "dynamic";

/// How many uids the dynamic range holds (61184-65519 by default, the range
/// systemd uses for `DynamicUser=`); slot numbers wrap around it.
const DYNAMIC_RANGE: u32 = 4336;

/// A profile as one slot runs it: `user = "dynamic"` (the default for a
/// root supervisor, see [`for_slot`]) turned into the slot's own uid, and
/// the slot's number for its private working directory.
#[derive(Debug, Clone)]
pub(crate) struct SlotProfile<'a> {
    profile: Cow<'a, Isolation>,
    slot: usize,
}

impl std::ops::Deref for SlotProfile<'_> {
    type Target = Isolation;

    fn deref(&self) -> &Isolation {
        &self.profile
    }
}

/// What [`Plan::build`] plans from: a profile, and for a slot's profile
/// the slot it runs on.
pub(crate) trait Profile {
    /// The restrictions.
    fn isolation(&self) -> &Isolation;
    /// The slot the task runs on, when known.
    fn slot(&self) -> Option<usize> {
        None
    }
}

impl Profile for Isolation {
    fn isolation(&self) -> &Isolation {
        self
    }
}

impl Profile for SlotProfile<'_> {
    fn isolation(&self) -> &Isolation {
        &self.profile
    }

    fn slot(&self) -> Option<usize> {
        Some(self.slot)
    }
}

/// `profile` as slot `slot` runs it. `user = "dynamic"` becomes a uid (and
/// gid) of the slot's own: `base + slot`, so no two slots of a supervisor
/// share an account; the uid needs no entry in the user database and owns
/// no files. A root supervisor runs a restricted profile without `user` the
/// same way: as root, the task would pass every file permission check
/// (read a 0600 password file, write `/etc`, open its cgroup's
/// `cgroup.kill`) even without capabilities.
pub(crate) fn for_slot(profile: &Isolation, base: u32, slot: usize) -> SlotProfile<'_> {
    let dynamic = match profile.user.as_deref() {
        Some(user) => user == DYNAMIC_USER,
        None => !profile.is_unrestricted() && Uid::effective().is_root(),
    };
    if !dynamic {
        return SlotProfile {
            profile: Cow::Borrowed(profile),
            slot,
        };
    }
    let offset = u32::try_from(slot).unwrap_or(u32::MAX) % DYNAMIC_RANGE;
    let id = base.saturating_add(offset).to_string();
    let mut own = profile.clone();
    own.user = Some(id.clone());
    own.group = Some(own.group.take().unwrap_or(id));
    SlotProfile {
        profile: Cow::Owned(own),
        slot,
    }
}

impl Plan {
    /// Plans `profile`. `default_env` is the environment worker processes
    /// get without a profile (used when the profile has no allow-list).
    pub(crate) fn build(
        profile: &(impl Profile + ?Sized),
        default_env: &[(String, String)],
    ) -> Result<Plan, NotApplied> {
        let slot = profile.slot();
        let profile = profile.isolation();
        let ids = resolve_ids(profile)?;
        let target_uid = ids
            .as_ref()
            .map_or_else(|| Uid::effective().as_raw(), |(uid, _, _)| *uid);
        if profile.process_limit.is_some() && target_uid == 0 {
            return Err(NotApplied::new(
                "process_limit",
                "the kernel does not apply it to root; set `user` to a dedicated account",
            ));
        }
        if let Some(dir) = &profile.working_dir
            && !dir.is_dir()
        {
            return Err(NotApplied::new(
                "working_dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        let ids_only = ids.as_ref().map(|(uid, gid, _)| (*uid, *gid));
        let target_gid = ids.as_ref().map_or_else(
            || nix::unistd::Gid::effective().as_raw(),
            |(_, gid, _)| *gid,
        );
        let slot_dir = match (&profile.working_dir, slot) {
            (Some(dir), Some(slot)) if super::userns::writable_by(dir, target_uid, target_gid) => {
                Some(super::userns::slot_dir(dir, slot, ids_only)?)
            }
            _ => None,
        };
        let namespaces = super::userns::plan(profile, target_uid, slot_dir.as_ref());
        let unshare_net = profile.network == Some(false) && namespaces.is_none();
        let mut env: Vec<(String, String)> = match &profile.env {
            Some(names) => names
                .iter()
                .filter(|name| !is_forbidden_env(name))
                .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
                .collect(),
            None => default_env.to_vec(),
        };
        if let Some((_, _, Some(home))) = &ids {
            for (key, value) in &mut env {
                if key == "HOME" {
                    value.clone_from(home);
                }
            }
        }
        let confine = Confine {
            landlock: profile.wants_landlock(),
            read_only_paths: profile.read_only_paths.clone().unwrap_or_default(),
            read_write_paths: profile.read_write_paths.clone().unwrap_or_default(),
            seccomp: profile.seccomp == Some(true),
            deny_unix_sockets: profile.network == Some(false),
        };
        let confine =
            (confine.landlock || confine.seccomp || confine.deny_unix_sockets).then_some(confine);
        Ok(Plan {
            child: ChildRestrictions {
                rlimits: rlimits(profile),
                unshare_net,
                ids: ids_only,
                no_new_privs: true,
                drop_capabilities: true,
                namespaces,
            },
            env,
            // Without a mount namespace the slot's directory is the working
            // directory itself (its mode keeps other uids out).
            working_dir: slot_dir
                .map(|d| d.path)
                .or_else(|| profile.working_dir.clone()),
            confine,
            cgroup_limits: crate::cgroup::Limits {
                memory: profile.memory_limit,
                processes: profile.process_limit,
            },
        })
    }
}

fn rlimits(profile: &Isolation) -> [Option<Rlimit>; 5] {
    let same = |step, resource, n: u64| (step, resource, n, n);
    [
        // With the memory controller, the task's cgroup carries the limit
        // (for its whole tree, and an out-of-memory kill is reported).
        profile
            .memory_limit
            .filter(|_| !crate::cgroup::get().is_some_and(|c| c.limits_memory()))
            .map(|b| same(Step::Memory, Resource::RLIMIT_DATA, b)),
        // SIGXCPU at the limit, SIGKILL one second later if it is caught.
        profile
            .cpu_time_limit
            .map(|s| (Step::CpuTime, Resource::RLIMIT_CPU, s, s.saturating_add(1))),
        profile
            .open_files_limit
            .map(|n| same(Step::OpenFiles, Resource::RLIMIT_NOFILE, n)),
        profile
            .process_limit
            .map(|n| same(Step::Processes, Resource::RLIMIT_NPROC, n)),
        (profile.core_dumps != Some(true)).then_some((
            Step::CoreDumps,
            Resource::RLIMIT_CORE,
            0,
            0,
        )),
    ]
}

/// The uid, gid and home directory of the profile's user and group.
fn resolve_ids(profile: &Isolation) -> Result<Option<(u32, u32, Option<String>)>, NotApplied> {
    let user = match &profile.user {
        None => None,
        Some(name) => Some(find_user(name)?),
    };
    let group = match &profile.group {
        None => None,
        Some(name) => Some(find_group(name)?),
    };
    Ok(match (user, group) {
        (None, None) => None,
        (Some(u), group) => {
            let gid = match (group, u.1) {
                (Some(g), _) | (None, Some(g)) => g,
                (None, None) => {
                    return Err(NotApplied::new(
                        "group",
                        format!(
                            "user {} has no entry in the user database; set `group` too",
                            u.0
                        ),
                    ));
                }
            };
            Some((u.0, gid, u.2))
        }
        // A group alone: keep the current user.
        (None, Some(g)) => Some((Uid::effective().as_raw(), g, None)),
    })
}

/// A user by name or number: uid, primary gid and home, when known.
fn find_user(name: &str) -> Result<(u32, Option<u32>, Option<String>), NotApplied> {
    let looked_up = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).map(|u| u.ok_or(Some(uid))),
        Err(_) => User::from_name(name).map(|u| u.ok_or(None)),
    };
    match looked_up {
        Ok(Ok(user)) => Ok((
            user.uid.as_raw(),
            Some(user.gid.as_raw()),
            Some(user.dir.display().to_string()),
        )),
        Ok(Err(Some(uid))) => Ok((uid, None, None)),
        Ok(Err(None)) => Err(NotApplied::new("user", format!("no user named {name:?}"))),
        Err(e) => Err(NotApplied::new(
            "user",
            format!("cannot look up {name:?}: {e}"),
        )),
    }
}

fn find_group(name: &str) -> Result<u32, NotApplied> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(NotApplied::new("group", format!("no group named {name:?}"))),
        Err(e) => Err(NotApplied::new(
            "group",
            format!("cannot look up {name:?}: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_travels_in_the_error_code() {
        let err = io::Error::from_raw_os_error(Step::Network.code(libc::EPERM));
        let not = NotApplied::from_spawn_error(&err).expect("decoded");
        assert_eq!(not.restriction, "network");
        assert!(not.reason.contains("CAP_SYS_ADMIN"), "{}", not.reason);
        let plain = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(NotApplied::from_spawn_error(&plain), None);
    }

    #[test]
    fn unknown_users_and_root_process_limits_are_refused() {
        let profile = Isolation::new().user("no-such-user-for-redis-tasks");
        let err = Plan::build(&profile, &[]).expect_err("unknown user");
        assert_eq!(err.restriction, "user");
        let profile = Isolation::new().user("0").process_limit(10);
        let err = Plan::build(&profile, &[]).expect_err("root");
        assert_eq!(err.restriction, "process_limit");
        let profile = Isolation::new().working_dir("/no/such/dir");
        assert_eq!(
            Plan::build(&profile, &[]).expect_err("dir").restriction,
            "working_dir"
        );
    }

    #[test]
    fn the_environment_is_the_allow_list_without_forbidden_names() {
        let default_env = vec![("PATH".to_owned(), "/bin".to_owned())];
        let plan =
            Plan::build(&Isolation::new().memory_limit(1 << 30), &default_env).expect("plan");
        assert_eq!(plan.env, default_env);
        assert!(plan.child.no_new_privs);
        assert!(plan.child.drop_capabilities);
        assert!(plan.confine.is_none());
        let profile = Isolation::new().env(["REDIS_URL", "NO_SUCH_VARIABLE_HERE"]);
        let plan = Plan::build(&profile, &default_env).expect("plan");
        assert!(plan.env.is_empty(), "{:?}", plan.env);
    }
}
