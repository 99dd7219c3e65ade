//! The cost of the durable mode (`redis_wait_replicas = 1`): the same
//! work with and without a `WAIT` for one replica after every command, on
//! a master and a replica started on loopback. Figures in docs/redis.md.
//!
//! ```text
//! cargo run --release --example bench_durable -- [--tasks N] [--concurrency C]
//! ```

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use redis_tasks::{App, Settings, Store, TaskContext, TaskStatus};

fn app() -> App {
    App::new("bench_durable").task("noop", |_: &TaskContext, _: serde_json::Value| {
        Ok::<(), String>(())
    })
}

/// A `redis-server` killed on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(replica_of: Option<u16>) -> Result<Server, String> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null());
    if let Some(master) = replica_of {
        cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Server {
        child,
        port,
        _dir: dir,
    })
}

fn settings(url: &str, prefix: &str, durable: bool) -> Settings {
    let mut s = Settings {
        redis_url: url.into(),
        redis_prefix: prefix.into(),
        ..Settings::default()
    };
    if durable {
        s.redis.wait_replicas = 1;
    }
    s
}

fn store(url: &str, prefix: &str, durable: bool) -> Result<Store, String> {
    Store::from_settings(&settings(url, prefix, durable)).map_err(|e| e.to_string())
}

/// One producer, one enqueue at a time.
fn enqueue_rate(url: &str, n: usize, durable: bool) -> Result<f64, String> {
    let store = store(url, &format!("enq_{durable}"), durable)?;
    let started = Instant::now();
    for _ in 0..n {
        store
            .queue("default")
            .enqueue("noop", &serde_json::Value::Null)
            .map_err(|e| e.to_string())?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Enqueue, fetch and finish back to back from `c` threads.
fn floor(url: &str, n: usize, c: usize, durable: bool) -> Result<f64, String> {
    let started = Instant::now();
    let threads: Vec<_> = (0..c)
        .map(|i| {
            let url = url.to_owned();
            std::thread::spawn(move || -> Result<(), String> {
                let store = store(&url, &format!("floor_{durable}"), durable)?;
                let queue = format!("floor{i}");
                let slot = format!("floor-slot-{i}");
                for _ in 0..n / c {
                    store
                        .queue(queue.as_str())
                        .enqueue("noop", &serde_json::Value::Null)
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
    Ok((n / c * c) as f64 / started.elapsed().as_secs_f64())
}

/// `n` pre-enqueued no-op tasks through a burst supervisor (this binary
/// with `worker`), tasks/s by wall clock.
fn end_to_end(url: &str, n: usize, c: usize, durable: bool) -> Result<f64, String> {
    let prefix = format!("e2e_{durable}");
    let store = store(url, &prefix, false)?;
    let queue = store.queue("default");
    let mut left = n;
    while left > 0 {
        let batch: Vec<(&str, &serde_json::Value)> = (0..left.min(1000))
            .map(|_| ("noop", &serde_json::Value::Null))
            .collect();
        queue.enqueue_many(&batch).map_err(|e| e.to_string())?;
        left -= batch.len();
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = Command::new(exe)
        .args(["worker", "--burst", "--concurrency", &c.to_string()])
        .env("REDIS_URL", url)
        .env("RT_REDIS_PREFIX", &prefix)
        .env("RT_REDIS_WAIT_REPLICAS", if durable { "1" } else { "0" })
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start the supervisor: {e}"))?;
    let wall = started.elapsed();
    if !status.success() {
        return Err(format!("supervisor exited with {status}"));
    }
    let done = store.finished().count().map_err(|e| e.to_string())? as usize;
    if done != n {
        return Err(format!("{done} of {n} tasks finished"));
    }
    Ok(n as f64 / wall.as_secs_f64())
}

fn run(n: usize, c: usize) -> Result<(), String> {
    let master = server(None)?;
    let _replica = server(Some(master.port))?;
    let url = format!("redis://127.0.0.1:{}", master.port);
    // Wait for the replica to be in sync: a WAIT 1 that succeeds.
    let probe = store(&url, "probe", true)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.ping().is_err() {
        if Instant::now() > deadline {
            return Err("the replica did not sync".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("bench_durable: {n} no-op tasks, concurrency {c}, master and replica on loopback");
    println!();
    println!("| figure | without WAIT | with WAIT 1 | ratio |");
    println!("| --- | --- | --- | --- |");
    let row = |name: &str, off: f64, on: f64| {
        println!(
            "| {name} | {off:.0} tasks/s | {on:.0} tasks/s | {:.2} |",
            on / off
        );
    };
    row(
        "enqueue, one at a time",
        enqueue_rate(&url, n, false)?,
        enqueue_rate(&url, n, true)?,
    );
    row(
        &format!("Redis floor: enqueue + fetch + finish (C={c})"),
        floor(&url, n, c, false)?,
        floor(&url, n, c, true)?,
    );
    row(
        &format!("end to end, burst supervisor (C={c})"),
        end_to_end(&url, n, c, false)?,
        end_to_end(&url, n, c, true)?,
    );
    Ok(())
}

fn main() -> ExitCode {
    if redis_tasks::started_as_worker_process()
        || std::env::args().nth(1).as_deref() == Some("worker")
    {
        return app().main();
    }
    let mut n = 5_000;
    let mut c = 2;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (flag.as_str(), value) {
            ("--tasks", Some(v)) => n = v.max(1),
            ("--concurrency", Some(v)) => c = v.max(1),
            _ => {
                eprintln!("usage: bench_durable [--tasks N] [--concurrency C]");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(n, c) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_durable: {e}");
            ExitCode::FAILURE
        }
    }
}
