//! The quickstart: a small mixed batch of tasks, run by a supervisor in
//! burst mode, and a table of what became of each.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! Redis: `REDIS_URL` if set, else 127.0.0.1:6379 if something answers
//! there, else a private `redis-server` started in a temporary directory
//! (and stopped at the end).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use redis_tasks::supervisor::SupervisorConfig;
use redis_tasks::{App, Settings, Store, TaskContext, TaskOptions, TaskStatus};
use serde::Deserialize;

#[derive(Deserialize)]
struct Invoice {
    customer: String,
    cents: u64,
}

/// The tasks of this example. Worker processes re-execute this binary and
/// find the same table.
fn app() -> App {
    App::new("quickstart")
        .task("send_invoice", |ctx: &TaskContext, inv: Invoice| {
            // A real task would call a mail service here; this one only
            // records what it did in the task's meta object.
            ctx.set_meta("sent_to", inv.customer.as_str())?;
            ctx.set_meta("cents", inv.cents)?;
            Ok::<(), String>(())
        })
        .task("charge_card", |_ctx: &TaskContext, card: String| {
            Err::<(), String>(format!("card {card} declined"))
        })
        .task(
            "parse_upload",
            |_ctx: &TaskContext, name: String| -> Result<(), String> {
                let sizes: Vec<usize> = Vec::new();
                // A bug: indexing past the end panics inside the task.
                let size = sizes[name.len()];
                std::hint::black_box(size);
                Ok(())
            },
        )
        .task(
            "native_decoder",
            |_ctx: &TaskContext, _: serde_json::Value| -> Result<(), String> { segfault() },
        )
        .task_with(
            "slow_report",
            TaskOptions::new().timeout(Duration::from_secs(2)),
            |_ctx: &TaskContext, secs: u64| -> Result<(), String> {
                std::thread::sleep(Duration::from_secs(secs));
                Ok(())
            },
        )
        .task_with(
            "resumable_import",
            TaskOptions::new().reentrant(true),
            |ctx: &TaskContext, rows: u64| -> Result<(), String> {
                // Reentrant: when its worker process dies, the task goes back
                // to the front of its queue instead of failing. This one
                // crashes on its first attempt, after noting its progress in
                // its meta object, and completes on the second.
                if ctx.meta().get("resumed_at_row").is_none() {
                    ctx.set_meta("resumed_at_row", rows / 2)?;
                    std::process::abort();
                }
                Ok(())
            },
        )
}

/// Dies by SIGSEGV, as native code with a memory bug would.
fn segfault() -> ! {
    // SAFETY: `signal` restores the default action for SIGSEGV (Rust's own
    // handler only reports stack overflows) and `raise` delivers it to this
    // thread, which ends the process; no memory of ours is touched.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    unreachable!("SIGSEGV with its default action ends the process")
}

/// A `redis-server` this example started, stopped on drop.
struct PrivateRedis {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reachable(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok())
        .is_some()
}

/// Finds a Redis to use, starting a private one when none answers.
fn find_redis() -> Result<(String, Option<PrivateRedis>), String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    if reachable("127.0.0.1:6379") {
        return Ok(("redis://127.0.0.1:6379".into(), None));
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("no Redis reachable and cannot start redis-server: {e}"))?;
    let private = PrivateRedis { child, _dir: dir };
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reachable(&addr) {
        if Instant::now() > deadline {
            return Err("the private redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("No Redis found; started a private redis-server on {addr}.");
    Ok((format!("redis://{addr}"), Some(private)))
}

fn main() -> ExitCode {
    let app = app();
    if redis_tasks::started_as_worker_process() {
        return app.main();
    }
    match run(app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(app: App) -> Result<(), String> {
    // Before any thread starts: Ctrl-C then stops the supervisor gracefully.
    let signals = redis_tasks::supervisor::signals::listen().map_err(|e| e.to_string())?;
    let (url, _private) = find_redis()?;
    let settings = Settings {
        redis_url: url,
        // A prefix of its own, so the example never mixes with real tasks:
        // `RT_REDIS_PREFIX=redis_tasks_quickstart redis-tasks info` shows it.
        redis_prefix: "redis_tasks_quickstart".into(),
        ..Settings::default()
    };
    let store = Store::from_settings(&settings).map_err(|e| e.to_string())?;
    let queue = store.queue("default");
    let batch: Vec<(&str, serde_json::Value)> = vec![
        (
            "send_invoice",
            serde_json::json!({"customer": "ada@example.com", "cents": 4200}),
        ),
        (
            "send_invoice",
            serde_json::json!({"customer": "grace@example.com", "cents": 990}),
        ),
        ("charge_card", serde_json::json!("4111-xxxx")),
        ("parse_upload", serde_json::json!("photo.png")),
        ("native_decoder", serde_json::json!(null)),
        ("slow_report", serde_json::json!(30)),
        ("resumable_import", serde_json::json!(1000)),
    ];
    let mut ids = Vec::new();
    for (task, args) in &batch {
        ids.push(queue.enqueue(task, args).map_err(|e| e.to_string())?);
    }
    println!(
        "Enqueued {} tasks; running a supervisor in burst mode.\n",
        ids.len()
    );

    let bar = ProgressBar::new(ids.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} tasks ended  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (bar, done, store) = (
            bar.clone(),
            Arc::clone(&done),
            store.independent().map_err(|e| e.to_string())?,
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let ended =
                    store.finished().count().unwrap_or(0) + store.failed().count().unwrap_or(0);
                bar.set_position(ended);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut config = SupervisorConfig::new(settings, vec!["default".into()]);
    config.burst = true;
    config.concurrency = 4;
    let summary = redis_tasks::supervisor::run(
        config,
        app.registry().clone(),
        app.registered_middleware(),
        &signals.requests,
    );
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    bar.finish_and_clear();
    let summary = summary.map_err(|e| e.to_string())?;

    let records: Vec<_> = ids.iter().map(|id| (id, store.task(id))).collect();
    let width = records
        .iter()
        .map(|(id, t)| t.as_ref().map_or(id.len(), |t| t.description.len()))
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<width$}  {:<8}  error", "task", "status");
    println!("{}", "-".repeat(width + 40));
    for (id, record) in &records {
        match record {
            Ok(t) => {
                let mut error = t.error.clone().unwrap_or_default();
                if !t.aborted_runs.is_empty() {
                    let note = format!("({} earlier run(s) interrupted)", t.aborted_runs.len());
                    error = if error.is_empty() {
                        note
                    } else {
                        format!("{error} {note}")
                    };
                }
                println!(
                    "{:<width$}  {:<8}  {error}",
                    t.description,
                    t.status.as_str()
                );
            }
            Err(e) => println!("{id:<width$}  ?         {e}"),
        }
    }
    println!(
        "\n{} finished, {} failed, {} requeued after a crash. Every task ended with a recorded",
        summary.finished, summary.failed, summary.requeued
    );
    println!(
        "outcome, even the one that segfaulted and the one that ran past its timeout, and the"
    );
    println!("reentrant import survived the crash of its first attempt.");
    println!(
        "Next: `cargo run --features demo --bin redis-tasks-demo -- --help`, and docs/middleware.md."
    );
    let unfinished = ids
        .iter()
        .filter(|id| {
            store
                .task(id)
                .map(|t| !matches!(t.status, TaskStatus::Finished | TaskStatus::Failed))
                .unwrap_or(true)
        })
        .count();
    if unfinished > 0 {
        return Err(format!("{unfinished} task(s) did not end"));
    }
    Ok(())
}
