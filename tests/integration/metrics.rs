//! The supervisor's `/metrics`: a real demo supervisor started with
//! `--metrics-addr`, scraped over HTTP while it runs tasks that finish,
//! fail, crash and time out; the page must pass `promtool check metrics`
//! (Debian's `prometheus` package; `.ci/run` installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::{CancelResult, EnqueueOptions, Jitter, RetryPolicy, TaskStatus};
use serde_json::json;

use crate::e2e::Demo;
use crate::support::{free_port, wait_until};

/// `GET path` on `port`: the status line and the body.
pub(crate) fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.to_owned();
    Some((status, body.to_owned()))
}

/// The value of the sample `series` (name and labels exactly as printed).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's prometheus package (.ci/run does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- page:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_supervisor_serves_metrics_that_promtool_accepts() {
    let demo = Demo::new();
    let port = free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut sup = demo.start(
        &["--concurrency", "2", "--metrics-addr", &addr],
        &[("RT_DEFAULT_TASK_TIMEOUT", "1")],
    );
    let ok = demo.enqueue("noop", json!(null));
    let bad = demo.enqueue("fail", json!({"message": "on purpose"}));
    let crash = demo.enqueue("segfault", json!(null));
    let late = demo.enqueue("sleep", json!({"secs": 30}));
    for id in [&ok, &bad, &crash, &late] {
        demo.wait_ended(id, Duration::from_secs(60));
    }
    assert_eq!(demo.task(&ok).status, TaskStatus::Finished);
    // A queue with work waiting: nobody listens on "later".
    demo.store
        .queue("later")
        .enqueue("noop", &json!(null))
        .expect("enqueue");
    // A task due in an hour, in the delayed set.
    demo.store
        .queue("default")
        .enqueue_with(
            "noop",
            &json!(null),
            &EnqueueOptions::new().delay(Duration::from_secs(3600)),
        )
        .expect("enqueue");
    // Flow control: a paused queue and a limited one.
    demo.store.pause_queue("later").expect("pause");
    demo.store
        .limit_queue("default", redis_tasks::store::Limit::Concurrency(5))
        .expect("limit");
    demo.store
        .limit_task("render", redis_tasks::store::Limit::Concurrency(2))
        .expect("limit");

    let mut page = String::new();
    wait_until(
        "the counters to show every ending",
        Duration::from_secs(60),
        || {
            let Some((status, body)) = get(port, "/metrics") else {
                return false;
            };
            assert!(status.contains("200"), "{status}\n{body}");
            page = body;
            sample(
                &page,
                r#"redis_tasks_task_timeouts_total{queue="default",task="sleep"}"#,
            ) == Some(1.0)
        },
    );
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&page, series), Some(value), "{series}\n{page}");
    };
    expect(
        r#"redis_tasks_tasks_ended_total{queue="default",task="noop",outcome="finished"}"#,
        1.0,
    );
    expect(
        r#"redis_tasks_tasks_ended_total{queue="default",task="fail",outcome="failed"}"#,
        1.0,
    );
    expect(
        r#"redis_tasks_worker_process_crashes_total{signal="SIGSEGV"}"#,
        1.0,
    );
    expect(r#"redis_tasks_queue_length{queue="later"}"#, 1.0);
    expect(r#"redis_tasks_queue_paused{queue="later"}"#, 1.0);
    expect(r#"redis_tasks_queue_paused{queue="default"}"#, 0.0);
    expect(
        r#"redis_tasks_queue_concurrency_limit{queue="default"}"#,
        5.0,
    );
    expect(r#"redis_tasks_queue_permits_in_use{queue="default"}"#, 0.0);
    expect(r#"redis_tasks_task_concurrency_limit{task="render"}"#, 2.0);
    expect(r#"redis_tasks_task_held{task="render"}"#, 0.0);
    expect("redis_tasks_scheduled_tasks", 1.0);
    expect(r#"redis_tasks_registry_tasks{registry="failed"}"#, 3.0);
    expect(r#"redis_tasks_registry_tasks{registry="finished"}"#, 1.0);
    expect(r#"redis_tasks_slots{state="busy"}"#, 0.0);
    expect(r#"redis_tasks_slots{state="idle"}"#, 2.0);
    expect(
        r#"redis_tasks_task_duration_seconds_count{queue="default",task="noop"}"#,
        1.0,
    );
    expect(
        r#"redis_tasks_task_start_latency_seconds_count{queue="default"}"#,
        4.0,
    );
    assert!(
        sample(&page, "redis_tasks_worker_process_starts_total").is_some_and(|n| n >= 3.0),
        "a crash and a timeout each cost a process:\n{page}"
    );
    assert!(
        sample(&page, "process_resident_memory_bytes").is_some_and(|b| b > 0.0),
        "{page}"
    );
    promtool_check(&page);

    let (status, _) = get(port, "/nothing").expect("answer");
    assert!(status.contains("404"), "{status}");
    sup.stop();
}

#[test]
fn retried_and_canceled_runs_are_not_counted_as_failed() {
    let demo = Demo::new();
    let port = free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut sup = demo.start(&["--concurrency", "1", "--metrics-addr", &addr], &[]);
    let retried = demo
        .store
        .queue("default")
        .enqueue_with(
            "fail",
            &json!({"message": "try again later"}),
            &EnqueueOptions::new().retry(
                RetryPolicy::new(1)
                    .base(Duration::from_secs(3600))
                    .cap(Duration::from_secs(3600))
                    .jitter(Jitter::None),
            ),
        )
        .expect("enqueue");
    demo.wait_status(&retried, TaskStatus::Scheduled, Duration::from_secs(60));
    let running = demo.enqueue("sleep", json!({"secs": 60}));
    demo.wait_status(&running, TaskStatus::Running, Duration::from_secs(60));
    assert_eq!(
        demo.store.cancel_task(&running).expect("cancel"),
        CancelResult::Requested
    );
    demo.wait_status(&running, TaskStatus::Canceled, Duration::from_secs(60));

    let mut page = String::new();
    wait_until("the cancel to be counted", Duration::from_secs(60), || {
        let Some((_, body)) = get(port, "/metrics") else {
            return false;
        };
        page = body;
        sample(
            &page,
            r#"redis_tasks_tasks_ended_total{queue="default",task="sleep",outcome="canceled"}"#,
        ) == Some(1.0)
    });
    assert_eq!(
        sample(
            &page,
            r#"redis_tasks_tasks_ended_total{queue="default",task="fail",outcome="retried"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert!(
        !page.contains(r#"outcome="failed""#),
        "neither run is a final failure:\n{page}"
    );
    assert_eq!(
        sample(&page, "redis_tasks_scheduled_tasks"),
        Some(1.0),
        "the retry waits in the delayed set:\n{page}"
    );
    promtool_check(&page);
    sup.stop();
}

#[test]
fn a_taken_metrics_address_stops_the_supervisor_at_start() {
    let demo = Demo::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let o = demo
        .cmd()
        .args(["worker", "--burst", "--metrics-addr", &addr])
        .fails();
    assert!(
        o.stderr
            .contains(&format!("cannot serve metrics on {addr}")),
        "{}",
        o.stderr
    );
}

/// The `Threads:` and `VmRSS:` (kB) lines of `/proc/<pid>/status`.
fn threads_and_rss(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("field")
    };
    (field("Threads:"), field("VmRSS:"))
}

/// A raw producer (restricted ACL user, another language) writes records
/// with made-up queue fields and task names, and fills `P:queues` with
/// made-up names: the page keeps a bounded number of series and the
/// supervisor's memory stays flat.
#[test]
fn made_up_queue_and_task_names_neither_grow_the_page_nor_the_supervisor() {
    let demo = Demo::new();
    let port = free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut sup = demo.start(
        &[
            "--concurrency",
            "2",
            "--max-tasks-per-child",
            "100000",
            "--metrics-addr",
            &addr,
        ],
        &[],
    );
    let warm = demo.enqueue("noop", json!(null));
    demo.wait_ended(&warm, Duration::from_secs(60));
    let (_, rss_before) = threads_and_rss(sup.pid());
    let mut conn = demo.redis.client();
    const NAMES: usize = 30_000;
    const TASKS: usize = 2_000;
    for chunk in (0..NAMES).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SADD")
                .arg("redis_tasks:queues")
                .arg(format!("made-up-queue-{i}"))
                .ignore();
            if i % 100 == 0 {
                pipe.cmd("RPUSH")
                    .arg(format!("redis_tasks:queue:made-up-queue-{i}"))
                    .arg(format!("nobody-runs-{i}"))
                    .ignore();
            }
        }
        pipe.query::<()>(&mut conn).expect("queue names");
    }
    let ids: Vec<String> = (0..TASKS).map(|i| format!("made-up-{i}")).collect();
    for (n, chunk) in ids.chunks(500).enumerate() {
        let mut pipe = redis::pipe();
        for (i, id) in chunk.iter().enumerate() {
            let task = if i % 2 == 0 {
                "noop".to_owned()
            } else {
                format!("made-up-task-{n}-{i}")
            };
            pipe.cmd("HSET")
                .arg(format!("redis_tasks:task:{id}"))
                .arg(&["task", &task, "args", "null", "status", "queued"])
                .arg(&["queue", &format!("made-up-field-{n}-{i}")])
                .arg(&["enqueued_at", "2026-01-01T00:00:00Z"])
                .ignore()
                .cmd("RPUSH")
                .arg("redis_tasks:queue:default")
                .arg(id)
                .ignore();
        }
        pipe.query::<()>(&mut conn).expect("raw tasks");
    }
    let last = ids.last().expect("ids");
    demo.wait_ended(last, Duration::from_secs(300));
    let mut page = String::new();
    let mut scrape = Duration::ZERO;
    wait_until(
        "every made-up task counted",
        Duration::from_secs(120),
        || {
            let started = std::time::Instant::now();
            let Some((_, body)) = get(port, "/metrics") else {
                return false;
            };
            scrape = started.elapsed();
            page = body;
            let ended: f64 = page
                .lines()
                .filter(|l| l.starts_with("redis_tasks_tasks_ended_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            ended >= (TASKS + 1) as f64
        },
    );
    let queue_series = page
        .lines()
        .filter(|l| l.starts_with("redis_tasks_queue_length{"))
        .count();
    assert!(
        page.len() < 100_000,
        "{} bytes, {} lines; first lines:\n{}",
        page.len(),
        page.lines().count(),
        page.lines().take(80).collect::<Vec<_>>().join("\n")
    );
    assert!(queue_series <= 52, "{queue_series} queue_length series");
    assert_eq!(
        sample(&page, r#"redis_tasks_queue_length{queue="other"}"#),
        Some((NAMES / 100 - 50) as f64),
        "the rest of the queues summed"
    );
    // The records' made-up queue fields never reach a label: the queue is
    // the one each task was fetched from (and such a record fails as
    // corrupt); made-up task names are counted as `other`.
    assert!(
        sample(
            &page,
            r#"redis_tasks_tasks_ended_total{queue="default",task="other",outcome="failed"}"#
        )
        .is_some_and(|n| n >= (TASKS / 2) as f64),
        "{page}"
    );
    // (queue_length shows the fleet's 50 longest queues by design.)
    for made_up in ["made-up-field", "made-up-task"] {
        assert!(!page.contains(made_up), "{made_up} in a label:\n{page}");
    }
    promtool_check(&page);
    let (_, rss_after) = threads_and_rss(sup.pid());
    eprintln!(
        "made-up names: page {} bytes, {queue_series} queue_length series, scrape {scrape:?}, RSS {rss_before} -> {rss_after} kB",
        page.len()
    );
    assert!(
        rss_after < rss_before + 40 * 1024,
        "supervisor RSS grew from {rss_before} kB to {rss_after} kB"
    );
    sup.stop();
}

/// Thousands of clients that open a connection and send nothing, or
/// pipeline requests without reading an answer: a normal scrape is still
/// answered, tasks still run, the supervisor starts no thread for them,
/// and SIGTERM still stops it.
#[test]
fn half_open_and_pipelining_clients_cannot_hurt_the_supervisor() {
    let demo = Demo::new();
    let port = free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut sup = demo.start(&["--concurrency", "2", "--metrics-addr", &addr], &[]);
    let warm = demo.enqueue("noop", json!(null));
    demo.wait_ended(&warm, Duration::from_secs(60));
    assert!(get(port, "/metrics").is_some_and(|(s, _)| s.contains("200")));
    let (threads_before, _) = threads_and_rss(sup.pid());

    let target: std::net::SocketAddr = addr.parse().expect("addr");
    let mut clients = Vec::new();
    let pipelined = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50);
    for i in 0..2000 {
        let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            continue;
        };
        match i % 3 {
            0 => {}
            1 => {
                let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            }
            _ => {
                let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = stream.write_all(pipelined.as_bytes());
            }
        }
        clients.push(stream);
    }
    assert!(
        clients.len() > 500,
        "only {} clients connected",
        clients.len()
    );

    let (status, body) = {
        let mut answer = None;
        wait_until("a normal scrape answered", Duration::from_secs(20), || {
            answer = get(port, "/metrics");
            answer.is_some()
        });
        answer.expect("answer")
    };
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("redis_tasks_slots"), "{body}");
    let ids: Vec<String> = (0..5).map(|_| demo.enqueue("noop", json!(null))).collect();
    for id in &ids {
        assert_eq!(
            demo.wait_ended(id, Duration::from_secs(60)).status,
            TaskStatus::Finished
        );
    }
    let (threads_during, _) = threads_and_rss(sup.pid());
    eprintln!(
        "{} clients held: threads {threads_before} -> {threads_during}",
        clients.len()
    );
    assert!(
        // Slots may have a helper thread or two of their own meanwhile.
        threads_during <= threads_before + 10,
        "threads went from {threads_before} to {threads_during}"
    );
    sup.stop();
    drop(clients);
}

/// The scrape's pipelined queue lengths agree with each queue's own count,
/// on plain and on partitioned data (`redis_partitions = 3`).
#[test]
fn queue_lengths_read_at_once_match_each_queues_count() {
    use redis_tasks::Store;
    use redis_tasks::store::RedisConfig;
    let server = crate::support::RedisServer::start();
    for partitions in [1, 3] {
        let config = RedisConfig::from_url(&server.url(), None)
            .expect("url")
            .with_partitions(partitions);
        let prefix = format!("p{partitions}");
        let store = Store::with_config(config, &prefix).expect("store");
        for i in 0..8 {
            for _ in 0..i {
                store
                    .queue(format!("q{i}"))
                    .enqueue("job", &json!(null))
                    .expect("enqueue");
            }
        }
        let lengths = store.queue_lengths().expect("lengths");
        assert_eq!(lengths.len(), 7, "{partitions}: {lengths:?}");
        for (name, len) in &lengths {
            let count = store.queue(name.as_str()).count().expect("count");
            assert_eq!(*len, count, "{partitions}: {name}");
        }
        assert_eq!(lengths.iter().map(|(_, n)| n).sum::<u64>(), 28);
    }
}
