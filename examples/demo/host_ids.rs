//! This process's pid and its parent's, as the supervisor and the tests see
//! them. Worker processes may run in a PID namespace of their own, where
//! `getpid` and `getppid` answer in that namespace (the parent, outside
//! it, reads 0); `/proc` is still the host's mount, whose `/proc/self/stat`
//! gives both in the host's numbering.

/// (pid, parent pid) from `/proc/self/stat`.
fn ids() -> Result<(u32, u32), String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    let pid = stat.split_whitespace().next().and_then(|p| p.parse().ok());
    // After the command name (which ends at the last ')'): state, ppid.
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok());
    pid.zip(ppid)
        .ok_or_else(|| format!("cannot read /proc/self/stat: {stat}"))
}

/// This process's pid in the host's numbering.
pub fn pid() -> u32 {
    ids().map_or_else(|_| std::process::id(), |(pid, _)| pid)
}

/// The parent's pid in the host's numbering.
pub fn parent() -> u32 {
    ids().map_or_else(|_| std::os::unix::process::parent_id(), |(_, ppid)| ppid)
}

/// The `NSpid:` line of `/proc/<pid>/status`: the pid in each namespace
/// from the host's down to the process's own.
fn ns_pids(pid: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The number this process's own PID namespace gives the process that is
/// `host_pid` on the host, as `pidfd_open` or `kill` here take it; `None`
/// when that process is outside this namespace (the supervisor and the
/// fork server are, when worker processes have a namespace of their own).
pub fn local_pid(host_pid: u32) -> Option<u32> {
    let depth = ns_pids("self").len().max(1);
    ns_pids(&host_pid.to_string()).get(depth - 1).copied()
}

/// The host's pid of this process's child `local` (a pid `Child::id()`
/// gave here), found among `/proc/self/task/*/children`; `local` itself
/// when none matches (no namespace of our own).
pub fn of_child(local: u32) -> u32 {
    let depth = ns_pids("self").len().max(1);
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|&host| ns_pids(&host.to_string()).get(depth - 1) == Some(&local))
        .unwrap_or(local)
}
