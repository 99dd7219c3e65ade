//! Retries, delayed enqueue, cancel of a running task and per-enqueue
//! timeouts with real supervisors of the demo binary.

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use redis_tasks::{EnqueueOptions, Jitter, RetryPolicy};
use serde_json::json;

use super::{Demo, error_of, is_gone};
use crate::support::{Cmd, wait_until};

const LONG: Duration = Duration::from_secs(60);

fn quick_retries(n: u32) -> RetryPolicy {
    RetryPolicy::new(n)
        .base(Duration::from_millis(20))
        .jitter(Jitter::None)
}

#[test]
fn a_failing_then_succeeding_task_ends_finished_with_its_attempts() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    // The task function's own policy: 3 retries.
    let counter = demo.path("flaky-1");
    let id = demo.enqueue(
        "flaky_retry",
        json!({"path": counter.to_str(), "failures": 2}),
    );
    let rec = demo.wait_status(&id, TaskStatus::Finished, LONG);
    assert_eq!(rec.attempts.len(), 3, "{rec:#?}");
    let statuses: Vec<TaskStatus> = rec.attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [TaskStatus::Failed, TaskStatus::Failed, TaskStatus::Finished]
    );
    assert_eq!(rec.attempts[0].error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(rec.attempts[1].error.as_deref(), Some("attempt 2 failed"));
    assert!(
        rec.attempts[..2]
            .iter()
            .all(|a| a.next_attempt_at.is_some())
    );
    assert_eq!(rec.attempts[2].next_attempt_at, None);
    assert_eq!(rec.error, None);
    assert_eq!(
        std::fs::read_to_string(&counter)
            .expect("counter")
            .lines()
            .count(),
        3
    );
    // process_outcome saw every attempt, and whether a retry followed.
    let seen = demo.outcomes_of(&id);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0]["next_attempt"].is_string() && seen[1]["next_attempt"].is_string());
    assert!(seen[2]["next_attempt"].is_null());
    assert_eq!(seen[2]["outcome"], "success");

    // A per-enqueue policy wins over the task function's (none here): one
    // retry only, so two failures end failed, counted once.
    let counter = demo.path("flaky-2");
    let options = EnqueueOptions::new().retry(quick_retries(1));
    let id = demo
        .store
        .queue("default")
        .enqueue_with(
            "flaky",
            &json!({"path": counter.to_str(), "failures": 5, "how": "panic"}),
            &options,
        )
        .expect("enqueue");
    let rec = demo.wait_status(&id, TaskStatus::Failed, LONG);
    assert_eq!(rec.attempts.len(), 2);
    assert!(
        error_of(&rec).starts_with("panicked: attempt 2 panicked"),
        "{rec:#?}"
    );
    assert_eq!(demo.store.failed().count().expect("count"), 1);
    // `task show` lists the attempts.
    let shown = demo.cmd().args(["task", "show", &id]).stdout();
    assert!(shown.contains("attempts:\n  1. "), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&demo.cmd().args(["task", "show", &id, "--json"]).stdout())
            .expect("json");
    assert_eq!(json["attempts"].as_array().map(Vec::len), Some(2));
    sup.stop();
}

#[test]
fn a_crash_on_the_last_attempt_ends_failed_naming_the_signal() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    let counter = demo.path("abort");
    let options = EnqueueOptions::new().retry(quick_retries(2));
    let id = demo
        .store
        .queue("default")
        .enqueue_with(
            "flaky",
            &json!({"path": counter.to_str(), "failures": 9, "how": "abort"}),
            &options,
        )
        .expect("enqueue");
    let rec = demo.wait_status(&id, TaskStatus::Failed, LONG);
    assert_eq!(
        error_of(&rec),
        "worker process killed by signal 6 (SIGABRT)"
    );
    assert_eq!(rec.attempts.len(), 3, "{rec:#?}");
    assert!(
        rec.attempts
            .iter()
            .all(|a| { a.error.as_deref() == Some("worker process killed by signal 6 (SIGABRT)") })
    );
    assert_eq!(demo.store.failed().count().expect("count"), 1);
    sup.stop();
}

#[test]
fn delayed_tasks_start_once_with_three_racing_supervisors_one_killed() {
    let demo = Demo::new();
    let marks = demo.path("marks");
    let queue = demo.store.queue("default");
    let mut ids = Vec::new();
    // Batches due every 200 ms over about 3 s.
    for batch in 0..15u64 {
        let calls: Vec<(&str, serde_json::Value)> = (0..20)
            .map(|_| ("mark", json!({"path": marks.to_str(), "secs": 0.01})))
            .collect();
        let options = EnqueueOptions::new().delay(Duration::from_millis(300 + 200 * batch));
        ids.extend(queue.enqueue_many_with(&calls, &options).expect("enqueue"));
    }
    let mut sups: Vec<_> = (0..3)
        .map(|_| demo.start(&["--concurrency", "2"], &[]))
        .collect();
    wait_until("a third of the tasks to end", LONG, || {
        demo.store.finished().count().expect("count") >= 100
    });
    sups[0].signal(Signal::SIGKILL);
    sups[0].wait_exit(LONG);
    wait_until("every task to end", Duration::from_secs(120), || {
        let ended = demo.store.finished().count().expect("count")
            + demo.store.failed().count().expect("count");
        ended == ids.len() as u64
    });
    assert_eq!(demo.store.scheduled_count().expect("count"), 0);
    let text = std::fs::read_to_string(&marks).expect("marks");
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        *runs.entry(line).or_default() += 1;
    }
    for id in &ids {
        let rec = demo.task(id);
        let n = runs.get(id.as_str()).copied().unwrap_or(0);
        match rec.status {
            // Each task ran exactly once.
            TaskStatus::Finished => assert_eq!(n, 1, "{rec:#?}"),
            // Only a task the killed supervisor was running may fail.
            TaskStatus::Failed => {
                assert_eq!(error_of(&rec), "worker died");
                assert!(n <= 1);
            }
            other => panic!("task {id} is {other}"),
        }
    }
    for sup in &mut sups[1..] {
        sup.stop();
    }
}

