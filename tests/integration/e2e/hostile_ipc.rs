//! Point 6 of "contain hostile tasks": the IPC channel cannot hurt the
//! supervisor or the next task.

use std::fs;
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, error_of};

/// The peak resident memory of process `pid`, in KiB (`VmHWM`).
fn peak_rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_meta_flood_cannot_grow_the_supervisor() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[("RUST_LOG", "info")]);
    // 1000 frames of 256 KiB: 250 MiB sent as fast as the task can.
    let id = demo.enqueue("meta_flood", json!({"frames": 1000, "kib": 256}));
    demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(120));
    let peak = peak_rss_kib(running.pid());
    eprintln!("supervisor peak RSS under the flood: {} MiB", peak >> 10);
    assert!(peak < 50 << 10, "supervisor peak RSS {peak} KiB");
    running.stop();
}

#[test]
fn a_process_that_reads_no_answers_cannot_hold_its_slot() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    // Far more answers than a socket's buffer holds, then the whole
    // process stops: the supervisor's answers have nowhere to go.
    let id = demo.enqueue("answer_jam", json!({"frames": 20000}));
    let t = demo.wait_ended(&id, Duration::from_secs(90));
    assert!(
        error_of(&t).contains("did not read the supervisor's answers for 5 s"),
        "{t:#?}\n{}",
        running.log()
    );
    // And the slot goes on with the next task.
    let next = demo.enqueue("pid", json!({}));
    let t = demo.wait_ended(&next, Duration::from_secs(30));
    assert_eq!(t.status, TaskStatus::Finished, "{t:#?}");
    running.stop();
}

#[test]
fn a_stray_frame_after_the_end_retires_only_its_own_worker_process() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let marker = demo.path("stray.sent");
    let stray = demo.enqueue("stray_finished", json!({"path": marker}));
    let first = demo.wait_status(&stray, TaskStatus::Finished, Duration::from_secs(30));
    // Its thread is still waiting to send when the task ends, so the
    // process is not used again (it is killed, and the frame never goes).
    let next = demo.enqueue("pid", json!({}));
    let t = demo.wait_ended(&next, Duration::from_secs(30));
    assert_eq!(t.status, TaskStatus::Finished, "{t:#?}");
    assert_ne!(
        t.meta["pid"], first.meta["pid"],
        "the stray's process was reused"
    );
    assert!(!marker.exists(), "the stray's thread outlived its process");
    running.stop();
}

#[test]
fn a_thread_left_behind_cannot_reach_the_next_task() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let (go, sent) = (demo.path("go"), demo.path("sent"));
    let args = json!({"go": go, "sent": sent});
    let first = demo.enqueue("stray_later", args.clone());
    let first = demo.wait_status(&first, TaskStatus::Finished, Duration::from_secs(30));
    // The next task starts while the thread of the first one still waits
    // for it; on a reused process the thread's forged frame would fail it.
    let next = demo.enqueue("go_and_wait", args);
    let t = demo.wait_ended(&next, Duration::from_secs(30));
    assert_eq!(t.status, TaskStatus::Finished, "{t:#?}");
    assert_ne!(
        t.meta["pid"], first.meta["pid"],
        "the process with the thread left behind was reused"
    );
    assert!(
        !sent.exists(),
        "the thread left behind outlived its process"
    );
    running.stop();
}

#[test]
fn the_supervisors_own_kill_is_not_named_a_limit() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[]);
    let id = demo.enqueue("close_ipc_and_hang", json!({}));
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    let error = error_of(&t);
    assert!(!error.contains("limit"), "{error}");
    assert!(error.contains("killed by the supervisor"), "{error}");
    running.stop();
}

#[test]
fn oversized_args_from_a_raw_producer_fail_naming_the_setting() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[("RT_MAX_ARGS_BYTES", "1024")]);
    let args = json!({"blob": "x".repeat(4096)}).to_string();
    let mut conn = demo.redis.client();
    let id = "raw-oversized";
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(format!("redis_tasks:task:{id}"))
        .arg(&[
            "task", "noop", "args", &args, "status", "queued", "queue", "default",
        ])
        .arg(&["enqueued_at", "2026-01-01T00:00:00Z"])
        .cmd("RPUSH")
        .arg("redis_tasks:queue:default")
        .arg(id)
        .cmd("SADD")
        .arg("redis_tasks:queues")
        .arg("default")
        .query::<()>(&mut conn)
        .expect("raw enqueue");
    let t = demo.wait_ended(id, Duration::from_secs(30));
    let error = error_of(&t);
    assert!(error.contains("max_args_bytes (1024)"), "{error}");
    running.stop();
}
