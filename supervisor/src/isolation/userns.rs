//! Private namespaces per isolated worker process, without root.
//!
//! Every worker process of a restricted profile gets user, PID, IPC and
//! mount namespaces of its own (and network, with `network = false`) when
//! the host allows unprivileged user namespaces: `kill(-1)` then reaches
//! only the task's own processes, SysV IPC objects are the task's alone and
//! die with it, `/tmp` and `/dev/shm` are private tmpfs, and the slot's own
//! directory is bound over the profile's `working_dir`. This holds whether
//! the supervisor runs as root or as an unprivileged service user. The
//! system calls are in `sys::namespaces`; this module decides whether the
//! host allows them (once, logged in one line), plans what a profile gets,
//! and prepares each slot's directory.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, fchown};
use redis_tasks_config::settings::Isolation;
use tracing::{info, warn};

use super::NotApplied;
use super::plan::Namespaces;

/// Whether isolated worker processes get private namespaces here; decided
/// once, at the first isolated spawn (or the start-up probe).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| match detect() {
        Ok(()) => {
            info!(
                "isolation: each isolated worker process runs in private user, PID, IPC and \
                 mount namespaces (kill(-1), SysV IPC, /tmp and the working directory are its own)"
            );
            true
        }
        Err(why) => {
            warn!(
                "isolation: no private namespaces for isolated worker processes ({why}); tasks \
                 of one account can signal each other and share SysV IPC and /tmp, see \
                 docs/security.md"
            );
            false
        }
    })
}

/// Reads the host's switches, then tries for real (a sysctl may be absent,
/// or a security module may refuse what the switches allow).
fn detect() -> Result<(), String> {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{name}"))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("kernel.unprivileged_userns_clone is 0".to_owned());
    }
    if sysctl("user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user.max_user_namespaces is 0".to_owned());
    }
    let apparmor = sysctl("kernel/apparmor_restrict_unprivileged_userns");
    // `nobody`, or any uid that is not root: only the credentials matter.
    let mut probe = crate::sys::namespace_probe(65534);
    let tried = crate::family::spawn(&mut probe).and_then(|mut child| {
        let status = child.wait();
        crate::family::forget(child.id());
        match status? {
            s if s.success() => Ok(()),
            s => Err(std::io::Error::other(format!("the probe ended with {s}"))),
        }
    });
    tried.map_err(|e| match apparmor.as_deref() {
        Some("1") => {
            format!("creating them failed: {e}; kernel.apparmor_restrict_unprivileged_userns is 1")
        }
        _ => format!("creating them failed: {e}"),
    })
}

/// The namespaces a worker process of `profile`, running as `uid`, gets;
/// `None` when the host allows none, or for uid 0 (mapping root needs
/// CAP_SETFCAP, and root's own profile is no boundary anyway).
pub(crate) fn plan(
    profile: &Isolation,
    uid: u32,
    slot_dir: Option<&SlotDir>,
) -> Option<Namespaces> {
    if uid == 0 || !available() {
        return None;
    }
    let tmp = private_tmp(profile, slot_dir.map(|d| d.path.as_path())).then(|| {
        let size = profile
            .memory_limit
            .map(|bytes| format!(",size={bytes}"))
            .unwrap_or_default();
        cstring(&format!("mode=1777{size}"))
    });
    let private_dir = profile
        .working_dir
        .as_deref()
        .zip(slot_dir)
        .and_then(|(dir, own)| Some((cpath(&own.path)?, cpath(dir)?, own.identity)));
    Some(Namespaces {
        net: profile.network == Some(false),
        tmp: tmp.flatten(),
        dev_shm: Path::new("/dev/shm").is_dir(),
        private_dir,
    })
}

/// Whether `/tmp` can be a private tmpfs: not when the worker binary, the
/// working directory or a Landlock path is below it (the tmpfs would hide
/// them). Said once.
fn private_tmp(profile: &Isolation, slot_dir: Option<&Path>) -> bool {
    let tmp = Path::new("/tmp");
    if !tmp.is_dir() {
        return false;
    }
    let exe = std::env::current_exe().ok();
    let below = exe
        .iter()
        .map(PathBuf::as_path)
        .chain(slot_dir)
        .chain(profile.working_dir.as_deref())
        .chain(
            profile
                .read_only_paths
                .iter()
                .flatten()
                .map(PathBuf::as_path),
        )
        .chain(
            profile
                .read_write_paths
                .iter()
                .flatten()
                .map(PathBuf::as_path),
        )
        .find(|p| p.starts_with(tmp))
        .map(Path::to_path_buf);
    match below {
        None => true,
        Some(path) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                warn!(
                    path = %path.display(),
                    "isolation: worker processes keep the host's /tmp, since a path they need \
                     is below it; move it elsewhere for a private /tmp"
                );
            });
            false
        }
    }
}

