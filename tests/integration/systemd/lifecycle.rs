//! Start, status and stop of one instance, as a person would run them.

use std::time::{Duration, Instant};

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::harness::{self, REDIS_UNIT};
use super::{enqueue, wait_status};
use crate::support::wait_until;

#[test]
fn start_waits_for_ready_status_tells_the_state_and_stop_requeues_reentrant_work() {
    let Some(sd) = harness::boot() else { return };
    sd.install_unit();
    let unit = sd.add_instance("shop", 2, None);

    // With Redis down the supervisor runs but is not ready: the start job
    // stays open and the unit "activating".
    sd.systemctl(&["stop", REDIS_UNIT]);
    sd.systemctl(&["start", "--no-block", &unit]);
    wait_until(
        "the supervisor to find Redis down",
        Duration::from_secs(60),
        || sd.supervisor_log("shop").contains("unavailable"),
    );
    assert_eq!(
        sd.show(&unit, "ActiveState"),
        "activating",
        "{}",
        sd.status(&unit)
    );
    assert_eq!(sd.show(&unit, "SubState"), "start");
    assert!(sd.main_pid(&unit).is_some(), "{}", sd.status(&unit));

    // Redis up: READY=1, and only then active.
    let mark = sd.pid1_log().len();
    sd.systemctl(&["start", REDIS_UNIT]);
    sd.wait_state(&unit, "active", Duration::from_secs(60));
    assert_eq!(sd.show(&unit, "SubState"), "running");
    let log = sd.pid1_log_since(mark);
    let ready = log
        .find(&format!("{unit}: Got notification message from PID"))
        .and_then(|at| log[at..].find("READY=1").map(|i| at + i))
        .unwrap_or_else(|| panic!("no READY=1 from {unit}:\n{log}"));
    let running = log
        .find(&format!("{unit}: Changed start -> running"))
        .unwrap_or_else(|| panic!("{unit} never went start -> running:\n{log}"));
    assert!(ready < running, "active before READY=1:\n{log}");

    // The STATUS line, in `systemctl status`, with the Redis state.
    let mut text = String::new();
    wait_until(
        "a STATUS line naming idle slots",
        Duration::from_secs(30),
        || {
            text = sd.show(&unit, "StatusText");
            text.contains("idle")
        },
    );
    let status = sd.status(&unit);
    assert!(
        status.contains(&format!("Status: \"{text}\"")),
        "systemctl status lacks the STATUS line {text:?}:\n{status}"
    );
    assert!(!text.contains("reconnecting"), "{text}");
    sd.systemctl(&["stop", REDIS_UNIT]);
    wait_until(
        "STATUS to say Redis is reconnecting",
        Duration::from_secs(30),
        || sd.show(&unit, "StatusText").contains("reconnecting"),
    );
    sd.systemctl(&["start", REDIS_UNIT]);
    wait_until(
        "STATUS to say Redis is back",
        Duration::from_secs(60),
        || {
            let text = sd.show(&unit, "StatusText");
            !text.is_empty() && !text.contains("reconnecting")
        },
    );
    // Redis came back empty (no persistence): wait until the slots are
    // registered again before giving them work.
    let store = sd.store();
    wait_until(
        "both slots registered again",
        Duration::from_secs(30),
        || super::slots(store) == 2,
    );

    // A plain task that ends within the drain period, a reentrant one that
    // does not, and one that must stay queued. The plain one must still
    // run when the stop comes (or its slot would take the queued one), and
    // end inside the 30 s drain: 15 s leaves room both ways.
    let plain = enqueue(store, "sleep", json!({"secs": 15}));
    let reentrant = enqueue(store, "reentrant_sleep", json!({"secs": 600}));
    wait_status(store, &plain, TaskStatus::Running, Duration::from_secs(30));
    wait_status(
        store,
        &reentrant,
        TaskStatus::Running,
        Duration::from_secs(30),
    );
    let waiting = enqueue(store, "noop", json!(null));

    let timeout_stop: Duration = parse_usec(&sd.show(&unit, "TimeoutStopUSec"));
    let mark = sd.pid1_log().len();
    let started = Instant::now();
    sd.systemctl(&["stop", &unit]);
    let took = started.elapsed();
    // STOPPING=1, and more time asked for while draining.
    let sent = sd.notifications(&unit, mark);
    assert!(sent.iter().any(|m| m.contains("STOPPING=1")), "{sent:?}");
    assert!(
        sent.iter().any(|m| m.contains("EXTEND_TIMEOUT_USEC=")),
        "{sent:?}"
    );

    assert_eq!(
        sd.show(&unit, "ActiveState"),
        "inactive",
        "{}",
        sd.status(&unit)
    );
    assert_eq!(sd.show(&unit, "Result"), "success", "{}", sd.status(&unit));
    assert_eq!(sd.show(&unit, "ExecMainStatus"), "0");
    assert!(
        took < timeout_stop,
        "stop took {took:?}, the unit allows {timeout_stop:?}"
    );
    // --drain-timeout 30 from the unit: the reentrant task had that long.
    assert!(took >= Duration::from_secs(25), "stop took only {took:?}");
    assert!(sd.unit_pids(&unit).is_empty(), "processes left after stop");

    assert_eq!(
        store.task(&plain).expect("plain").status,
        TaskStatus::Finished
    );
    let t = store.task(&reentrant).expect("reentrant");
    assert_eq!(t.status, TaskStatus::Queued, "{t:#?}");
    assert_eq!(t.aborted_runs.len(), 1, "{t:#?}");
    assert_eq!(t.aborted_runs[0].reason, "worker shutdown");
    assert_eq!(
        store.queue("default").ids(0, 10).expect("queue"),
        [reentrant, waiting]
    );
    assert_eq!(store.failed().count().expect("failed"), 0);
    assert!(
        store.worker_infos().expect("slots").is_empty(),
        "slots left registered"
    );
}

/// Reads a `systemctl show` duration such as `1min 30s` or `90s` (what
/// `TimeoutStopUSec` prints).
fn parse_usec(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits
            .parse()
            .unwrap_or_else(|_| panic!("duration {text:?}"));
        total += match &part[digits.len()..] {
            "min" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "h" => Duration::from_secs(n * 3600),
            unit => panic!("unit {unit:?} in duration {text:?}"),
        };
    }
    total
}
