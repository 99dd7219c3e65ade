//! The demo binary: every kind of task behaviour, by stable names, for
//! trying the product out and for its end-to-end tests.
//!
//! It is the bin target `redis-tasks-demo`, built only with the `demo`
//! feature (so `cargo install` leaves it out; `cargo test` turns the
//! feature on and finds it through `CARGO_BIN_EXE_redis-tasks-demo`):
//!
//! ```text
//! cargo run --features demo --bin redis-tasks-demo -- enqueue segfault
//! cargo run --features demo --bin redis-tasks-demo -- worker --burst
//! ```
//!
//! With `DEMO_OUTCOME_LOG=/path/file.jsonl` set for the supervisor, a
//! middleware appends one JSON line per final outcome to that file.

mod async_tasks;
mod fan_out;
mod host_ids;
mod hostile_clone;
mod hostile_frames;
mod hostile_identity;
mod hostile_sandbox;
mod hostile_tree;
mod misbehave;
mod outcome_log;
mod output;
mod results;
mod retries;
mod setup;

use std::io::Write;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use redis_tasks::{Isolation, TaskContext, TaskOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Secs {
    secs: f64,
}

#[derive(Deserialize)]
struct Message {
    message: String,
}

#[derive(Deserialize)]
struct Code {
    code: i32,
}

#[derive(Deserialize)]
struct Megabytes {
    mb: usize,
}

#[derive(Deserialize)]
struct Spawn {
    children: u32,
    secs: f64,
}

#[derive(Deserialize)]
struct WriteFile {
    path: String,
    text: String,
}

#[derive(Deserialize)]
struct Path {
    path: String,
}

#[derive(Deserialize)]
struct Addr {
    addr: String,
}

#[derive(Deserialize)]
struct Steps {
    steps: u32,
}

type Result = std::result::Result<(), String>;

fn sleep(_: &TaskContext, a: Secs) -> Result {
    std::thread::sleep(Duration::from_secs_f64(a.secs.max(0.0)));
    Ok(())
}

fn alloc(_: &TaskContext, a: Megabytes) -> Result {
    let mut blocks = Vec::with_capacity(a.mb);
    for _ in 0..a.mb {
        // Touch every page so the memory is really resident.
        blocks.push(vec![1u8; 1 << 20]);
    }
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    println!("allocated {} MiB", total >> 20);
    Ok(())
}

fn spin(_: &TaskContext, a: Secs) -> Result {
    let end = Instant::now() + Duration::from_secs_f64(a.secs.max(0.0));
    let mut n = 0u64;
    while Instant::now() < end {
        n = std::hint::black_box(n.wrapping_add(1));
    }
    Ok(())
}

/// Starts `children` `sleep` processes, records their pids in the meta
/// object (`children`), and waits for them.
fn spawn(ctx: &TaskContext, a: Spawn) -> Result {
    let mut children = Vec::new();
    for _ in 0..a.children {
        let child = Command::new("sleep")
            .arg(a.secs.to_string())
            .spawn()
            .map_err(|e| format!("cannot start sleep: {e}"))?;
        children.push(child);
    }
    let pids: Vec<u32> = children
        .iter()
        .map(|c| host_ids::of_child(c.id()))
        .collect();
    ctx.set_meta("children", pids)?;
    for mut child in children {
        child.wait().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn write_file(_: &TaskContext, a: WriteFile) -> Result {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.path)
        .map_err(|e| format!("cannot open {}: {e}", a.path))?;
    file.write_all(a.text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", a.path))
}

fn env(_: &TaskContext, a: Path) -> Result {
    let text: String = std::env::vars()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(&a.path, text).map_err(|e| format!("cannot write {}: {e}", a.path))
}

/// Writes the descriptors this process has open, one `NUMBER TARGET` a
/// line (the listing's own directory descriptor included).
fn fds(_: &TaskContext, a: Path) -> Result {
    let mut lines: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.to_string())?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    lines.sort();
    let text = lines.join("\n") + "\n";
    std::fs::write(&a.path, text).map_err(|e| format!("cannot write {}: {e}", a.path))
}

#[derive(Deserialize)]
struct Mark {
    path: String,
    secs: f64,
}

/// Appends the task's id to `path` (one line: a countable side effect),
/// then sleeps `secs`.
fn mark(ctx: &TaskContext, a: Mark) -> Result {
    write_file(
        ctx,
        WriteFile {
            path: a.path,
            text: format!("{}\n", ctx.id()),
        },
    )?;
    std::thread::sleep(Duration::from_secs_f64(a.secs.max(0.0)));
    Ok(())
}

/// Opens a TCP connection to `addr` (a network probe): succeeds if it
/// connects within two seconds.
fn connect(_: &TaskContext, a: Addr) -> Result {
    let addr: std::net::SocketAddr = a
        .addr
        .parse()
        .map_err(|e| format!("bad address {}: {e}", a.addr))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map(drop)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Records who the task runs as in the meta object (`uid`, `gid`, `groups`).
fn whoami(ctx: &TaskContext, _: serde_json::Value) -> Result {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    ctx.set_meta("uid", field("Uid:"))?;
    ctx.set_meta("gid", field("Gid:"))?;
    ctx.set_meta("groups", field("Groups:"))?;
    ctx.set_meta("no_new_privs", field("NoNewPrivs:"))
}

#[derive(Deserialize)]
struct ProcFile {
    file: String,
}

/// Reads `/proc/<parent>/<file>` (`environ`, `cmdline`, `mem`...) of the
/// process that started this worker process, as an attacker after the
/// Redis password would; records in meta how much it read.
fn peek_parent(ctx: &TaskContext, a: ProcFile) -> Result {
    let parent = host_ids::parent();
    let path = format!("/proc/{parent}/{}", a.file);
    let text = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    ctx.set_meta("read", String::from_utf8_lossy(&text).replace('\0', " "))
}

/// Records the worker process's pid in the meta object (`pid`).
fn pid(ctx: &TaskContext, _: serde_json::Value) -> Result {
    ctx.set_meta("pid", host_ids::pid())
}

/// Holds a postpone-shutdown guard for `secs`, then returns: a shutdown
/// arriving meanwhile waits for it.
fn guarded_sleep(ctx: &TaskContext, a: Secs) -> Result {
    let _guard = ctx.postpone_shutdown();
    // Tells tests the guard is held.
    ctx.set_meta("guarded", true)?;
    let end = Instant::now() + Duration::from_secs_f64(a.secs.max(0.0));
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until `path` exists, then returns: a task that ends when a test
/// says so, not when a clock runs out while the test may still be busy.
fn wait_for_file(_: &TaskContext, a: Path) -> Result {
    let path = std::path::Path::new(&a.path);
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Report {
    done: u64,
    total: u64,
    message: String,
    path: String,
}

/// Reports `done` of `total` through `TaskContext::progress`, waits for the
/// file at `path`, then reports `total` of `total`.
fn report_progress(ctx: &TaskContext, a: Report) -> Result {
    ctx.progress(a.done, Some(a.total), &a.message);
    let path = std::path::Path::new(&a.path);
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    ctx.progress(a.total, Some(a.total), "done");
    Ok(())
}

/// Records its progress in the task's meta object, step by step.
fn progress(ctx: &TaskContext, a: Steps) -> Result {
    for step in 1..=a.steps {
        ctx.set_meta("step", step)?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// With `DEMO_CHILD_BEFORE_START=<path>`, the program starts `sleep 600`
/// before anything else and writes its pid to `<path>`: a child it had
/// before the supervisor started, which containment must leave alone.
fn child_before_start() -> Option<std::process::Child> {
    let path = std::env::var_os("DEMO_CHILD_BEFORE_START")?;
    if redis_tasks::started_as_worker_process() {
        return None;
    }
    let child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .ok()?;
    std::fs::write(path, format!("{}\n", child.id())).ok()?;
    Some(child)
}

fn main() -> ExitCode {
    let _child = child_before_start();
    let app = results::register(retries::app().version(env!("CARGO_PKG_VERSION")));
    let app = async_tasks::register(setup::register(app));
    let app = output::register(fan_out::register(hostile_clone::register(app)));
    hostile_identity::register(hostile_tree::register(hostile_sandbox::register(
        hostile_frames::register(app),
    )))
    .task("noop", |_, _: serde_json::Value| Ok::<(), String>(()))
    .task("sleep", sleep)
    .task("fail", |_, a: Message| Err::<(), _>(a.message))
    .task("panic", |_, a: Message| -> Result {
        panic!("{}", a.message)
    })
    .task("abort", |_, _: serde_json::Value| -> Result {
        std::process::abort()
    })
    .task("segfault", |_, _: serde_json::Value| -> Result {
        misbehave::segfault()
    })
    .task("exit", |_, a: Code| -> Result {
        std::process::exit(a.code)
    })
    .task("alloc", alloc)
    .task("spin", spin)
    .task("spawn", spawn)
    .task("write_file", write_file)
    .task("env", env)
    .task_with("reentrant_sleep", TaskOptions::new().reentrant(true), sleep)
    .task_with(
        "reentrant_abort",
        TaskOptions::new().reentrant(true),
        |_, _: serde_json::Value| -> Result { std::process::abort() },
    )
    .task("guarded_sleep", guarded_sleep)
    .task("fds", fds)
    .task("pid", pid)
    .task("mark", mark)
    .task_with("reentrant_mark", TaskOptions::new().reentrant(true), mark)
    .task("progress", progress)
    .task("report_progress", report_progress)
    .task("wait_for_file", wait_for_file)
    .task("connect", connect)
    .task("whoami", whoami)
    .task("ptrace", |_, _: serde_json::Value| -> Result {
        misbehave::ptrace_self()
    })
    .task("peek_parent", peek_parent)
    .task("steal_parent_fds", |ctx, _: serde_json::Value| -> Result {
        ctx.set_meta("stolen", misbehave::steal_parent_fds()?)
    })
    .task("reach_siblings", |ctx, _: serde_json::Value| -> Result {
        ctx.set_meta("reached", misbehave::reach_siblings()?)
    })
    .task("kill_everyone", |ctx, _: serde_json::Value| -> Result {
        ctx.set_meta("kill", misbehave::kill_everyone()?)
    })
    .task_with(
        "capped_alloc",
        TaskOptions::new().isolation(Isolation::new().memory_limit(64 << 20)),
        alloc,
    )
    .task("garbage", |_, _: serde_json::Value| -> Result {
        misbehave::write_garbage_frame()
    })
    .task("oversized", |_, _: serde_json::Value| -> Result {
        misbehave::write_oversized_frame()
    })
    .task_with(
        "quick_timeout",
        TaskOptions::new().timeout(Duration::from_secs(1)),
        sleep,
    )
    .middleware(redis_tasks::GraphMiddleware::new())
    .middleware(outcome_log::OutcomeLog::from_env())
    .main()
}