fn cstring(text: &str) -> Option<CString> {
    CString::new(text).ok()
}

fn cpath(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

/// Whether a task running as `uid`:`gid` may write in `dir` by its mode
/// bits: such a working directory is shared state between slots, so each
/// slot gets a directory of its own below it. One the task cannot write
/// (`/`, say) is the same for every slot and needs no splitting.
pub(crate) fn writable_by(dir: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = meta.mode();
    // Root's own profile is no boundary: no splitting for it.
    uid != 0
        && ((meta.uid() == uid && mode & 0o200 != 0)
            || (meta.gid() == gid && mode & 0o020 != 0)
            || mode & 0o002 != 0)
}

/// A slot's own directory: its path, and the device and inode it had when
/// it was checked. The worker process binds it only if the path, opened
/// without following links, still leads there: a directory swapped for a
/// link after the checks is refused.
#[derive(Debug, Clone)]
pub(crate) struct SlotDir {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// `st_dev` and `st_ino` when it was checked.
    pub(crate) identity: (u64, u64),
}

/// The slot's own directory below `working_dir` (`slot-<n>`), created on
/// first use with mode 0700 and owned by the slot's user (`ids`, when the
/// supervisor switches users): other slots' uids cannot enter it, and in a
/// mount namespace it is all the task sees at `working_dir`.
pub(crate) fn slot_dir(
    working_dir: &Path,
    slot: usize,
    ids: Option<(u32, u32)>,
) -> Result<SlotDir, NotApplied> {
    let dir = working_dir.join(format!("slot-{slot}"));
    let refused = |what: &str, e: &dyn std::fmt::Display| NotApplied {
        restriction: "working_dir".to_owned(),
        reason: format!("cannot {what} the slot's directory {}: {e}", dir.display()),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refused("create", &e)),
    }
    // Through a descriptor opened without following a symbolic link:
    // whoever may write `working_dir` could have put a link to, say,
    // /etc/shadow where the slot's directory belongs, and a root supervisor
    // would otherwise hand that file to the slot's user.
    let opened = nix::fcntl::open(
        &dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| refused("open (it must be a directory, not a link)", &e))?;
    if let Some((uid, gid)) = ids
        && Uid::effective().is_root()
    {
        fchown(&opened, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| refused("give the slot's user", &e))?;
    }
    fchmod(&opened, Mode::from_bits_truncate(0o700)).map_err(|e| refused("restrict", &e))?;
    let stat = nix::sys::stat::fstat(&opened).map_err(|e| refused("inspect", &e))?;
    Ok(SlotDir {
        path: dir,
        identity: (stat.st_dev, stat.st_ino),
    })
}

/// The worker process started as `pid` and, when it has private
/// namespaces, the namespace's init and the worker inside it (the
/// children of the monitor `pid`): what must join its cgroup. They exist
/// once `spawn` has returned, and neither has forked yet.
pub(crate) fn namespace_members(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    all.extend(redis_tasks_protocol::proc_tree::children(pid));
    all
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_slot_directory_is_made_once_with_mode_0700() {
        let base = std::env::temp_dir().join(format!("rt-slot-dir-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("temp dir");
        let dir = slot_dir(&base, 3, None).expect("slot dir").path;
        assert_eq!(dir, base.join("slot-3"));
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        assert_eq!(slot_dir(&base, 3, None).expect("again").path, dir);
        let missing = slot_dir(&base.join("gone"), 0, None).expect_err("no parent");
        assert_eq!(missing.restriction, "working_dir");
        // A link where a slot's directory belongs is refused, not followed.
        let target = base.join("target");
        std::fs::create_dir(&target).expect("mkdir");
        std::os::unix::fs::symlink(&target, base.join("slot-4")).expect("link");
        let linked = slot_dir(&base, 4, None).expect_err("a link");
        assert!(linked.reason.contains("not a link"), "{}", linked.reason);
        std::fs::remove_dir_all(&base).expect("clean up");
    }

    #[test]
    fn only_a_directory_the_task_may_write_is_split_per_slot() {
        let base = std::env::temp_dir().join(format!("rt-writable-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("temp dir");
        let me = Uid::effective().as_raw();
        let my_group = Gid::effective().as_raw();
        let chmod = |mode| {
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        chmod(0o755);
        assert!(!writable_by(&base, 61184, 61184) || me == 61184);
        chmod(0o777);
        assert!(writable_by(&base, 61184, 61184));
        chmod(0o770);
        assert!(writable_by(&base, 61184, my_group), "by its group");
        assert!(!writable_by(&base, 0, 0), "root's profile is never split");
        assert!(!writable_by(Path::new("/no/such/dir"), 61184, 61184));
        std::fs::remove_dir_all(&base).expect("clean up");
    }
}
