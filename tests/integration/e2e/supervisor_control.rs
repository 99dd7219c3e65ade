//! `redis-tasks supervisor list|quiet|stop|scale` against a running demo
//! supervisor: the commands go through Redis, and the supervisor acts as on
//! SIGTSTP, SIGTERM and SIGTTIN/SIGTTOU.

use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::{Value, json};

use super::{Demo, Running};
use crate::support::{Cmd, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// `redis-tasks supervisor ARGS...` against the demo's Redis.
fn admin(demo: &Demo, args: &[&str]) -> Cmd {
    let mut cmd = Cmd::admin(&demo.redis.url());
    cmd.arg("supervisor").args(args);
    cmd
}

/// `supervisor list --json`.
fn list(demo: &Demo) -> Vec<Value> {
    let out = admin(demo, &["list", "--json"]).stdout();
    match serde_json::from_str(&out) {
        Ok(Value::Array(all)) => all,
        other => panic!("supervisor list --json: {other:?}\n{out}"),
    }
}

/// The id of the one supervisor running, once it reports itself.
fn the_supervisor(demo: &Demo, sup: &Running) -> String {
    let mut id = None;
    wait_until("the supervisor to report itself", WAIT, || {
        let all = list(demo);
        if let [one] = all.as_slice() {
            id = one["id"].as_str().map(str::to_owned);
        }
        id.is_some()
    });
    let id = id.expect("id");
    assert!(sup.log().contains(&id), "the log names the id {id}");
    id
}

/// The supervisor's entry of `supervisor list --json`.
fn entry(demo: &Demo, id: &str) -> Value {
    list(demo)
        .into_iter()
        .find(|s| s["id"] == id)
        .unwrap_or(Value::Null)
}

#[test]
fn quiet_stops_fetching_while_the_running_task_finishes_and_list_shows_it() {
    let demo = Demo::new();
    let running = demo.enqueue("sleep", json!({"secs": 3}));
    let sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&running, TaskStatus::Running, WAIT);
    let id = the_supervisor(&demo, &sup);

    // The list shows the slot, what it runs and for how long.
    wait_until("the list to show the running task", WAIT, || {
        let s = entry(&demo, &id);
        s["slot_list"][0]["task"]["id"] == running.as_str()
    });
    let s = entry(&demo, &id);
    assert_eq!(s["mode"], "serving", "{s}");
    assert_eq!(s["slots"], 1, "{s}");
    assert!(
        s["version"]
            .as_str()
            .is_some_and(|v| v.contains("redis-tasks")),
        "{s}"
    );
    assert!(s["rss_bytes"].as_u64().is_some_and(|n| n > 0), "{s}");
    assert!(s["slot_list"][0]["task"]["running_secs"].is_u64(), "{s}");
    let text = admin(&demo, &["list"]).stdout();
    assert!(text.contains(&id) && text.contains(&running), "{text}");

    let out = admin(&demo, &["quiet", &id[..8]]).stdout();
    assert!(out.contains(&id), "a unique prefix names it: {out}");
    wait_until("the supervisor to go quiet", WAIT, || {
        sup.log().contains("command from Redis: quiet") && entry(&demo, &id)["mode"] == "quiet"
    });
    let waiting = demo.enqueue("noop", json!(null));
    let ended = demo.wait_ended(&running, WAIT);
    assert_eq!(ended.status, TaskStatus::Finished, "{ended:#?}");
    // Two reports after the running task ended (each a heartbeat later),
    // the new task still waits: the slot is idle and fetches nothing.
    let ended_at = ended.ended_at.expect("ended_at");
    wait_until("two more reports", WAIT, || {
        entry(&demo, &id)["reported_at"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t.duration_since(ended_at) > jiff::SignedDuration::from_secs(2))
    });
    assert_eq!(demo.task(&waiting).status, TaskStatus::Queued);
    assert_eq!(entry(&demo, &id)["busy"], 0);
}

#[test]
fn scale_changes_the_slot_count_in_redis_and_bad_input_is_refused() {
    let demo = Demo::new();
    let sup = demo.start(&["--concurrency", "1"], &[]);
    let id = the_supervisor(&demo, &sup);
    let slots = || {
        demo.store
            .worker_infos()
            .map_or(0, |w| w.iter().filter(|w| w.supervisor == id).count())
    };
    wait_until("one slot", WAIT, || slots() == 1);

    admin(&demo, &["scale", &id, "3"]).run();
    wait_until("three slots in Redis", WAIT, || slots() == 3);
    wait_until("the report to say three", WAIT, || {
        let s = entry(&demo, &id);
        s["wanted_slots"] == 3 && s["slots"] == 3
    });
    admin(&demo, &["scale", &id, "1"]).run();
    wait_until("one slot again", WAIT, || slots() == 1);
    assert!(
        sup.log().contains("command from Redis: scale to 3 slot(s)"),
        "{}",
        sup.log()
    );

    for (args, expected) in [
        (vec!["scale", id.as_str(), "0"], "0"),
        (vec!["scale", id.as_str(), "1025"], "1025"),
        (
            vec!["quiet", "nope"],
            "no running supervisor has id \"nope\"",
        ),
        (vec!["stop", "0123456789abcdef"], "no running supervisor"),
    ] {
        let o = admin(&demo, &args).fails();
        assert!(o.stderr.contains(expected), "{args:?}: {}", o.stderr);
        assert!(
            o.stderr.trim().lines().count() == 1,
            "{args:?}: {}",
            o.stderr
        );
    }
    // Nothing reached the supervisor.
    assert_eq!(slots(), 1);
    assert_eq!(entry(&demo, &id)["mode"], "serving");
}

#[test]
fn stop_drains_the_running_task_and_exits_zero() {
    let demo = Demo::new();
    let running = demo.enqueue("sleep", json!({"secs": 2}));
    let mut sup = demo.start(&["--concurrency", "1"], &[("RT_DRAIN_TIMEOUT", "60")]);
    demo.wait_status(&running, TaskStatus::Running, WAIT);
    let id = the_supervisor(&demo, &sup);
    admin(&demo, &["stop", &id]).run();
    assert_eq!(sup.wait_exit(WAIT), Some(0), "{}", sup.log());
    let log = sup.log();
    assert!(log.contains("command from Redis: stop"), "{log}");
    assert!(log.contains("running ones get"), "it drained:\n{log}");
    let t = demo.task(&running);
    assert_eq!(
        t.status,
        TaskStatus::Finished,
        "drained, not interrupted: {t:#?}"
    );
    assert!(
        list(&demo).is_empty(),
        "a stopped supervisor leaves the list"
    );
}
