//! The benchmark: one run, one Redis, every figure of docs/performance.md.
//!
//! ```text
//! cargo run --release --example bench -- [--tasks N] [--concurrency C] [--payload BYTES]
//! cargo run --release --example bench --features async -- --reused-only
//! ```
//!
//! With the `async` feature, a phase runs async no-op tasks
//! (`App::task_async`) on reused worker processes next to the sync ones;
//! `--reused-only` runs just those two phases, `--fresh-only` just N tasks
//! in a fresh process each (to profile that path).
//!
//! Redis: `REDIS_URL` if set, else a private `redis-server` started on a
//! free port in a temporary directory. Each phase uses its own key prefix.
//! The supervisor runs as a separate process (this binary with `worker`),
//! as in production.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_tasks::store::{Limit, Rate};
use redis_tasks::{App, Settings, Store, TaskContext, TaskOptions, TaskStatus};

#[path = "bench_delays.rs"]
mod delays;

/// The tasks the bench runs.
fn app() -> App {
    let app = App::new("bench");
    #[cfg(feature = "async")]
    let app = app.task_async(
        "async_noop",
        async |_: &TaskContext, _: serde_json::Value| Ok::<(), String>(()),
    );
    app.task("noop", |_: &TaskContext, _: serde_json::Value| {
        Ok::<(), String>(())
    })
    .task(
        "hang_long",
        |_: &TaskContext, _: serde_json::Value| -> Result<(), String> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        },
    )
    .task_with(
        "hang",
        TaskOptions::new().timeout(Duration::from_secs(1)),
        |_: &TaskContext, _: serde_json::Value| -> Result<(), String> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        },
    )
}

