//! The progress and meta rate limits hold in the supervisor, whatever a
//! worker process sends (the bounded-input issue's point 5): a task that
//! writes raw frames past its `TaskContext` costs Redis no more than the
//! documented rate, and its last report is kept.

use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::Demo;

/// The calls Redis has served so far, over all commands
/// (`INFO commandstats`).
fn redis_calls(demo: &Demo) -> u64 {
    let mut conn = demo.redis.client();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO");
    info.lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn raw_progress_frames_cannot_flood_redis() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[("RUST_LOG", "info")]);
    let warm = demo.enqueue("noop", json!(null));
    demo.wait_ended(&warm, Duration::from_secs(60));
    let before = redis_calls(&demo);
    let secs = 3.0;
    let id = demo.enqueue("progress_flood", json!({ "secs": secs }));
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    let calls = redis_calls(&demo) - before;
    let sent = t.result.as_ref().and_then(serde_json::Value::as_u64);
    eprintln!("{sent:?} progress and meta frames each in {secs} s made {calls} Redis calls");
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    assert!(sent.unwrap_or(0) > 1000, "the flood was too thin: {sent:?}");
    // At most 4 progress and 4 meta writes a second, plus the slot's own
    // fetch, heartbeat and finish, and the test's polling: a few hundred
    // at the very most. Unbounded, it is tens of thousands.
    assert!(calls < 1000, "{calls} Redis calls during the flood");
    // The last report and the last meta update are not lost.
    let progress = demo
        .store
        .progress(&id)
        .expect("progress")
        .expect("some progress");
    assert_eq!(progress.message, "last", "{progress:?}");
    assert_eq!(t.meta.get("last"), Some(&json!(true)), "{:?}", t.meta);
    sup.stop();
}

#[test]
fn raw_meta_frames_with_new_keys_cannot_grow_the_record_past_the_limit() {
    let demo = Demo::new();
    let limit = 300_000;
    let mut sup = demo.start(
        &["--concurrency", "1"],
        &[("RT_MAX_ARGS_BYTES", "300000"), ("RUST_LOG", "info")],
    );
    // 12 updates of 50 KiB, each with a key of its own, one per window:
    // merged, they would make 600 KiB.
    let id = demo.enqueue(
        "meta_growth",
        json!({ "keys": 12, "kib": 50, "pause_ms": 300 }),
    );
    let t = demo.wait_ended(&id, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    let size = serde_json::Value::Object(t.meta.clone()).to_string().len();
    assert!(size <= limit, "meta grew to {size} bytes");
    assert!(t.meta.contains_key("k0"), "the first updates were stored");
    assert!(sup.log().contains("which bounds meta"), "{}", sup.log());
    sup.stop();
}
