//! Task expiry with real supervisors of the demo binary: a task whose
//! expiry passed while no supervisor served its queue is never run and
//! ends `expired` (registry, `process_outcome`, metrics, CLI); a retry
//! that would come after the expiry is not made; bad expiries are refused
//! at enqueue with nothing written.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::protocol::TaskStatus;
use redis_tasks::{EnqueueOptions, Jitter, RetryPolicy};
use serde_json::json;

use super::Demo;
use crate::metrics::{get, sample};
use crate::support::{free_port, snapshot, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// The ids the `mark` tasks wrote to `path`.
fn marked(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_task_past_its_expiry_is_never_run_and_ends_expired_everywhere() {
    let demo = Demo::new();
    let marks = demo.path("marks");
    let args = json!({"path": marks.to_str(), "secs": 0}).to_string();
    let enqueue = |extra: &[&str]| {
        demo.cmd()
            .args(["enqueue", "mark", &args])
            .args(extra)
            .stdout()
    };
    // No supervisor serves the queue yet.
    let soon = enqueue(&["--expires-in", "1s"]);
    let later = enqueue(&["--expires-in", "1h"]);
    let plain = enqueue(&[]);
    let expires_at = demo.task(&soon).expires_at.expect("expires_at");
    assert!(demo.task(&later).expires_at.is_some());
    let shown = demo.cmd().args(["task", "show", &soon]).stdout();
    assert!(shown.contains("expires at:"), "{shown}");
    wait_until("the expiry to pass", LONG, || Timestamp::now() > expires_at);

    let port = free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut sup = demo.start(&["--concurrency", "1", "--metrics-addr", &addr], &[]);
    demo.wait_status(&later, TaskStatus::Finished, LONG);
    demo.wait_status(&plain, TaskStatus::Finished, LONG);
    let rec = demo.wait_status(&soon, TaskStatus::Expired, LONG);
    // Never run: no mark, never started.
    let mut ran = marked(&marks);
    ran.sort();
    let mut want = vec![later.clone(), plain.clone()];
    want.sort();
    assert_eq!(ran, want);
    assert_eq!(rec.started_at, None);
    assert!(rec.ended_at.is_some());

    // process_outcome saw it, once, as expired.
    wait_until("process_outcome to see the expiry", LONG, || {
        !demo.outcomes_of(&soon).is_empty()
    });
    let seen = demo.outcomes_of(&soon);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["status"], "expired");
    assert_eq!(seen[0]["outcome"], "failure");
    assert!(
        seen[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("before it started")),
        "{seen:?}"
    );

    // In its registry, listed and counted by the CLI.
    assert_eq!(
        demo.store.expired().ids(0, 10).expect("ids"),
        vec![soon.clone()]
    );
    let listed = demo.cmd().args(["expired", "list"]).stdout();
    assert!(listed.contains(&soon), "{listed}");
    assert!(listed.contains("1 of 1 expired task"), "{listed}");
    let info: serde_json::Value =
        serde_json::from_str(&demo.cmd().args(["info", "--json"]).stdout()).expect("json");
    assert_eq!(info["expired"], 1, "{info}");
    assert_eq!(info["failed"], 0, "{info}");
    let shown: serde_json::Value =
        serde_json::from_str(&demo.cmd().args(["task", "show", &soon, "--json"]).stdout())
            .expect("json");
    assert_eq!(shown["status"], "expired");
    assert!(shown["expires_at"].is_string(), "{shown}");
    let result = demo.cmd().args(["task", "result", &soon]).fails();
    assert!(result.stderr.contains("expired"), "{}", result.stderr);

    // Counted under outcome `expired`.
    let mut page = String::new();
    wait_until("the expiry to be counted", LONG, || {
        let Some((_, body)) = get(port, "/metrics") else {
            return false;
        };
        page = body;
        sample(
            &page,
            r#"redis_tasks_tasks_ended_total{queue="default",task="mark",outcome="expired"}"#,
        ) == Some(1.0)
    });
    assert_eq!(
        sample(
            &page,
            r#"redis_tasks_tasks_ended_total{queue="default",task="mark",outcome="finished"}"#,
        ),
        Some(2.0),
        "{page}"
    );
    sup.stop();
}

#[test]
fn a_retry_due_after_the_expiry_is_not_made() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    let counter = demo.path("flaky");
    let retry = |base| {
        RetryPolicy::new(3)
            .base(base)
            .cap(Duration::from_secs(3600))
            .jitter(Jitter::None)
    };
    // Its first retry would come an hour later, after its expiry.
    let options = EnqueueOptions::new()
        .retry(retry(Duration::from_secs(3600)))
        .expires_in(Duration::from_secs(600));
    let id = demo
        .store
        .queue("default")
        .enqueue_with(
            "flaky",
            &json!({"path": counter.to_str(), "failures": 5}),
            &options,
        )
        .expect("enqueue");
    let rec = demo.wait_status(&id, TaskStatus::Expired, LONG);
    let error = rec.error.clone().unwrap_or_default();
    assert!(
        error.contains("before its next attempt") && error.contains("attempt 1 failed"),
        "{rec:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&counter).expect("counter"),
        "attempt\n"
    );
    assert_eq!(demo.store.expired().count().expect("count"), 1);
    assert_eq!(demo.store.scheduled_count().expect("count"), 0);
    assert_eq!(demo.store.failed().count().expect("count"), 0);
    wait_until("process_outcome to see it", LONG, || {
        !demo.outcomes_of(&id).is_empty()
    });
    let seen = demo.outcomes_of(&id);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["status"], "expired");
    assert!(seen[0]["next_attempt"].is_null());

    // Retries that come before the expiry are made as usual.
    let counter = demo.path("flaky-2");
    let options = EnqueueOptions::new()
        .retry(retry(Duration::from_millis(20)))
        .expires_in(Duration::from_secs(3600));
    let id = demo
        .store
        .queue("default")
        .enqueue_with(
            "flaky",
            &json!({"path": counter.to_str(), "failures": 2}),
            &options,
        )
        .expect("enqueue");
    let rec = demo.wait_status(&id, TaskStatus::Finished, LONG);
    assert_eq!(rec.attempts.len(), 3, "{rec:#?}");
    sup.stop();
}

