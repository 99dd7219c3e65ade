//! Killing a process's descendants so that none can fork its way out.
//!
//! A task may start processes that leave its process group (`setsid`) and
//! its parent (a double fork). Worker processes, the fork server and the
//! supervisor are child subreapers, so such an orphan is re-parented to the
//! nearest of them (or, in the worker processes' PID namespace, to the
//! nearest in that namespace, else its init) instead of to init, and stays
//! findable in
//! `/proc/<pid>/task/<tid>/children`. This module walks that tree and
//! freezes each member (SIGSTOP) as it finds it, until a walk finds nothing
//! new, and only then kills them all (SIGKILL): a frozen process cannot fork
//! a new member behind the walk's back. The reaping is left to each
//! process's parent.

use std::collections::BTreeSet;
use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The direct children of `pid` (every thread's), from
/// `/proc/<pid>/task/<tid>/children`; empty if the process is gone.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Whether `pid` has exited and waits to be reaped (false if it is gone).
pub fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which may hold anything but
        // ends at the last ')'.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}

/// Freezes and kills every descendant of `root` (not `root` itself);
/// returns how many there were. Cheap when there are none: one directory
/// listing and one small read per thread of `root`.
pub fn kill_descendants(root: u32) -> usize {
    kill_descendants_listed(root).len()
}

/// [`kill_descendants`], returning the pids it killed.
pub fn kill_descendants_listed(root: u32) -> BTreeSet<u32> {
    let mut found: BTreeSet<u32> = BTreeSet::new();
    // Every member found is stopped at once, so the tree can only shrink
    // behind the walk; it ends when a whole pass (over root and every
    // member, in case one forked just before it stopped) finds nothing new.
    loop {
        let members: Vec<u32> = std::iter::once(root).chain(found.iter().copied()).collect();
        let mut grew = false;
        for pid in members {
            for child in children(pid) {
                if found.insert(child) {
                    signal(child, Signal::SIGSTOP);
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    for &pid in &found {
        signal(pid, Signal::SIGKILL);
    }
    found
}

/// Freezes and kills `pid` and all its descendants.
pub fn kill_tree(pid: u32) -> usize {
    signal(pid, Signal::SIGSTOP);
    let n = kill_descendants(pid);
    signal(pid, Signal::SIGKILL);
    n + 1
}
