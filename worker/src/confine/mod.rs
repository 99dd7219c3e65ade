//! Restrictions a worker process applies to itself before any task runs:
//! Landlock filesystem rules, then the seccomp filters (the deny list, and
//! no Unix sockets with the network off).
//!
//! Limits, namespaces, user and group and no-new-privileges are applied by
//! the supervisor between `fork` and `exec` (they need no allocation); these
//! two need to build data structures, so the worker process applies them
//! right after the handshake, while it still has a single thread (Landlock
//! restricts only the calling thread and the threads it starts later).
//! Either one failing is reported to the supervisor, and the process runs
//! nothing.

mod seccomp;

use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use redis_tasks_protocol::ipc::message::{Confine, Refusal};

/// The Landlock ABI whose filesystem rights we ask for; a kernel with an
/// older ABI enforces what it knows (best effort), one without Landlock
/// makes the restriction fail.
const LANDLOCK_ABI: ABI = ABI::V5;

/// Applies `confine` to this process: Landlock first (it needs to open the
/// listed paths, which seccomp would not stop but ordering keeps the story
/// simple), then seccomp, which must come last because it is the one that
/// forbids further changes.
pub fn apply(confine: &Confine) -> Result<(), Refusal> {
    if confine.landlock {
        let restriction = if confine.read_write_paths.is_empty() {
            "read_only_paths"
        } else {
            "read_write_paths"
        };
        single_threaded().map_err(|reason| refusal(restriction, reason))?;
        landlock(confine).map_err(|reason| refusal(restriction, reason))?;
    }
    if confine.seccomp || confine.deny_unix_sockets {
        let restriction = if confine.seccomp {
            "seccomp"
        } else {
            "network"
        };
        seccomp::apply(confine.seccomp, confine.deny_unix_sockets)
            .map_err(|reason| refusal(restriction, reason))?;
    }
    Ok(())
}

fn refusal(restriction: &str, reason: String) -> Refusal {
    Refusal {
        restriction: restriction.to_owned(),
        reason,
    }
}

/// Landlock confines the calling thread only: make sure it is the only one.
fn single_threaded() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot count this process's threads: {e}"))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    match threads {
        Some(1) => Ok(()),
        Some(n) => Err(format!(
            "the worker process already runs {n} threads; Landlock would leave the others unconfined"
        )),
        None => Err("cannot count this process's threads".to_owned()),
    }
}

fn landlock(confine: &Confine) -> Result<(), String> {
    let read = AccessFs::from_read(LANDLOCK_ABI);
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let mut created = Ruleset::default()
        .handle_access(all)
        .and_then(Ruleset::create)
        .map_err(|e| format!("cannot create a Landlock ruleset: {e}"))?;
    let rules = confine
        .read_only_paths
        .iter()
        .map(|p| (p, read))
        .chain(confine.read_write_paths.iter().map(|p| (p, all)));
    for (path, access) in rules {
        let fd = open(path)?;
        // A file (not a directory) takes only the rights that apply to files.
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(LANDLOCK_ABI)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("cannot add a rule for {}: {e}", path.display()))?;
    }
    let status = created
        .restrict_self()
        .map_err(|e| format!("cannot enforce the Landlock ruleset: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
        RulesetStatus::NotEnforced => {
            Err("this kernel does not enforce Landlock (not built in or not enabled)".to_owned())
        }
    }
}

fn open(path: &Path) -> Result<PathFd, String> {
    PathFd::new(path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}