#[test]
fn bad_expiries_are_refused_at_enqueue_with_nothing_written() {
    let demo = Demo::new();
    let mut c = demo.redis.client();
    let before = snapshot(&mut c);
    let args = r#"{"secs": 0}"#;
    for (flags, says) in [
        (
            &["--expires-at", "2020-01-01T00:00:00Z"][..],
            "is not in the future",
        ),
        (
            &["--expires-in", "0s"][..],
            "--expires-in must be above zero",
        ),
        (&["--expires-in", "soon"][..], "--expires-in"),
        (&["--expires-at", "tomorrow"][..], "not an RFC 3339 time"),
        (
            &["--expires-in", "1m", "--expires-at", "2099-01-01T00:00:00Z"][..],
            "cannot be used with",
        ),
        (
            &["--in", "1h", "--expires-in", "10m"][..],
            "before it is due",
        ),
    ] {
        let out = demo
            .cmd()
            .args(["enqueue", "sleep", args])
            .args(flags)
            .fails();
        assert!(out.stderr.contains(says), "{flags:?}: {}", out.stderr);
    }
    assert_eq!(snapshot(&mut c), before, "nothing was written");
}

#[test]
fn a_task_that_expires_in_a_paused_queue_is_not_run_on_resume() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.cmd().args(["queue", "pause", "default"]).run();
    let marks = demo.path("marks");
    let args = json!({"path": marks.to_str(), "secs": 0});
    let soon = demo
        .store
        .queue("default")
        .enqueue_with(
            "mark",
            &args,
            &EnqueueOptions::new().expires_in(Duration::from_secs(1)),
        )
        .expect("enqueue");
    let plain = demo.enqueue("mark", args.clone());
    let expires_at = demo.task(&soon).expires_at.expect("expires_at");
    wait_until("the expiry to pass", LONG, || Timestamp::now() > expires_at);
    assert_eq!(
        demo.task(&soon).status,
        TaskStatus::Queued,
        "held by the pause"
    );
    demo.cmd().args(["queue", "resume", "default"]).run();
    demo.wait_status(&plain, TaskStatus::Finished, LONG);
    demo.wait_status(&soon, TaskStatus::Expired, LONG);
    assert_eq!(marked(&marks), vec![plain]);
    wait_until("process_outcome to see the expiry", LONG, || {
        demo.outcomes_of(&soon)
            .first()
            .is_some_and(|o| o["status"] == "expired")
    });
    sup.stop();
}
