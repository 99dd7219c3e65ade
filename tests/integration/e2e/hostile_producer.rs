//! A producer that writes Redis with raw commands is outside the trust
//! boundary: nothing it writes into a task record chooses a weaker
//! profile, panics a slot, or makes the supervisor load a huge value.
//! (The containment issue's point 2, the bounded-input issue's points 3
//! and 4.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, error_of};
use crate::support::wait_until;

/// Writes task `id` with `fields` (plus the required ones unless given)
/// and pushes it onto `list_queue`'s list, as a producer in another
/// language could.
fn raw_enqueue(demo: &Demo, id: &str, list_queue: &str, fields: &[(&str, &str)]) {
    let mut all: Vec<(&str, &str)> = vec![
        ("task", "noop"),
        ("args", "[]"),
        ("status", "queued"),
        ("queue", list_queue),
        ("enqueued_at", "2026-11-25T08:17:26Z"),
    ];
    all.retain(|(k, _)| !fields.iter().any(|(f, _)| f == k));
    all.extend_from_slice(fields);
    let mut conn = demo.redis.client();
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(format!("redis_tasks:task:{id}"))
        .arg(&all)
        .ignore()
        .cmd("SADD")
        .arg("redis_tasks:queues")
        .arg(list_queue)
        .ignore()
        .cmd("RPUSH")
        .arg(format!("redis_tasks:queue:{list_queue}"))
        .arg(id)
        .ignore()
        .query::<()>(&mut conn)
        .expect("raw enqueue");
}

/// The resident memory of process `pid` now, in KiB (`VmRSS`).
fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_record_naming_another_queue_is_not_run_under_that_queues_profile() {
    let demo = Demo::new();
    let settings = demo.path("settings.toml");
    // Any isolation key makes "untrusted" a profile of its own.
    fs::write(&settings, "[queues.untrusted]\nopen_files_limit = 64\n").expect("settings");
    // The isolated profile runs as a dynamic user (a profile is never
    // root): the marker's directory must be writable for it.
    let out = demo.path("out");
    fs::create_dir(&out).expect("out dir");
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).expect("chmod");
    let marker = out.join("ran");
    let args = json!({"path": marker, "text": "ran\n"}).to_string();
    // On the isolated queue's list, but the hash claims `default` (the
    // unrestricted profile).
    raw_enqueue(
        &demo,
        "liar",
        "untrusted",
        &[
            ("task", "write_file"),
            ("args", &args),
            ("queue", "default"),
        ],
    );
    let config = settings.display().to_string();
    let mut sup = demo.start(
        &["--concurrency", "1", "--config", &config, "untrusted"],
        &[],
    );
    let t = demo.wait_ended("liar", Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Failed, "{}", sup.log());
    let error = error_of(&t);
    assert!(
        error.contains("untrusted") && error.contains("default"),
        "the outcome names both queues: {error}"
    );
    assert!(!marker.exists(), "the task ran");
    // The slot goes on with honest work on the same queue.
    raw_enqueue(
        &demo,
        "honest",
        "untrusted",
        &[("task", "write_file"), ("args", &args)],
    );
    let t = demo.wait_ended("honest", Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    sup.stop();
}

#[test]
fn a_huge_timeout_in_a_record_neither_panics_nor_wedges_the_supervisor() {
    let demo = Demo::new();
    raw_enqueue(
        &demo,
        "forever",
        "default",
        &[("timeout", "10000000000000000000")],
    );
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    let t = demo.wait_ended("forever", Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    // The slot is alive: it takes the next task.
    let next = demo.enqueue("noop", json!(null));
    let t = demo.wait_ended(&next, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    assert!(!sup.log().contains("panicked"), "{}", sup.log());
    sup.stop();
}

#[test]
fn the_cli_refuses_a_timeout_over_max_task_timeout() {
    let demo = Demo::new();
    let out = demo
        .cmd()
        .args([
            "enqueue",
            "noop",
            "null",
            "--timeout",
            "10000000000000000000s",
        ])
        .fails();
    assert!(out.stderr.contains("max_task_timeout"), "{}", out.stderr);
    assert!(demo.queue_ids("default").is_empty());
}

#[test]
fn an_oversize_argument_is_refused_before_the_record_is_loaded() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    // A first task, so the supervisor's memory is at its working size.
    let warm = demo.enqueue("noop", json!(null));
    demo.wait_ended(&warm, Duration::from_secs(60));
    let before = rss_kib(sup.pid());
    let huge = format!("[\"{}\"]", "x".repeat(100 << 20));
    raw_enqueue(&demo, "huge", "default", &[("args", &huge)]);
    // Read with HGET: loading the whole record here would be slow.
    let mut conn = demo.redis.client();
    let mut field = |name: &str| -> Option<String> {
        redis::cmd("HGET")
            .arg("redis_tasks:task:huge")
            .arg(name)
            .query(&mut conn)
            .expect("HGET")
    };
    wait_until("the huge task to end", Duration::from_secs(120), || {
        matches!(field("status").as_deref(), Some("failed" | "finished"))
    });
    let after = rss_kib(sup.pid());
    eprintln!("supervisor RSS {before} KiB before, {after} KiB after the 100 MB record");
    assert_eq!(field("status").as_deref(), Some("failed"), "{}", sup.log());
    let error = field("error").unwrap_or_default();
    assert!(error.contains("max_args_bytes"), "{error}");
    assert!(
        after < before + (100 << 10),
        "the supervisor grew from {before} KiB to {after} KiB"
    );
    sup.stop();
}

#[test]
fn a_panic_in_a_slot_fails_its_task_and_the_supervisor_goes_on() {
    let demo = Demo::new();
    // Debug builds of the supervisor panic in the slot for this function.
    let mut sup = demo.start(
        &["--concurrency", "1"],
        &[("REDIS_TASKS_TEST_SLOT_PANIC", "sleep")],
    );
    let id = demo.enqueue("sleep", json!({"secs": 0.1}));
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Failed, "{}", sup.log());
    assert!(
        error_of(&t).contains("REDIS_TASKS_TEST_SLOT_PANIC"),
        "{t:#?}"
    );
    let next = demo.enqueue("noop", json!(null));
    let t = demo.wait_ended(&next, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    sup.stop();
}