struct Options {
    tasks: usize,
    concurrency: usize,
    payload: usize,
    reused_only: bool,
    fresh_only: bool,
    /// Turns of floor and reused (see [`floor_and_reused`]).
    rounds: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        tasks: 20_000,
        concurrency: 2,
        payload: 0,
        reused_only: false,
        fresh_only: false,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> Result<usize, String> {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .parse()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--tasks" => o.tasks = value()?,
            "--concurrency" => o.concurrency = value()?,
            "--payload" => o.payload = value()?,
            "--reused-only" => o.reused_only = true,
            "--fresh-only" => o.fresh_only = true,
            "--rounds" => o.rounds = value()?.max(1),
            "--help" | "-h" => {
                return Err(
                    "usage: bench [--tasks N (20000)] [--concurrency C (2)] [--payload BYTES (0)] [--rounds R (3)] [--reused-only | --fresh-only]"
                        .into(),
                );
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// A Redis for the bench: `REDIS_URL`, else a private one.
struct Redis {
    url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redis() -> Result<Redis, String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok(Redis {
            url,
            child: None,
            _dir: None,
        });
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Redis {
        url: format!("redis://{addr}"),
        child: Some(child),
        _dir: Some(dir),
    })
}

fn store(url: &str, prefix: &str) -> Result<Store, String> {
    let settings = Settings {
        redis_url: url.into(),
        redis_prefix: prefix.into(),
        ..Settings::default()
    };
    Store::from_settings(&settings).map_err(|e| e.to_string())
}

fn payload(bytes: usize) -> serde_json::Value {
    serde_json::json!({ "data": "x".repeat(bytes) })
}

/// Enqueues `n` calls of `task` (a no-op) in batches of 1000.
fn fill(store: &Store, task: &str, n: usize, bytes: usize) -> Result<(), String> {
    let args = payload(bytes);
    let queue = store.queue("default");
    let mut left = n;
    while left > 0 {
        let batch: Vec<(&str, &serde_json::Value)> =
            (0..left.min(1000)).map(|_| (task, &args)).collect();
        queue.enqueue_many(&batch).map_err(|e| e.to_string())?;
        left -= batch.len();
    }
    Ok(())
}

/// The same transitions a supervisor performs per task (enqueue, fetch and
/// start, finish), back to back from `c` threads, without worker processes.
fn floor(url: &str, n: usize, c: usize, bytes: usize) -> Result<Phase, String> {
    let args = Arc::new(payload(bytes));
    let before = (redis_work(url)?, TreeUsage::now());
    let started = Instant::now();
    let threads: Vec<_> = (0..c)
        .map(|i| {
            let (url, args) = (url.to_owned(), Arc::clone(&args));
            std::thread::spawn(move || -> Result<(), String> {
                let store = store(&url, "bench_floor")?;
                let queue = format!("floor{i}");
                let slot = format!("floor-slot-{i}");
                for _ in 0..n / c {
                    store
                        .queue(queue.as_str())
                        .enqueue("noop", &*args)
                        .map_err(|e| e.to_string())?;
                    let fetched = store
                        .fetch(&slot, std::slice::from_ref(&queue), Duration::ZERO)
                        .map_err(|e| e.to_string())?
                        .ok_or("nothing fetched")?;
                    store
                        .finish(
                            &slot,
                            &fetched.id,
                            TaskStatus::Finished,
                            None,
                            jiff::Timestamp::now(),
                        )
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "floor thread panicked")??;
    }
    let rate = (n / c * c) as f64 / started.elapsed().as_secs_f64();
    Phase::measured(url, rate, n / c * c, before)
}

fn supervisor(
    url: &str,
    prefix: &str,
    c: usize,
    max_tasks: u64,
    burst: bool,
    settings: Option<&Path>,
) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .args([
            "--concurrency",
            &c.to_string(),
            "--max-tasks-per-child",
            &max_tasks.to_string(),
        ])
        .env("REDIS_URL", url)
        .env("RT_REDIS_PREFIX", prefix)
        // BENCH_SUPERVISOR_LOG: the supervisor's RUST_LOG, for a look
        // inside a run (warn by default: logging every task costs time).
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SUPERVISOR_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdin(Stdio::null());
    if burst {
        cmd.arg("--burst");
    }
    if let Some(path) = settings {
        cmd.env("RT_SETTINGS", path);
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start the supervisor: {e}"))
}

/// Runs `n` pre-enqueued no-op tasks through a burst supervisor; tasks/s
/// from the first start to the last recorded outcome.
fn end_to_end(
    url: &str,
    prefix: &str,
    n: usize,
    c: usize,
    bytes: usize,
    max_tasks: u64,
    settings: Option<&Path>,
) -> Result<Phase, String> {
    end_to_end_of("noop", url, prefix, n, c, bytes, max_tasks, settings)
}

/// [`end_to_end`] with `task` (a no-op: `noop` or `async_noop`).
#[allow(clippy::too_many_arguments)]
fn end_to_end_of(
    task: &str,
    url: &str,
    prefix: &str,
    n: usize,
    c: usize,
    bytes: usize,
    max_tasks: u64,
    settings: Option<&Path>,
) -> Result<Phase, String> {
    let store = store(url, prefix)?;
    fill(&store, task, n, bytes)?;
    let before = (redis_work(url)?, TreeUsage::now());
    let started = Instant::now();
    let mut child = supervisor(url, prefix, c, max_tasks, true, settings)?;
    let status = child.wait().map_err(|e| e.to_string())?;
    let wall = started.elapsed();
    let after = (redis_work(url)?, TreeUsage::now());
    if !status.success() {
        return Err(format!("supervisor exited with {status}"));
    }
    let done = store.finished().count().map_err(|e| e.to_string())? as usize;
    if done != n {
        return Err(format!("{done} of {n} tasks finished"));
    }
    // First start to last end, from the records of the first and last task.
    let first = store.finished().tasks(0, 1).map_err(|e| e.to_string())?;
    let last = store
        .finished()
        .tasks(n - 1, 1)
        .map_err(|e| e.to_string())?;
    let span = match (first.first(), last.first()) {
        (Some(Ok(a)), Some(Ok(b))) => match (a.started_at, b.ended_at) {
            (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
            _ => wall.as_secs_f64(),
        },
        _ => wall.as_secs_f64(),
    };
    Ok(Phase::between(n as f64 / span.max(1e-9), n, before, after))
}

/// Reused worker processes on a queue with a concurrency limit of `c`
/// (as many as the slots, so it never holds a slot back): what a limit
/// costs on the task path (docs/flow-control.md, "Cost").
fn limited(url: &str, n: usize, c: usize, bytes: usize) -> Result<Phase, String> {
    let prefix = "bench_limited";
    let limit = u32::try_from(c).map_err(|e| e.to_string())?;
    store(url, prefix)?
        .limit_queue("default", Limit::Concurrency(limit))
        .map_err(|e| e.to_string())?;
    end_to_end(url, prefix, n, c, bytes, 1_000_000, None)
}

/// What a rate limit of [`RATE_MAX`] starts per second does to `n` tasks
/// queued at once on `c` slots: the starts per second it lets through
/// after the first window (whose starts come at once), and
/// the lateness of each start held back by the window (its start minus
/// the moment the window first allowed it: the start `RATE_MAX` earlier
/// plus a second), p50 and p99 in milliseconds.
fn rate_lateness(url: &str, n: usize, c: usize) -> Result<(f64, f64, f64), String> {
    let prefix = "bench_rate";
    let store = store(url, prefix)?;
    let rate: Rate = format!("{RATE_MAX}/1s")
        .parse()
        .map_err(|e| format!("{e}"))?;
    store
        .limit_queue("default", Limit::Rate(rate))
        .map_err(|e| e.to_string())?;
    fill(&store, "noop", n, 0)?;
    // Not --burst: a burst run stops when the window is full.
    let mut child = supervisor(url, prefix, c, 1_000_000, false, None)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.finished().count().map_err(|e| e.to_string())? < n as u64 {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the rate-limited tasks did not finish within 120 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nix_kill(child.id()).map_err(|e| e.to_string())?;
    let _ = child.wait();
    let mut starts: Vec<jiff::Timestamp> = store
        .finished()
        .tasks(0, n)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|t| t.ok().and_then(|t| t.started_at))
        .collect();
    starts.sort();
    let (Some(first), Some(last)) = (starts.first(), starts.last()) else {
        return Err("no starts recorded".to_owned());
    };
    let span = last.duration_since(*first).as_secs_f64();
    // The first window's starts come at once; the rate is what follows.
    let per_second = starts.len().saturating_sub(RATE_MAX) as f64 / span.max(1e-9);
    let mut late: Vec<f64> = starts
        .iter()
        .skip(RATE_MAX)
        .zip(&starts)
        .map(|(start, earlier)| {
            let allowed = *earlier + jiff::SignedDuration::from_secs(1);
            start.duration_since(allowed).as_secs_f64() * 1000.0
        })
        .collect();
    late.sort_by(f64::total_cmp);
    Ok((per_second, percentile(&late, 0.5), percentile(&late, 0.99)))
}

/// The rate limit of [`rate_lateness`], per second.
const RATE_MAX: usize = 500;

/// The documented `strict` preset (docs/security.md) on the default
/// queue, with `nobody` as its account: every task gets a worker process
/// of its own, in a network namespace, under Landlock and seccomp. Needs
/// root (switching user, namespaces); `None` otherwise.
fn strict_profile(url: &str, n: usize, c: usize, bytes: usize) -> Result<Option<Phase>, String> {
    // The effective uid, from /proc.
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Ok(None);
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let settings = dir.path().join("strict.toml");
    std::fs::write(
        &settings,
        "[queues.default]\nuser = \"nobody\"\nmemory_limit = \"512M\"\ncpu_time_limit = \"60s\"\n\
         open_files_limit = 128\nenv = [\"PATH\", \"LANG\", \"TZ\"]\nworking_dir = \"/\"\n\
         network = false\nread_only_paths = [\"/usr\", \"/lib\", \"/lib64\", \"/bin\", \"/etc\"]\n\
         seccomp = true\n",
    )
    .map_err(|e| e.to_string())?;
    // `nobody` must reach this binary: a checkout in a private (0700)
    // directory makes every task fail, which is reported, not fatal.
    match end_to_end(url, "bench_strict", n, c, bytes, 1_000_000, Some(&settings)) {
        Ok(phase) => Ok(Some(phase)),
        Err(e) => {
            eprintln!("strict profile phase failed: {e}");
            Ok(None)
        }
    }
}

fn enqueue_rates(url: &str, n: usize, bytes: usize) -> Result<(f64, f64), String> {
    let store = store(url, "bench_enqueue")?;
    let args = payload(bytes);
    let queue = store.queue("default");
    let started = Instant::now();
    for _ in 0..n {
        queue.enqueue("noop", &args).map_err(|e| e.to_string())?;
    }
    let single = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    fill(&store, "noop", n * 5, bytes)?;
    let batched = (n * 5) as f64 / started.elapsed().as_secs_f64();
    Ok((single, batched))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

struct Live {
    latency_ms: (f64, f64),
    timeout_late_ms: (f64, f64),
    supervisor_kb: u64,
    worker_kb: u64,
    delays: delays::Figures,
}

/// Latency with idle slots, timeout precision and memory, on one running
/// supervisor.
fn live(url: &str, c: usize) -> Result<Live, String> {
    let prefix = "bench_live";
    let store = store(url, prefix)?;
    let mut child = supervisor(url, prefix, c, 1000, false, None)?;
    let pid = child.id();
    let wait = |id: &str| wait_ended(&store, id);
    // Warm up: every slot has run a task, so each has a worker process ready.
    for _ in 0..c * 4 {
        let id = store
            .queue("default")
            .enqueue("noop", &())
            .map_err(|e| e.to_string())?;
        wait(&id)?;
    }
    let mut lat = Vec::new();
    for _ in 0..300 {
        let id = store
            .queue("default")
            .enqueue("noop", &())
            .map_err(|e| e.to_string())?;
        let t = wait(&id)?;
        if let Some(s) = t.started_at {
            lat.push(s.duration_since(t.enqueued_at).as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    lat.sort_by(f64::total_cmp);
    let worker_kb = children(pid)
        .iter()
        .filter_map(|p| status_kb(*p, "VmRSS:"))
        .max()
        .unwrap_or(0);
    let ids: Vec<String> = (0..20)
        .map(|_| store.queue("default").enqueue("hang", &()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut late = Vec::new();
    for id in &ids {
        let t = wait(id)?;
        if let (Some(s), Some(e)) = (t.started_at, t.ended_at) {
            late.push((e.duration_since(s).as_secs_f64() - 1.0) * 1e3);
        }
    }
    late.sort_by(f64::total_cmp);
    let delays = delays::measure(&store, "hang_long", percentile)?;
    let supervisor_kb = status_kb(pid, "VmHWM:").unwrap_or(0);
    let _ = nix_kill(pid);
    let _ = child.wait();
    Ok(Live {
        latency_ms: (percentile(&lat, 0.5), percentile(&lat, 0.99)),
        timeout_late_ms: (
            percentile(&late, 0.5),
            late.last().copied().unwrap_or(f64::NAN),
        ),
        supervisor_kb,
        worker_kb,
        delays,
    })
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

fn run(o: Options) -> Result<(), String> {
    let redis = redis()?;
    let (n, c, bytes) = (o.tasks, o.concurrency, o.payload);
    println!(
        "bench: {n} no-op tasks, concurrency {c}, payload {bytes} bytes, Redis {}",
        redis.url
    );
    if o.reused_only {
        return reused_sync_and_async(&redis.url, n, c, bytes);
    }
    if o.fresh_only {
        // N tasks, each in a fresh process (for profiling that path).
        let fresh = end_to_end(&redis.url, "bench_fresh_only", n, c, bytes, 1, None)?;
        println!(
            "| end to end, fresh process per task (C={c}) | {:.0} tasks/s |",
            fresh.rate
        );
        return Ok(());
    }
    let (floor, reused, ratios) = floor_and_reused(&redis.url, n, c, bytes, o.rounds)?;
    let fresh_n = (n / 4).max(500);
    let fresh = end_to_end(&redis.url, "bench_fresh", fresh_n, c, bytes, 1, None)?;
    let strict_n = (n / 50).max(100);
    let strict = strict_profile(&redis.url, strict_n, c, bytes)?;
    let (single, batched) = enqueue_rates(&redis.url, n, bytes)?;
    let live = live(&redis.url, c)?;
    let fresh_idle = idle(&redis.url, "bench_fresh_idle", c, 1)?;
    let limited = limited(&redis.url, n, c, bytes)?;
    let (rate_per_s, late_p50, late_p99) = rate_lateness(&redis.url, (n / 5).max(3 * RATE_MAX), c)?;
    println!();
    print_rates(
        c,
        &floor,
        &reused,
        &fresh,
        strict.as_ref(),
        (fresh_n, strict_n),
    );
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "| reused, ratio to the floor of each round ({} rounds; the median's round is shown above) | {} | | |",
        ratios.len(),
        each.join(" / ")
    );
    println!("| enqueue, one at a time | {single:.0} tasks/s | 15000 | |");
    println!("| enqueue, batches of 1000 | {batched:.0} tasks/s | 100000 | |");
    print_live(&live, &fresh_idle);
    println!(
        "| end to end, reused, queue concurrency limit {c} (C={c}) | {:.0} tasks/s | | {:.2} of reused |",
        limited.rate,
        limited.rate / reused.rate
    );
    println!(
        "| rate limit {RATE_MAX}/1s: starts per second, lateness p50 / p99 | {rate_per_s:.0} /s, {late_p50:.1} ms / {late_p99:.1} ms | {RATE_MAX} /s | |"
    );
    println!();
    print_costs(&floor, &reused, &fresh, strict.as_ref(), &limited);
    Ok(())
}

/// The floor and reused worker processes, measured in turns: `rounds` of
/// each, every floor right before its reused run. On a shared machine the
/// host's speed drifts by a fifth or more within a minute, and a ratio of
/// two figures taken seconds apart drifts with it; the median of the
/// rounds' ratios does much less. Returns the phases of the round whose
/// ratio is that median, and every round's ratio, in order.
fn floor_and_reused(
    url: &str,
    n: usize,
    c: usize,
    bytes: usize,
    rounds: usize,
) -> Result<(Phase, Phase, Vec<f64>), String> {
    let mut measured = Vec::new();
    for round in 0..rounds {
        let floor = floor(url, n, c, bytes)?;
        let prefix = format!("bench_reused_{round}");
        let reused = end_to_end(url, &prefix, n, c, bytes, 1_000_000, None)?;
        measured.push((reused.rate / floor.rate, floor, reused));
    }
    let ratios: Vec<f64> = measured.iter().map(|(r, _, _)| *r).collect();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, floor, reused) = measured.swap_remove(measured.len() / 2);
    Ok((floor, reused, ratios))
}

/// The throughput rows: each phase and its ratio to the floor.
fn print_rates(
    c: usize,
    floor: &Phase,
    reused: &Phase,
    fresh: &Phase,
    strict: Option<&Phase>,
    (fresh_n, strict_n): (usize, usize),
) {
    let f = floor.rate;
    println!("| figure | value | target | ratio |");
    println!("| --- | --- | --- | --- |");
    println!("| Redis floor (C={c}) | {f:.0} tasks/s | | 1.00 |");
    println!(
        "| end to end, reused worker processes (C={c}) | {:.0} tasks/s | 10000 and 50% of floor | {:.2} of floor |",
        reused.rate,
        reused.rate / f
    );
    println!(
        "| end to end, fresh process per task (C={c}, {fresh_n} tasks) | {:.0} tasks/s | 0.5 of floor | {:.2} of floor |",
        fresh.rate,
        fresh.rate / f
    );
    match strict {
        Some(strict) => println!(
            "| end to end, strict profile, a process per task (C={c}, {strict_n} tasks) | {:.0} tasks/s | 0.2 of floor | {:.2} of floor |",
            strict.rate,
            strict.rate / f
        ),
        None => println!(
            "| end to end, strict profile | skipped: needs root, and a binary user nobody can run | | |"
        ),
    }
}

/// The rows measured on running supervisors with idle slots.
fn print_live(live: &Live, fresh: &Idle) {
    println!(
        "| enqueue-to-start p50 / p99 (idle slots, reused processes) | {:.2} ms / {:.2} ms | 1 ms / 5 ms | |",
        live.latency_ms.0, live.latency_ms.1
    );
    println!(
        "| enqueue-to-start p50 / p99 (idle slots, fresh process per task) | {:.2} ms / {:.2} ms | | |",
        fresh.latency_ms.0, fresh.latency_ms.1
    );
    println!(
        "| timeout recorded after deadline p50 / max (20) | {:.1} ms / {:.1} ms | 50 ms | |",
        live.timeout_late_ms.0, live.timeout_late_ms.1
    );
    let d = &live.delays;
    println!(
        "| delayed task start after due p50 / p99 / max ({}, idle slots) | {:.1} ms / {:.1} ms / {:.1} ms | 100 ms at p99 | |",
        d.delayed, d.lateness_ms.0, d.lateness_ms.1, d.lateness_ms.2
    );
    println!(
        "| cancel of a running task to recorded outcome p50 / p99 / max ({}) | {:.1} ms / {:.1} ms / {:.1} ms | 200 ms at p99 | |",
        d.cancels, d.cancel_ms.0, d.cancel_ms.1, d.cancel_ms.2
    );
    println!(
        "| supervisor peak RSS | {:.1} MB | 15 MB | |",
        live.supervisor_kb as f64 / 1024.0
    );
    println!(
        "| supervisor peak RSS, fresh process per task | {:.1} MB | 15 MB | |",
        fresh.supervisor_kb as f64 / 1024.0
    );
    println!(
        "| fork server RSS | {:.1} MB | | |",
        fresh.fork_server_kb as f64 / 1024.0
    );
    println!(
        "| worker process RSS | {:.1} MB | 5 MB | |",
        live.worker_kb as f64 / 1024.0
    );
}

/// Per task: Redis's work (INFO commandstats) and the supervisor tree's
/// (supervisor, fork server, worker processes: getrusage of the bench's
/// reaped children). The floor's Redis work includes its enqueue; the
/// others' does not (their tasks are enqueued before the counters are read).
fn print_costs(
    floor: &Phase,
    reused: &Phase,
    fresh: &Phase,
    strict: Option<&Phase>,
    limited: &Phase,
) {
    println!(
        "| per task | Redis commands | Redis µs | CPU µs (supervisor tree) | minor faults | voluntary / involuntary switches |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let row = |name: &str, p: &Phase| {
        let per = |v: u64| v as f64 / p.tasks.max(1) as f64;
        println!(
            "| {name} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} / {:.1} |",
            per(p.redis.calls),
            per(p.redis.usec),
            per(p.usage.cpu_us),
            per(p.usage.minflt),
            per(p.usage.nvcsw),
            per(p.usage.nivcsw)
        );
    };
    row("floor (enqueue, fetch, finish)", floor);
    row("reused", reused);
    row("fresh", fresh);
    if let Some(strict) = strict {
        row("strict", strict);
    }
    row("reused, queue concurrency limit", limited);
}

/// One measured phase.
struct Phase {
    /// Tasks per second.
    rate: f64,
    tasks: usize,
    redis: RedisWork,
    usage: TreeUsage,
}

impl Phase {
    fn between(
        rate: f64,
        tasks: usize,
        before: (RedisWork, TreeUsage),
        after: (RedisWork, TreeUsage),
    ) -> Phase {
        Phase {
            rate,
            tasks,
            redis: after.0.minus(before.0),
            usage: after.1.minus(before.1),
        }
    }

    fn measured(
        url: &str,
        rate: f64,
        tasks: usize,
        before: (RedisWork, TreeUsage),
    ) -> Result<Phase, String> {
        let after = (redis_work(url)?, TreeUsage::now());
        Ok(Phase::between(rate, tasks, before, after))
    }
}

/// Commands Redis has run and the microseconds it spent in them, over all
/// commands but `INFO` (the bench's own reading).
#[derive(Clone, Copy, Default)]
struct RedisWork {
    calls: u64,
    usec: u64,
}

impl RedisWork {
    fn minus(self, earlier: RedisWork) -> RedisWork {
        RedisWork {
            calls: self.calls.saturating_sub(earlier.calls),
            usec: self.usec.saturating_sub(earlier.usec),
        }
    }
}

fn redis_work(url: &str) -> Result<RedisWork, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut con = client.get_connection().map_err(|e| e.to_string())?;
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    Ok(parse_commandstats(&text))
}

/// Sums `cmdstat_<name>:calls=N,usec=M,...` lines, `INFO` left out.
fn parse_commandstats(text: &str) -> RedisWork {
    let mut work = RedisWork::default();
    for line in text.lines() {
        let Some((name, fields)) = line.trim().split_once(':') else {
            continue;
        };
        if !name.starts_with("cmdstat_") || name == "cmdstat_info" {
            continue;
        }
        for field in fields.split(',') {
            match field.split_once('=') {
                Some(("calls", v)) => work.calls += v.parse::<u64>().unwrap_or(0),
                Some(("usec", v)) => work.usec += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    work
}

/// What the bench's reaped children used: the supervisor and, reaped by it
/// or by its fork server, every worker process.
#[derive(Clone, Copy, Default)]
struct TreeUsage {
    cpu_us: u64,
    minflt: u64,
    nvcsw: u64,
    nivcsw: u64,
}

impl TreeUsage {
    fn now() -> TreeUsage {
        use nix::sys::resource::{UsageWho, getrusage};
        let Ok(u) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
            return TreeUsage::default();
        };
        let us = |t: nix::sys::time::TimeVal| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
                + u64::try_from(t.tv_usec()).unwrap_or(0)
        };
        let n = |v: libc::c_long| u64::try_from(v).unwrap_or(0);
        TreeUsage {
            cpu_us: us(u.user_time()) + us(u.system_time()),
            minflt: n(u.minor_page_faults()),
            nvcsw: n(u.voluntary_context_switches()),
            nivcsw: n(u.involuntary_context_switches()),
        }
    }

    fn minus(self, earlier: TreeUsage) -> TreeUsage {
        TreeUsage {
            cpu_us: self.cpu_us.saturating_sub(earlier.cpu_us),
            minflt: self.minflt.saturating_sub(earlier.minflt),
            nvcsw: self.nvcsw.saturating_sub(earlier.nvcsw),
            nivcsw: self.nivcsw.saturating_sub(earlier.nivcsw),
        }
    }
}

/// Enqueue-to-start and memory on a running supervisor with idle slots.
struct Idle {
    latency_ms: (f64, f64),
    supervisor_kb: u64,
    /// The largest child of the supervisor that is not a worker process
    /// (the fork server, with `--max-tasks-per-child 1`); 0 without one.
    fork_server_kb: u64,
}

fn idle(url: &str, prefix: &str, c: usize, max_tasks: u64) -> Result<Idle, String> {
    let store = store(url, prefix)?;
    let mut child = supervisor(url, prefix, c, max_tasks, false, None)?;
    let pid = child.id();
    let mut lat = Vec::new();
    let measured = (|| -> Result<(), String> {
        for i in 0..(200 + c * 4) {
            let id = store
                .queue("default")
                .enqueue("noop", &())
                .map_err(|e| e.to_string())?;
            let t = wait_ended(&store, &id)?;
            // The first tasks warm every slot up.
            if let (Some(s), true) = (t.started_at, i >= c * 4) {
                lat.push(s.duration_since(t.enqueued_at).as_secs_f64() * 1e3);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })();
    let fork_server_kb = children(pid)
        .iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("fork-server"))
        })
        .filter_map(|p| status_kb(*p, "VmRSS:"))
        .max()
        .unwrap_or(0);
    let supervisor_kb = status_kb(pid, "VmHWM:").unwrap_or(0);
    let _ = nix_kill(pid);
    let _ = child.wait();
    measured?;
    lat.sort_by(f64::total_cmp);
    Ok(Idle {
        latency_ms: (percentile(&lat, 0.5), percentile(&lat, 0.99)),
        supervisor_kb,
        fork_server_kb,
    })
}

/// Waits (30 s at most) for task `id` to finish or fail.
fn wait_ended(store: &Store, id: &str) -> Result<redis_tasks::TaskRecord, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = store.task(id).map_err(|e| e.to_string())?;
        if matches!(t.status, TaskStatus::Finished | TaskStatus::Failed) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(format!("task {id} did not end"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reused worker processes, sync no-op tasks, then async ones (with the
/// `async` feature).
fn reused_sync_and_async(url: &str, n: usize, c: usize, bytes: usize) -> Result<(), String> {
    let sync = end_to_end(url, "bench_reused_sync", n, c, bytes, 1_000_000, None)?.rate;
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!("| end to end, reused worker processes, sync no-op (C={c}) | {sync:.0} tasks/s |");
    #[cfg(feature = "async")]
    {
        let run = |prefix| end_to_end_of("async_noop", url, prefix, n, c, bytes, 1_000_000, None);
        let asynchronous = run("bench_reused_async")?.rate;
        println!(
            "| end to end, reused worker processes, async no-op (C={c}) | {asynchronous:.0} tasks/s ({:.2} of sync) |",
            asynchronous / sync
        );
    }
    #[cfg(not(feature = "async"))]
    println!("| end to end, async no-op | skipped: build with --features async |");
    Ok(())
}

fn main() -> ExitCode {
    if redis_tasks::started_as_worker_process()
        || std::env::args().nth(1).as_deref() == Some("worker")
    {
        return app().main();
    }
    match parse_options().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
