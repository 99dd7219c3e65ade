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
use std::io;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
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
    ProcEntry::open(pid).map_or((Vec::new(), None), |mut entry| entry.children_and_threads())
}

/// A process's `/proc/<pid>/task`, opened once for the walks repeated over
/// its life (a reused worker process is walked after every task): each
/// listing reads the open directory again and the kept `children` file of
/// each thread from offset 0, where a walk by paths would open four files
/// by name, each looked up through `/proc` again. Held open, the entry
/// stays that process's: after it died, a pid used again by another
/// process is never read through it (the listing is then empty).
#[derive(Debug)]
pub struct ProcEntry {
    tasks: nix::dir::Dir,
    /// The `children` file of each thread seen, by thread id.
    children: Vec<(u32, fs::File)>,
}

impl ProcEntry {
    /// `/proc/<pid>/task`, or `None` when it cannot be opened (the process
    /// is gone, or its entry hidden from us).
    pub fn open(pid: u32) -> Option<ProcEntry> {
        let tasks = nix::dir::Dir::open(
            format!("/proc/{pid}/task").as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(ProcEntry {
            tasks,
            children: Vec::new(),
        })
    }

    /// As [`children_and_threads`], through the open entry.
    pub fn children_and_threads(&mut self) -> (Vec<u32>, Option<u32>) {
        let mut tids = Vec::new();
        for entry in self.tasks.iter() {
            let Ok(entry) = entry else {
                return (Vec::new(), None);
            };
            if let Some(tid) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|name| name.parse::<u32>().ok())
            {
                tids.push(tid);
            }
        }
        if tids.is_empty() {
            // Not even its main thread: the process is gone.
            return (Vec::new(), None);
        }
        // Threads that ended are forgotten, new ones opened.
        self.children.retain(|(tid, _)| tids.contains(tid));
        let mut out = Vec::new();
        for &tid in &tids {
            if !self.children.iter().any(|(t, _)| *t == tid) {
                let path = format!("{tid}/children");
                if let Ok(fd) = nix::fcntl::openat(
                    &self.tasks,
                    path.as_str(),
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    self.children.push((tid, fs::File::from(fd)));
                }
            }
        }
        for (_, file) in &self.children {
            out.extend(read_pids_at_start(file));
        }
        (out, u32::try_from(tids.len()).ok())
    }
}

/// The pids in a `/proc/<pid>/task/<tid>/children` file; empty when it
/// cannot be read. Read with plain `read`s into a small buffer: the file
/// is most often empty, and a `read_to_string` would ask for its size
/// (which `/proc` does not know) and start with a tiny buffer.
pub fn listed_children(path: impl AsRef<Path>) -> Vec<u32> {
    fs::File::open(path).map_or_else(|_| Vec::new(), |file| read_pids_at_start(&file))
}

/// The pids listed in an open `children` file, read again from its start
/// (for files kept open across reads); empty when it cannot be read, or
/// when its thread has ended (the kernel then lists nothing).
pub fn listed_children_in(file: &fs::File) -> Vec<u32> {
    read_pids_at_start(file)
}

/// The pids listed in `file` (a `children` file), read from offset 0 with
/// plain reads into a small buffer (`/proc` regenerates the list for a
/// read at 0): the file is most often empty, and a `read_to_string` would
/// ask for its size, which `/proc` does not know. Empty on an error.
fn read_pids_at_start(file: &fs::File) -> Vec<u32> {
    use std::os::unix::fs::FileExt;
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match file.read_at(&mut buf, text.len() as u64) {
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
    walk_from(|| children_and_threads(root))
}

/// [`kill_descendants_walk`] of the process whose `/proc` entry `entry`
/// holds open (see [`ProcEntry`]).
pub fn kill_descendants_through(entry: &mut ProcEntry) -> Walk {
    walk_from(|| entry.children_and_threads())
}

/// The walk, from the root's children and thread count as `list_root`
/// reads them.
fn walk_from(mut list_root: impl FnMut() -> (Vec<u32>, Option<u32>)) -> Walk {
    let mut found: BTreeSet<u32> = BTreeSet::new();
    // Every member found is stopped at once, so the tree can only shrink
    // behind the walk; it ends when a whole pass (over root and every
    // member, in case one forked just before it stopped) finds nothing new.
    loop {
        let (of_root, root_threads) = list_root();
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn an_open_entry_follows_its_process_and_nothing_after_it() {
        let mut shell = Command::new("sh")
            // After its child, it waits on its stdin (kept open here).
            .args(["-c", "sleep 60 & echo $!; wait; read line"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut line = String::new();
        let stdout = shell.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the sleep's pid");
        let sleep: u32 = line.trim().parse().expect("a pid");
        let mut entry = ProcEntry::open(shell.id()).expect("the shell's /proc entry");
        assert_eq!(entry.children_and_threads(), (vec![sleep], Some(1)));
        // Read again from the same open files: the list follows the tree.
        signal(sleep, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !entry.children_and_threads().0.is_empty() {
            assert!(Instant::now() < deadline, "the sleep is still listed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(entry.children_and_threads().1, Some(1));
        // Gone: nothing is read through the entry any more, whoever gets
        // the pid next.
        shell.kill().expect("kill the shell");
        shell.wait().expect("reap the shell");
        assert_eq!(entry.children_and_threads(), (Vec::new(), None));
    }
}