#[test]
fn cancel_of_a_running_task_kills_it_and_everything_it_started() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    let id = demo.enqueue("spawn", json!({"children": 2, "secs": 600}));
    let mut children = Vec::new();
    wait_until("the task's children", LONG, || {
        children = demo
            .store
            .task(&id)
            .ok()
            .and_then(|t| t.meta.get("children").cloned())
            .and_then(|c| serde_json::from_value::<Vec<i32>>(c).ok())
            .unwrap_or_default();
        children.len() == 2
    });
    let out = demo.cmd().args(["task", "cancel", &id]).run();
    assert_eq!(out.stdout, format!("canceled running task {id}\n"));
    let rec = demo.task(&id);
    assert_eq!(rec.status, TaskStatus::Canceled);
    assert_eq!(rec.error.as_deref(), Some("canceled while running"));
    for pid in children {
        wait_until(&format!("child {pid} to be gone"), LONG, || is_gone(pid));
    }
    let seen = demo.outcomes_of(&id);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["status"], "canceled");
    assert_eq!(demo.store.failed().count().expect("count"), 0);
    // The supervisor's record of the end enters the canceled registry.
    assert_eq!(
        demo.store.canceled().ids(0, 10).expect("ids"),
        vec![id.clone()]
    );
    // Again: it has ended, which is said, and nothing changes.
    let again = demo.cmd().args(["task", "cancel", &id]).fails();
    assert!(
        again
            .stderr
            .contains("has already ended (canceled); nothing changed"),
        "{}",
        again.stderr
    );

    // A reentrant task is not requeued when canceled; the slot goes on.
    let reentrant = demo.enqueue("reentrant_sleep", json!({"secs": 600}));
    demo.wait_status(&reentrant, TaskStatus::Running, LONG);
    demo.cmd().args(["task", "cancel", &reentrant]).run();
    let rec = demo.wait_status(&reentrant, TaskStatus::Canceled, LONG);
    assert!(rec.aborted_runs.is_empty());
    assert!(demo.queue_ids("default").is_empty());
    let next = demo.enqueue("noop", json!([]));
    demo.wait_status(&next, TaskStatus::Finished, LONG);
    sup.stop();
}

#[test]
fn cli_options_delay_time_timeout_and_unknown_fields() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    // --in: scheduled first, then run.
    let out = demo
        .cmd()
        .args(["enqueue", "noop", "[]", "--in", "2s"])
        .run();
    let later = out.stdout.trim().to_owned();
    assert_eq!(demo.task(&later).status, TaskStatus::Scheduled);
    let info = demo.cmd().args(["info"]).stdout();
    assert!(info.contains("scheduled: 1"), "{info}");
    // --at in the past (a clock that jumped, a late producer): at once.
    let out = demo
        .cmd()
        .args(["enqueue", "noop", "[]", "--at", "2001-01-01T00:00:00Z"])
        .run();
    let past = out.stdout.trim().to_owned();
    demo.wait_status(&past, TaskStatus::Finished, LONG);
    demo.wait_status(&later, TaskStatus::Finished, LONG);
    // --timeout overrides the task function's (and the default) timeout.
    let out = demo
        .cmd()
        .args(["enqueue", "sleep", r#"{"secs": 600}"#, "--timeout", "1s"])
        .run();
    let slow = out.stdout.trim().to_owned();
    let rec = demo.wait_ended(&slow, LONG);
    assert_eq!(error_of(&rec), "timeout (1 s) reached");
    // Bad values are refused with nothing written.
    let bad = demo
        .cmd()
        .args(["enqueue", "noop", "[]", "--at", "tomorrow"])
        .fails();
    assert!(bad.stderr.contains("--at"), "{}", bad.stderr);

    // Unknown fields of a raw producer: one warning per field name.
    let mut conn = demo.redis.client();
    for n in 0..2 {
        let id = format!("raw-{n}");
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(format!("redis_tasks:task:{id}"))
            .arg(&[
                ("task", "noop"),
                ("args", "[]"),
                ("status", "queued"),
                ("queue", "default"),
                ("enqueued_at", "2026-11-25T08:17:26Z"),
                ("timeuot", "5"),
            ])
            .ignore()
            .cmd("RPUSH")
            .arg("redis_tasks:queue:default")
            .arg(&id)
            .ignore()
            .query::<()>(&mut conn)
            .expect("raw enqueue");
        demo.wait_status(&id, TaskStatus::Finished, LONG);
    }
    let log = sup.log();
    assert_eq!(log.matches("has field \"timeuot\"").count(), 1, "{log}");
    sup.stop();
}

#[test]
fn a_cli_retry_count_retries_with_the_default_policy() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    let counter = demo.path("cli-flaky");
    let args = json!({"path": counter.to_str(), "failures": 1}).to_string();
    let out = Cmd::new(super::demo_bin())
        .env("REDIS_URL", demo.redis.url())
        .args(["enqueue", "flaky", &args, "--retries", "2"])
        .run();
    let id = out.stdout.trim().to_owned();
    assert_eq!(demo.task(&id).retry.map(|r| r.max_retries), Some(2));
    // The default base is 1 s with full jitter: done within a few seconds.
    let rec = demo.wait_status(&id, TaskStatus::Finished, LONG);
    assert_eq!(rec.attempts.len(), 2);
    sup.stop();
}
