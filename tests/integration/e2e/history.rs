//! The history of endings written by a real supervisor: its ending
//! scripts count finished, failed and retried runs of real worker
//! processes, with run times that match what the tasks did.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redis_tasks::protocol::TaskStatus;
use redis_tasks::store::MinuteStats;
use serde_json::json;

use super::Demo;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn a_supervisor_counts_every_ending_with_its_run_time() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(demo.enqueue("sleep", json!({"secs": 0.5})));
    }
    ids.push(demo.enqueue("fail", json!({"message": "no"})));
    let counter = demo.path("flaky-history");
    ids.push(demo.enqueue(
        "flaky_retry",
        json!({"path": counter.to_str(), "failures": 1}),
    ));
    for id in &ids {
        demo.wait_ended(id, LONG);
    }
    sup.stop();
    assert_eq!(demo.task(&ids[4]).status, TaskStatus::Failed);
    assert_eq!(demo.task(&ids[5]).status, TaskStatus::Finished);

    let hour = SignedDuration::from_hours(1);
    let minutes = demo
        .store
        .history(Some("default"), Timestamp::now() - hour, Timestamp::now())
        .expect("history");
    let mut sum = MinuteStats::default();
    for m in &minutes {
        sum.merge(m);
    }
    assert_eq!(
        (sum.finished, sum.failed, sum.retried, sum.canceled),
        (5, 1, 1, 0),
        "{minutes:?}"
    );
    // Four of seven runs slept 0.5 s: the median run is that, within the
    // buckets' factor of √2 below and the cost of starting a worker
    // process above (and the waits were counted too).
    let p50 = sum.run.percentile(0.5).expect("runs").as_secs_f64();
    assert!(p50 > 0.5 / 2f64.sqrt() && p50 < 1.5, "p50 {p50}");
    assert_eq!(sum.wait.count(), 7);
}
