//! How a fleet's load divides over the masters of a Redis Cluster: the
//! same burst of no-op tasks over several queues, run once against a
//! three-master cluster and once against a single `redis-server`, both
//! started here on loopback. Prints the throughput of each and, per
//! master, the data commands it served (from `INFO commandstats`), its
//! share, and the queues whose tasks it holds. Figures in docs/redis.md.
//!
//! ```text
//! cargo run --release --example bench_cluster -- [--tasks N] [--queues K] [--supervisors S] [--concurrency C]
//! ```
//!
//! Defaults: 6000 tasks over 6 queues, 2 burst supervisors of 2 slots
//! each. The supervisors are this binary with `worker --burst`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use redis_tasks::{App, Settings, Store, TaskContext};

fn app() -> App {
    App::new("bench_cluster").task("noop", |_: &TaskContext, _: serde_json::Value| {
        Ok::<(), String>(())
    })
}

struct Options {
    tasks: usize,
    queues: usize,
    supervisors: usize,
    concurrency: usize,
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

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn connect(port: u16) -> Result<redis::Connection, String> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .map_err(|e| format!("connect to {port}: {e}"))
}

/// Polls `cond` every 20 ms until it holds, for at most `secs` seconds.
fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A `redis-server` on a free port; `cluster` turns cluster mode on (with
/// a free port of its own for the cluster bus).
fn server(cluster: bool) -> Result<Server, String> {
    let port = free_port()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null());
    if cluster {
        cmd.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-port", &free_port()?.to_string()]);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    wait("redis-server to start", 10, || {
        connect(port).is_ok_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
    })?;
    Ok(server)
}

/// Three masters, no replicas, slots split evenly by
/// `redis-cli --cluster create`.
fn cluster() -> Result<Vec<Server>, String> {
    let nodes = (0..3)
        .map(|_| server(true))
        .collect::<Result<Vec<_>, _>>()?;
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    wait("the cluster to form", 60, || {
        nodes.iter().all(|n| {
            connect(n.port)
                .and_then(|mut c| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut c)
                        .map_err(|e| e.to_string())
                })
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    })?;
    Ok(nodes)
}

/// `DBSIZE` of the node on `port`.
fn dbsize(port: u16) -> Result<u64, String> {
    redis::cmd("DBSIZE")
        .query(&mut connect(port)?)
        .map_err(|e| e.to_string())
}

/// Calls of data commands (everything but administration and connection
/// commands) in the node's `INFO commandstats`.
fn data_calls(port: u16) -> Result<u64, String> {
    const ADMIN: [&str; 11] = [
        "info", "cluster", "ping", "config", "client", "hello", "auth", "select", "command",
        "role", "readonly",
    ];
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut connect(port)?)
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let base = name.split('|').next().unwrap_or(name);
            if ADMIN.contains(&base) {
                return None;
            }
            rest.split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

fn reset_stats(port: u16) -> Result<(), String> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut connect(port)?)
        .map_err(|e| e.to_string())
}

