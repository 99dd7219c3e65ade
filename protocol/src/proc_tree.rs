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
use std::io::{self, Read};
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The direct children of `pid` (every thread's), from
/// `/proc/<pid>/task/<tid>/children`; empty if the process is gone.
pub fn children(pid: u32) -> Vec<u32> {
    children_and_threads(pid).0
}

/// [`children`], and how many threads `pid` has (its entries in
/// `/proc/<pid>/task`, which the listing reads anyway), `None` when that
/// directory cannot be read (the process is gone, or its entry hidden).
pub fn children_and_threads(pid: u32) -> (Vec<u32>, Option<u32>) {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return (out, None);
    };
    let mut threads = 0;
    for task in tasks.flatten() {
        threads += 1;
        out.extend(listed_children(task.path().join("children")));
    }
    (out, Some(threads))
}

/// The pids in a `/proc/<pid>/task/<tid>/children` file; empty when it
/// cannot be read. Read with plain `read`s into a small buffer: the file
/// is most often empty, and a `read_to_string` would ask for its size
/// (which `/proc` does not know) and start with a tiny buffer.
pub fn listed_children(path: impl AsRef<Path>) -> Vec<u32> {
    let Ok(mut file) = fs::File::open(path) else {
        return Vec::new();
    };
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Vec::new(),
        }
    }
    String::from_utf8_lossy(&text)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .collect()
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
    kill_descendants_walk(root).killed
}

/// What [`kill_descendants_walk`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The descendants it froze and killed.
    pub killed: BTreeSet<u32>,
    /// How many threads `root` had at the walk's last pass (as
    /// [`children_and_threads`] counts them), `None` when its `/proc` entry cannot be
    /// read: the walk lists them anyway, so a caller that also wants the
    /// count reads nothing more.
    pub root_threads: Option<u32>,
}

/// [`kill_descendants`], returning the pids it killed and `root`'s
/// thread count.
pub fn kill_descendants_walk(root: u32) -> Walk {
    let mut found: BTreeSet<u32> = BTreeSet::new();
    // Every member found is stopped at once, so the tree can only shrink
    // behind the walk; it ends when a whole pass (over root and every
    // member, in case one forked just before it stopped) finds nothing new.
    loop {
        let (of_root, root_threads) = children_and_threads(root);
        let mut grew = stop_new(of_root, &mut found);
        let members: Vec<u32> = found.iter().copied().collect();
        for pid in members {
            grew |= stop_new(children(pid), &mut found);
        }
        if !grew {
            for &pid in &found {
                signal(pid, Signal::SIGKILL);
            }
            return Walk {
                killed: found,
                root_threads,
            };
        }
    }
}

/// Freezes each of `pids` not in `found` yet and adds it; returns whether
/// there was any.
fn stop_new(pids: Vec<u32>, found: &mut BTreeSet<u32>) -> bool {
    let mut grew = false;
    for child in pids {
        if found.insert(child) {
            signal(child, Signal::SIGSTOP);
            grew = true;
        }
    }
    grew
}

/// Freezes and kills `pid` and all its descendants.
pub fn kill_tree(pid: u32) -> usize {
    signal(pid, Signal::SIGSTOP);
    let n = kill_descendants(pid);
    signal(pid, Signal::SIGKILL);
    n + 1
}
