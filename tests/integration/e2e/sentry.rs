//! Failed tasks reported to Sentry (issue 24, point 5): a local HTTP server
//! stands in for the DSN's host, receives the envelopes and decodes them.
//! Every failed ending, also those only the supervisor sees (a crash, a
//! timeout), is reported once with its task, queue, id and attempt.

use std::sync::Mutex;
use std::time::Duration;

use redis_tasks::{EnqueueOptions, TaskStatus};
use serde_json::{Value, json};

use super::Demo;
use crate::support::wait_until;

/// The events among the received envelopes (each envelope: a header
/// line, then item headers each followed by their payload line).
fn events(bodies: &Mutex<Vec<String>>) -> Vec<Value> {
    bodies
        .lock()
        .expect("bodies")
        .iter()
        .flat_map(|body| {
            body.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|v| v.get("event_id").is_some() && v.get("tags").is_some())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_failed_ending_is_reported_once_with_its_coordinates() {
    let demo = Demo::new();
    let (port, bodies) = crate::support::http_sink::start();
    let dsn = format!("http://public@127.0.0.1:{port}/42");
    let failed = demo
        .store
        .queue("default")
        .enqueue_with(
            "fail",
            &json!({"message": "no stock"}),
            &EnqueueOptions::new()
                .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .expect("enqueue");
    let crashed = demo.enqueue("segfault", json!(null));
    let timed_out = demo
        .store
        .queue("default")
        .enqueue_with(
            "sleep",
            &json!({"secs": 60}),
            &EnqueueOptions::new().timeout(Duration::from_secs(1)),
        )
        .expect("enqueue");
    let fine = demo.enqueue("noop", json!(null));
    let mut sup = demo.start(&["--concurrency", "2"], &[("SENTRY_DSN", dsn.as_str())]);
    for id in [&failed, &crashed, &timed_out, &fine] {
        demo.wait_ended(id, Duration::from_secs(60));
    }
    wait_until("three events", Duration::from_secs(30), || {
        events(&bodies).len() >= 3
    });
    sup.stop();
    assert_eq!(demo.task(&fine).status, TaskStatus::Finished);
    let got = events(&bodies);
    assert_eq!(got.len(), 3, "each failed ending once: {got:#?}");
    for (id, task, failure) in [
        (&failed, "fail", "Error"),
        (&crashed, "segfault", "Crash"),
        (&timed_out, "sleep", "Timeout"),
    ] {
        let event = got
            .iter()
            .find(|e| e["tags"]["task_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no event for {task}: {got:#?}"));
        assert_eq!(event["tags"]["task"], task);
        assert_eq!(event["tags"]["queue"], "default");
        assert_eq!(event["tags"]["attempt"], "1");
        assert_eq!(event["tags"]["failure"], failure, "{event:#}");
        assert_eq!(event["exception"]["values"][0]["type"], failure);
    }
    let traced = got
        .iter()
        .find(|e| e["tags"]["task_id"] == failed.as_str())
        .expect("event");
    assert_eq!(
        traced["tags"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the trace id of a traced task is a tag"
    );
    let text = serde_json::to_string(&got).expect("json");
    assert!(text.contains("no stock"), "{text}");
}

#[test]
fn a_bad_dsn_is_refused_at_start_with_the_setting_named() {
    let demo = Demo::new();
    let out = demo
        .cmd()
        .args(["worker", "--burst"])
        .env("SENTRY_DSN", "not a dsn")
        .fails();
    assert!(out.stderr.contains("SENTRY_DSN"), "{}", out.stderr);
}