/// Where a run goes.
enum Target<'a> {
    Url(&'a str),
    Cluster(&'a [String]),
}

/// One run's figures.
struct Run {
    tasks_per_sec: f64,
    /// Per node: port, data commands, queues whose tasks it holds.
    nodes: Vec<(u16, u64, Vec<String>)>,
}

/// Enqueues `o.tasks` no-op tasks round robin over `o.queues` queues
/// (queue by queue, watching which node's key count grows), then runs
/// them with `o.supervisors` burst supervisors and counts the commands
/// each node served while they ran.
/// `target`: a Redis URL, or the seed nodes of a Cluster (the
/// `redis_cluster_nodes` setting).
fn run(target: Target<'_>, ports: &[u16], o: &Options) -> Result<Run, String> {
    let prefix = "bench_cluster";
    let (url, nodes) = match target {
        Target::Url(url) => (url.to_owned(), Vec::new()),
        Target::Cluster(seeds) => ("redis://cluster-managed".to_owned(), seeds.to_vec()),
    };
    let mut settings = Settings {
        redis_url: url.clone(),
        redis_prefix: prefix.into(),
        ..Settings::default()
    };
    settings.redis.cluster_nodes = nodes.clone();
    let store = Store::from_settings(&settings).map_err(|e| e.to_string())?;
    let queues: Vec<String> = (0..o.queues).map(|i| format!("queue{i}")).collect();
    let mut holders: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for (i, queue) in queues.iter().enumerate() {
        let n = o.tasks / o.queues + usize::from(i < o.tasks % o.queues);
        let before = ports
            .iter()
            .map(|p| dbsize(*p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut left = n;
        while left > 0 {
            let batch: Vec<(&str, &serde_json::Value)> = (0..left.min(1000))
                .map(|_| ("noop", &serde_json::Value::Null))
                .collect();
            store
                .queue(queue.as_str())
                .enqueue_many(&batch)
                .map_err(|e| e.to_string())?;
            left -= batch.len();
        }
        let mut grown = (0, 0);
        for (port, before) in ports.iter().zip(before) {
            let delta = dbsize(*port)?.saturating_sub(before);
            if delta > grown.1 {
                grown = (*port, delta);
            }
        }
        holders.entry(grown.0).or_default().push(queue.clone());
    }
    for port in ports {
        reset_stats(*port)?;
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let children = (0..o.supervisors)
        .map(|i| {
            let mut cmd = Command::new(&exe);
            if !nodes.is_empty() {
                cmd.env("RT_REDIS_CLUSTER_NODES", nodes.join(","));
            }
            cmd.args([
                "worker",
                "--burst",
                "--concurrency",
                &o.concurrency.to_string(),
                "--instance",
                &format!("bench{i}"),
            ])
            .env("REDIS_URL", &url)
            .env("RT_REDIS_PREFIX", prefix)
            .env("RT_WORKER_QUEUES", queues.join(","))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a supervisor: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for mut child in children {
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("a supervisor exited with {status}"));
        }
    }
    let wall = started.elapsed();
    let done = store.finished().count().map_err(|e| e.to_string())? as usize;
    if done != o.tasks {
        return Err(format!("{done} of {} tasks finished", o.tasks));
    }
    let nodes = ports
        .iter()
        .map(|p| {
            Ok((
                *p,
                data_calls(*p)?,
                holders.get(p).cloned().unwrap_or_default(),
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Run {
        tasks_per_sec: o.tasks as f64 / wall.as_secs_f64(),
        nodes,
    })
}

fn report(name: &str, r: &Run, queues: usize) {
    let total: u64 = r.nodes.iter().map(|(_, c, _)| c).sum();
    println!("{name}: {:.0} tasks/s", r.tasks_per_sec);
    for (port, calls, held) in &r.nodes {
        let share = if total == 0 {
            0.0
        } else {
            *calls as f64 * 100.0 / total as f64
        };
        println!(
            "  node {port}: {calls} commands ({share:.0}% of commands), {} of {queues} queues{}",
            held.len(),
            if held.is_empty() || held.len() > 8 {
                String::new()
            } else {
                format!(" ({})", held.join(", "))
            }
        );
    }
}

fn bench(o: &Options) -> Result<(), String> {
    println!(
        "bench_cluster: {} no-op tasks over {} queues, {} burst supervisor(s) x {} slots, on loopback ({} CPUs)",
        o.tasks,
        o.queues,
        o.supervisors,
        o.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let single = server(false)?;
    let single_url = format!("redis://127.0.0.1:{}", single.port);
    let single_run = run(Target::Url(&single_url), &[single.port], o)?;
    drop(single);
    let nodes = cluster()?;
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let cluster_run = run(Target::Cluster(&seeds), &ports, o)?;
    println!();
    report("single redis-server", &single_run, o.queues);
    report("cluster of 3 masters", &cluster_run, o.queues);
    println!(
        "cluster / single throughput: {:.2}",
        cluster_run.tasks_per_sec / single_run.tasks_per_sec
    );
    Ok(())
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        tasks: 6000,
        queues: 6,
        supervisors: 2,
        concurrency: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{flag} needs a positive number"))?;
        match flag.as_str() {
            "--tasks" => o.tasks = value,
            "--queues" => o.queues = value,
            "--supervisors" => o.supervisors = value,
            "--concurrency" => o.concurrency = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    if redis_tasks::started_as_worker_process()
        || std::env::args().nth(1).as_deref() == Some("worker")
    {
        return app().main();
    }
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "bench_cluster: {e}\nusage: bench_cluster [--tasks N] [--queues K] [--supervisors S] [--concurrency C]"
            );
            return ExitCode::FAILURE;
        }
    };
    match bench(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_cluster: {e}");
            ExitCode::FAILURE
        }
    }
}
