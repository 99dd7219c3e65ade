//! A cgroup (v2) for each worker process started by `exec`.
//!
//! Where the supervisor may create cgroups below its own (root, or a
//! systemd unit with `Delegate=yes`), each worker process it starts by
//! `exec` runs in a cgroup of its own, `<own>/redis-tasks.<pid>/w<N>`.
//! Everything the task starts stays in it whatever it does (`setsid`, a
//! double fork), so `cgroup.kill` ends all of it at once and an empty
//! cgroup (`populated 0`) proves nothing is left. Where the memory and pids
//! controllers are delegated too, an isolated task's `memory_limit` and
//! `process_limit` also become `memory.max` and `pids.max` of its cgroup:
//! per task instead of per process or per account, and an out-of-memory
//! kill is read from `memory.events` instead of being guessed.
//!
//! At start-up the supervisor kills and removes what dead supervisors left
//! (`redis-tasks.<pid>` directories whose pid is gone).
//!
//! Forked worker processes (the fork server, `max_tasks_per_child = 1`
//! without isolation) stay in the fork server's cgroup; the subreaper and
//! the frozen tree kill cover them (see `family`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

/// The directory below which this supervisor makes worker cgroups, and
/// what it may limit there.
#[derive(Debug)]
pub(crate) struct WorkerCgroups {
    base: PathBuf,
    memory: bool,
    pids: bool,
    next: AtomicU64,
}

static CGROUPS: OnceLock<Option<WorkerCgroups>> = OnceLock::new();

/// How long a killed cgroup may take to empty before it is left behind.
const EMPTY_WAIT: Duration = Duration::from_secs(2);

/// Sets up worker cgroups for this process, once (later calls keep the
/// first answer). With `wanted` false, or where the host does not allow
/// them, worker processes run without (and the reason is logged).
pub(crate) fn init(wanted: bool) {
    CGROUPS.get_or_init(|| {
        if !wanted {
            info!("worker cgroups are off (worker_cgroups = false)");
            return None;
        }
        match WorkerCgroups::set_up() {
            Ok(cgroups) => {
                info!(
                    base = %cgroups.base.display(),
                    memory = cgroups.memory,
                    pids = cgroups.pids,
                    "worker processes run in cgroups of their own"
                );
                Some(cgroups)
            }
            Err(why) => {
                info!("worker processes run without cgroups of their own: {why}");
                None
            }
        }
    });
}

/// The worker cgroups, when [`init`] set them up.
pub(crate) fn get() -> Option<&'static WorkerCgroups> {
    CGROUPS.get().and_then(Option::as_ref)
}

/// Removes this supervisor's cgroup directory when it exits (what is
/// still in it is killed first).
pub(crate) fn remove_base() {
    if let Some(cgroups) = get() {
        kill_and_remove_tree(&cgroups.base);
    }
}

impl WorkerCgroups {
    fn set_up() -> Result<WorkerCgroups, String> {
        let own = own_cgroup()?;
        let mount = cgroup2_mount(&own)?;
        let own_dir = mount.join(own.trim_start_matches('/'));
        remove_stale(&own_dir);
        let base = own_dir.join(format!("redis-tasks.{}", std::process::id()));
        match fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
        }
        if !base.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&base);
            return Err("this kernel has no cgroup.kill (Linux 5.14 or later needed)".into());
        }
        // Controllers: when our own cgroup hands them down already (the
        // root cgroup), or may once we leave it for a leaf of our own.
        let mut handed = read_words(&own_dir.join("cgroup.subtree_control"));
        if !handed.iter().any(|c| c == "memory" || c == "pids") {
            handed = hand_down_controllers(&own_dir);
        }
        let mut memory = false;
        let mut pids = false;
        for (name, flag) in [("memory", &mut memory), ("pids", &mut pids)] {
            if handed.iter().any(|c| c == name)
                && fs::write(base.join("cgroup.subtree_control"), format!("+{name}")).is_ok()
            {
                *flag = true;
            }
        }
        Ok(WorkerCgroups {
            base,
            memory,
            pids,
            next: AtomicU64::new(0),
        })
    }

    /// Whether `memory_limit` becomes the cgroup's `memory.max`.
    pub(crate) fn limits_memory(&self) -> bool {
        self.memory
    }

    /// Creates the cgroup of one worker process, with limits where the
    /// controllers allow them.
    pub(crate) fn create(&self, limits: Limits) -> io::Result<TaskCgroup> {
        if !self.base.exists() {
            // Removed when an earlier run in this process stopped.
            fs::create_dir(&self.base)?;
            for (name, on) in [("memory", self.memory), ("pids", self.pids)] {
                if on {
                    fs::write(self.base.join("cgroup.subtree_control"), format!("+{name}"))?;
                }
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.base.join(format!("w{n}"));
        fs::create_dir(&dir)?;
        let cgroup = TaskCgroup { dir };
        if let (true, Some(bytes)) = (self.memory, limits.memory) {
            fs::write(cgroup.dir.join("memory.max"), bytes.to_string())?;
            // No swap to hide in: the limit is the memory the task uses.
            let _ = fs::write(cgroup.dir.join("memory.swap.max"), "0");
        }
        if let (true, Some(max)) = (self.pids, limits.processes) {
            fs::write(cgroup.dir.join("pids.max"), max.to_string())?;
        }
        Ok(cgroup)
    }
}

/// The limits an isolated task asks of its cgroup.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// `memory_limit`, in bytes.
    pub memory: Option<u64>,
    /// `process_limit`.
    pub processes: Option<u64>,
}

/// The cgroup of one worker process; removed (after killing what is in
/// it) when dropped.
#[derive(Debug)]
pub(crate) struct TaskCgroup {
    dir: PathBuf,
}

