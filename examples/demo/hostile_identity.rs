//! Tasks that abuse who they run as and what they share with other slots
//! (docs/security.md, "Threat model"): read a root-only file, write a
//! root-owned one, open the supervisor's `cgroup.kill`, leave a SysV
//! shared-memory segment or a file behind for another slot's task, look
//! for another slot's files. Each returns `Ok` only when its attack
//! worked (or, for `plant`, once it has planted), so a finished attacker
//! is a hole.

use std::time::Duration;

use redis_tasks::{App, TaskContext};
use serde::Deserialize;
use serde_json::Value;

type Result = std::result::Result<(), String>;

/// Registers every task of this module on `app`.
pub fn register(app: App) -> App {
    app.task("read_secret", read_secret)
        .task("open_for_writing", open_for_writing)
        .task("open_cgroup_kill", |ctx, _: Value| open_cgroup_kill(ctx))
        .task("shm_plant", shm_plant)
        .task("shm_find", shm_find)
        .task("plant", plant)
        .task("peek", peek)
}

#[derive(Deserialize)]
struct Path {
    path: String,
}

/// Reads the file at `path` (a root-only 0600 file, say).
fn read_secret(ctx: &TaskContext, a: Path) -> Result {
    let text = std::fs::read_to_string(&a.path).map_err(|e| format!("{}: {e}", a.path))?;
    ctx.set_meta("read", text)
}

/// Opens the file at `path` for writing (a root-owned 0644 file, say),
/// and writes nothing.
fn open_for_writing(_: &TaskContext, a: Path) -> Result {
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a.path)
        .map(drop)
        .map_err(|e| format!("{}: {e}", a.path))
}

/// The directory of this process's cgroup (v2), when it has one below the
/// root.
fn own_cgroup() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split(' ').next() == Some("cgroup2")).then(|| left.split(' ').nth(4))?
    })?;
    Some(std::path::Path::new(root).join(path.trim_start_matches('/')))
}

/// Opens the `cgroup.kill` of the cgroup above its own (the supervisor's
/// base of worker cgroups) for writing. It never writes: one `1` there
/// would kill every worker process of the supervisor.
fn open_cgroup_kill(ctx: &TaskContext) -> Result {
    let own = own_cgroup().ok_or("no cgroup of its own")?;
    let parent = own.parent().ok_or("no parent cgroup")?;
    let kill = parent.join("cgroup.kill");
    ctx.set_meta("target", kill.display().to_string())?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&kill)
        .map(drop)
        .map_err(|e| format!("{}: {e}", kill.display()))
}

#[derive(Deserialize)]
struct Plant {
    /// SysV key of the segment, or the path of the file to plant.
    key: Option<i32>,
    path: Option<String>,
    /// Waits until this file exists before returning (keeps its slot busy).
    gate: String,
}

fn wait_for(gate: &str) {
    while !std::path::Path::new(gate).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates a SysV shared-memory segment under `key`, writes into it and
/// leaves it (no `IPC_RMID`), then waits for the gate.
fn shm_plant(ctx: &TaskContext, a: Plant) -> Result {
    let key = a.key.ok_or("no key")?;
    // SAFETY: shmget takes a key, a size and flags; shmat maps the new
    // segment (checked against -1) and we write inside its 4096 bytes;
    // shmdt unmaps it again.
    unsafe {
        let id = libc::shmget(key, 4096, libc::IPC_CREAT | 0o666);
        if id < 0 {
            return Err(format!("shmget: {}", std::io::Error::last_os_error()));
        }
        let at = libc::shmat(id, std::ptr::null(), 0);
        if at as isize == -1 {
            return Err(format!("shmat: {}", std::io::Error::last_os_error()));
        }
        std::ptr::copy_nonoverlapping(b"planted".as_ptr(), at.cast::<u8>(), 7);
        libc::shmdt(at);
        ctx.set_meta("shmid", id)?;
    }
    wait_for(&a.gate);
    Ok(())
}

#[derive(Deserialize)]
struct Key {
    key: i32,
}

/// Looks for the segment under `key`; succeeds if it is there.
fn shm_find(_: &TaskContext, a: Key) -> Result {
    // SAFETY: shmget with size 0 and no flags only looks a segment up.
    let id = unsafe { libc::shmget(a.key, 0, 0) };
    if id < 0 {
        return Err(format!("shmget: {}", std::io::Error::last_os_error()));
    }
    println!("found segment {id} of another task");
    Ok(())
}

/// Writes a file at `path` (relative paths are in its working directory),
/// then waits for the gate.
fn plant(_: &TaskContext, a: Plant) -> Result {
    let path = a.path.ok_or("no path")?;
    std::fs::write(&path, "planted").map_err(|e| format!("{path}: {e}"))?;
    wait_for(&a.gate);
    Ok(())
}

/// Reads the file at `path`, and lists its working directory into the
/// meta object (`listing`).
fn peek(ctx: &TaskContext, a: Path) -> Result {
    let listing: Vec<String> = std::fs::read_dir(".")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ctx.set_meta("listing", listing)?;
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    ctx.set_meta("cwd", cwd.display().to_string())?;
    let text = std::fs::read_to_string(&a.path).map_err(|e| format!("{}: {e}", a.path))?;
    ctx.set_meta("read", text)
}
