//! Following a task end to end (issue 24, point 4): a task enqueued with a
//! W3C traceparent gets the spans of its wait and its run in that trace,
//! exported over OTLP/HTTP to a receiver this test starts, and the task
//! itself sees its run span's context.

use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::Value;

use super::Demo;
use crate::support::{Cmd, wait_until};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Every span in the received OTLP JSON export requests.
fn spans(bodies: &std::sync::Mutex<Vec<String>>) -> Vec<Value> {
    bodies
        .lock()
        .expect("bodies")
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .flat_map(|req| {
            let mut out = Vec::new();
            for rs in req["resourceSpans"].as_array().cloned().unwrap_or_default() {
                for ss in rs["scopeSpans"].as_array().cloned().unwrap_or_default() {
                    out.extend(ss["spans"].as_array().cloned().unwrap_or_default());
                }
            }
            out
        })
        .collect()
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[test]
fn one_trace_from_the_enqueue_to_the_recorded_outcome() {
    let demo = Demo::new();
    let (port, bodies) = crate::support::http_sink::start();
    let endpoint = format!("http://127.0.0.1:{port}");
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let url = demo.redis.url();
    let enqueue = |task: &str, args: &str| {
        Cmd::admin(&url)
            .args(["enqueue", task, args, "--traceparent", &traceparent])
            .stdout()
    };
    let seen = enqueue("traceparent", "null");
    let crashed = enqueue("segfault", "null");
    let untraced = demo.enqueue("noop", serde_json::json!(null));
    let mut sup = demo.start(
        &["--concurrency", "2"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    for id in [&seen, &crashed, &untraced] {
        demo.wait_ended(id, Duration::from_secs(60));
    }
    wait_until("four spans", Duration::from_secs(30), || {
        spans(&bodies).len() >= 4
    });
    sup.stop();
    let got = spans(&bodies);
    assert_eq!(got.len(), 4, "two spans per traced task: {got:#?}");
    assert!(
        got.iter()
            .all(|s| s["traceId"] == TRACE && s["parentSpanId"] == PARENT)
    );

    let run_of = |id: &str| {
        got.iter()
            .find(|s| s["name"] == "run" && attribute(s, "task.id") == Some(id))
            .unwrap_or_else(|| panic!("no run span for {id}: {got:#?}"))
    };
    let wait_of = |id: &str| {
        got.iter()
            .find(|s| s["name"] == "queue wait" && attribute(s, "task.id") == Some(id))
            .unwrap_or_else(|| panic!("no wait span for {id}: {got:#?}"))
    };
    // The task saw its run span's context.
    let run = run_of(&seen);
    let record = demo.task(&seen);
    assert_eq!(record.status, TaskStatus::Finished);
    let run_id = run["spanId"].as_str().expect("span id");
    assert_eq!(
        record.result,
        Some(Value::String(format!("00-{TRACE}-{run_id}-01")))
    );
    assert_eq!(attribute(run, "task.outcome"), Some("finished"));
    assert_eq!(attribute(run, "task.name"), Some("traceparent"));
    assert_eq!(attribute(run, "task.queue"), Some("default"));
    assert_eq!(attribute(run, "task.attempt"), Some("1"));
    assert_eq!(run["status"]["code"], 1);
    // The wait ends where the run starts.
    let wait = wait_of(&seen);
    assert_eq!(wait["endTimeUnixNano"], run["startTimeUnixNano"]);
    let start: u128 = wait["startTimeUnixNano"]
        .as_str()
        .expect("ns")
        .parse()
        .expect("ns");
    let end: u128 = run["endTimeUnixNano"]
        .as_str()
        .expect("ns")
        .parse()
        .expect("ns");
    assert!(start <= end);

    let crash = run_of(&crashed);
    assert_eq!(attribute(crash, "task.outcome"), Some("failed"));
    assert_eq!(attribute(crash, "task.signal"), Some("SIGSEGV"));
    assert_eq!(crash["status"]["code"], 2);
}

#[test]
fn a_bad_traceparent_is_refused_at_enqueue_with_nothing_written() {
    let demo = Demo::new();
    let url = demo.redis.url();
    for bad in [
        "",
        "00-nothex-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        let o = Cmd::admin(&url)
            .args(["enqueue", "noop", "null", "--traceparent", bad])
            .fails();
        assert!(o.stderr.contains("traceparent"), "{bad}: {}", o.stderr);
    }
    assert_eq!(demo.store.queue("default").count().expect("count"), 0);
}

#[test]
fn tasks_enqueued_by_a_traced_task_join_its_trace() {
    let demo = Demo::new();
    let (port, bodies) = crate::support::http_sink::start();
    let endpoint = format!("http://127.0.0.1:{port}");
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let url = demo.redis.url();
    let mut parents = Vec::new();
    for mode in ["now", "on_success"] {
        let args = format!(r#"{{"n": 1, "queue": "kids", "mode": "{mode}", "then": "finish"}}"#);
        parents.push(
            Cmd::admin(&url)
                .args(["enqueue", "fan_out", &args, "--traceparent", &traceparent])
                .stdout(),
        );
    }
    let mut sup = demo.start(
        &["--concurrency", "2", "default"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    for id in &parents {
        demo.wait_ended(id, Duration::from_secs(60));
    }
    wait_until("two run spans", Duration::from_secs(30), || {
        spans(&bodies).iter().filter(|s| s["name"] == "run").count() >= 2
    });
    sup.stop();
    let got = spans(&bodies);
    for parent in &parents {
        let record = demo.task(parent);
        assert_eq!(record.status, TaskStatus::Finished);
        let run = got
            .iter()
            .find(|s| s["name"] == "run" && attribute(s, "task.id") == Some(parent.as_str()))
            .unwrap_or_else(|| panic!("no run span for {parent}: {got:#?}"));
        let run_id = run["spanId"].as_str().expect("span id");
        let kids = record.result.expect("the children's ids");
        let kid = kids[0].as_str().expect("a child id");
        // The child's wait and run will be children of the parent's run.
        assert_eq!(
            demo.task(kid).traceparent.as_deref(),
            Some(format!("00-{TRACE}-{run_id}-01").as_str()),
            "child {kid} of {parent}"
        );
    }
}
