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
fn get(port: u16, path: &str) -> Option<(String, String)> {
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
fn sample(text: &str, series: &str) -> Option<f64> {
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