impl TaskCgroup {
    /// Moves process `pid` (and so everything it starts later) into it.
    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// Kills every process in it at once.
    pub(crate) fn kill(&self) {
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
    }

    /// Kills every process in it but `keep` (the worker process) and
    /// waits until they are gone; returns how many there were. Nothing to
    /// kill costs one read. Otherwise the cgroup is frozen first, so that
    /// nothing in it forks, exits or runs while it is listed and killed
    /// (no pid is reused under us), then thawed; cgroups a task made below
    /// it are killed whole.
    pub(crate) fn kill_others(&self, keep: u32) -> usize {
        let others = || -> Vec<u32> {
            read_words(&self.dir.join("cgroup.procs"))
                .iter()
                .filter_map(|p| p.parse().ok())
                .filter(|&pid| pid != keep)
                .collect()
        };
        let below: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        if below.is_empty() && others().is_empty() {
            return 0;
        }
        let _ = fs::write(self.dir.join("cgroup.freeze"), "1");
        wait_for(EMPTY_WAIT, || {
            read_words(&self.dir.join("cgroup.events"))
                .windows(2)
                .any(|w| w == ["frozen", "1"])
        });
        let found = others();
        for &pid in &found {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for dir in &below {
            kill_and_remove_tree(dir);
        }
        let _ = fs::write(self.dir.join("cgroup.freeze"), "0");
        if !wait_for(EMPTY_WAIT, || others().is_empty()) {
            warn!(cgroup = %self.dir.display(), "processes beside the worker process survived SIGKILL");
        }
        found.len() + below.len()
    }

    /// How many threads its processes run (`cgroup.threads`), for a
    /// worker process whose `/proc` entry the supervisor may not read.
    pub(crate) fn threads(&self) -> Option<u32> {
        let text = fs::read_to_string(self.dir.join("cgroup.threads")).ok()?;
        u32::try_from(text.lines().count()).ok()
    }

    /// How many times the kernel's out-of-memory killer acted in it
    /// because of `memory.max`.
    pub(crate) fn oom_kills(&self) -> u64 {
        fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        kill_and_remove_tree(&self.dir);
    }
}

/// Kills what is in `dir` and below, waits for it to empty, and removes
/// the directories (children first).
fn kill_and_remove_tree(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + EMPTY_WAIT;
    while populated(dir) {
        if Instant::now() > deadline {
            warn!(cgroup = %dir.display(), "cgroup still holds processes after cgroup.kill; left in place");
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                kill_and_remove_tree(&entry.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        debug!(cgroup = %dir.display(), "cannot remove cgroup: {e}");
    }
}

/// Polls `done` every millisecond until it holds or `within` passes;
/// says whether it held.
fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|text| text.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// A delegated cgroup (systemd's `Delegate=yes`) offers controllers but
/// cannot hand them down while a process sits in it: when this process is
/// alone there, it moves into a leaf `supervisor/` and enables `memory` and
/// `pids` for the cgroups below. Returns the controllers handed down.
fn hand_down_controllers(own_dir: &Path) -> Vec<String> {
    let offered = read_words(&own_dir.join("cgroup.controllers"));
    let wanted: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| offered.iter().any(|o| o == c))
        .collect();
    let procs = read_words(&own_dir.join("cgroup.procs"));
    if wanted.is_empty() || procs != [std::process::id().to_string()] {
        return Vec::new();
    }
    let leaf = own_dir.join("supervisor");
    let moved = fs::create_dir(&leaf)
        .or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .and_then(|()| fs::write(leaf.join("cgroup.procs"), "0"));
    if let Err(e) = moved {
        debug!("cannot move into {}: {e}", leaf.display());
        return Vec::new();
    }
    wanted
        .into_iter()
        .filter(|c| fs::write(own_dir.join("cgroup.subtree_control"), format!("+{c}")).is_ok())
        .map(str::to_owned)
        .collect()
}

/// Kills and removes the worker cgroups of supervisors that are gone
/// (their pid no longer exists): what survived a SIGKILL of its
/// supervisor ends here.
fn remove_stale(own_dir: &Path) {
    let Ok(entries) = fs::read_dir(own_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("redis-tasks."))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        if populated(&dir) {
            warn!(cgroup = %dir.display(), "killing what a dead supervisor's worker processes left running");
        }
        kill_and_remove_tree(&dir);
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host): the last cgroup2 mount in
/// `/proc/self/mountinfo` under which `own` (this process's cgroup path)
/// exists. Mount order matters: a mount namespace made from another (a
/// systemd unit's, a container's) can list a cgroup2 mount that a later
/// mount hides, such as the host's `/sys/fs/cgroup/unified` under a
/// `/sys/fs/cgroup` mounted again.
fn cgroup2_mount(own: &str) -> Result<PathBuf, String> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            left.split_whitespace().nth(4).map(PathBuf::from)
        })
        .collect();
    if mounts.is_empty() {
        return Err("no cgroup v2 hierarchy is mounted".to_owned());
    }
    mounts
        .iter()
        .rev()
        .find(|m| m.join(own.trim_start_matches('/')).is_dir())
        .cloned()
        .ok_or_else(|| format!("this process's cgroup {own} is under no cgroup v2 mount"))
}

/// This process's cgroup v2 path (`0::/path` in `/proc/self/cgroup`).
fn own_cgroup() -> Result<String, String> {
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
        .ok_or_else(|| "this process is in no cgroup v2".to_owned())
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_where_one_is_mounted() {
        let mounted = fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|t| t.lines().any(|l| l.contains(" - cgroup2 ")));
        let own = own_cgroup().unwrap_or_default();
        assert_eq!(cgroup2_mount(&own).is_ok(), mounted && !own.is_empty());
    }
}
