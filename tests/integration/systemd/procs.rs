//! Reading the process tree and cgroups from /proc and /sys, and removing
//! a cgroup tree once its processes are gone.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Removes a cgroup and its descendants, retrying while their last
/// processes are still exiting.
pub(super) fn remove_cgroup_tree(root: &Path, deadline: Instant) {
    loop {
        let mut dirs = Vec::new();
        collect_dirs(root, &mut dirs);
        // Deepest first.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        let mut busy = false;
        for dir in &dirs {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(_) => busy = true,
            }
        }
        if !busy || Instant::now() > deadline {
            if busy {
                eprintln!("could not remove cgroup {}", root.display());
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_owned());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// The pids of `pid` in each PID namespace it belongs to, outermost first
/// (the `NSpid` line of its status).
pub(super) fn ns_pids(pid: i32) -> Option<Vec<i32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    Some(
        line.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// The children of `pid`.
pub(super) fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    out
}
