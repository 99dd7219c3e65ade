//! The signal table against the demo supervisor started directly (the
//! systemd tests drive the same signals through systemctl).

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, Running, error_of};
use crate::support::wait_until;

fn slots(demo: &Demo) -> usize {
    demo.store.worker_infos().map_or(0, |w| w.len())
}

fn wait_slots(demo: &Demo, n: usize) {
    wait_until(
        &format!("{n} registered slot(s)"),
        Duration::from_secs(30),
        || slots(demo) == n,
    );
}

/// Waits until the log holds `needle` at least `count` times.
fn wait_log(sup: &Running, needle: &str, count: usize) {
    wait_until(
        &format!("{count}x {needle:?} in the log"),
        Duration::from_secs(30),
        || sup.log().matches(needle).count() >= count,
    );
}

#[test]
fn ttin_and_ttou_add_and_retire_slots_one_at_a_time_never_below_one() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    wait_slots(&demo, 1);
    sup.signal(Signal::SIGTTIN);
    wait_slots(&demo, 2);
    sup.signal(Signal::SIGTTIN);
    wait_slots(&demo, 3);
    sup.signal(Signal::SIGTTOU);
    wait_slots(&demo, 2);
    sup.signal(Signal::SIGTTOU);
    wait_slots(&demo, 1);
    sup.signal(Signal::SIGTTOU);
    wait_log(&sup, "SIGTTOU ignored", 1);
    assert_eq!(slots(&demo), 1);
    sup.stop();
}

#[test]
fn scaling_down_never_interrupts_a_running_task() {
    let demo = Demo::new();
    let a = demo.enqueue("sleep", json!({"secs": 3}));
    let b = demo.enqueue("sleep", json!({"secs": 3}));
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    demo.wait_status(&a, TaskStatus::Running, Duration::from_secs(30));
    demo.wait_status(&b, TaskStatus::Running, Duration::from_secs(30));
    sup.signal(Signal::SIGTTOU);
    // Both slots are busy: the first to finish retires, the other one
    // carries on. The retirement is over before the second task ends, so
    // each task's ending is waited for, not assumed.
    wait_slots(&demo, 1);
    for id in [&a, &b] {
        let t = demo.wait_ended(id, Duration::from_secs(60));
        assert_eq!(t.status, TaskStatus::Finished, "{t:#?}\n{}", sup.log());
    }
    sup.stop();
}

#[test]
fn bursts_of_ttin_and_ttou_end_at_the_last_wanted_count_and_lose_nothing() {
    let demo = Demo::new();
    let ids: Vec<String> = (0..12)
        .map(|_| demo.enqueue("sleep", json!({"secs": 0.5})))
        .collect();
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    // Handlers exist once the supervisor serves; before that, SIGTTIN's
    // default action would stop the process.
    wait_log(&sup, "listening on", 1);
    for round in 0..20 {
        sup.signal(if round % 3 == 2 {
            Signal::SIGTTOU
        } else {
            Signal::SIGTTIN
        });
    }
    for _ in 0..20 {
        sup.signal(Signal::SIGTTOU);
    }
    for _ in 0..3 {
        sup.signal(Signal::SIGTTIN);
    }
    // Every task ends well: none interrupted, none lost.
    for id in &ids {
        let t = demo.wait_ended(id, Duration::from_secs(120));
        assert_eq!(t.status, TaskStatus::Finished, "{t:#?}\n{}", sup.log());
    }
    // The slot count settles on the last count the log says was wanted
    // (signals of one kind may merge, so that count is read, not assumed).
    sup.signal(Signal::SIGUSR1);
    wait_log(&sup, "status (SIGUSR1)", 1);
    let log = sup.log();
    let wanted: usize = log
        .lines()
        .filter_map(|l| l.split_once("slots wanted: ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(';').next()?.trim().parse().ok())
        .next_back()
        .expect("the dump names the wanted count");
    assert!((1..=23).contains(&wanted), "{wanted}");
    wait_slots(&demo, wanted);
    sup.stop();
}

#[test]
fn a_drain_timeout_lets_short_tasks_finish_and_interrupts_long_ones() {
    let demo = Demo::new();
    let short = demo.enqueue("sleep", json!({"secs": 1}));
    let long = demo.enqueue("sleep", json!({"secs": 600}));
    // The short task needs 1 s of the 10 s drain: room for a loaded machine.
    let mut sup = demo.start(&["--concurrency", "2", "--drain-timeout", "10"], &[]);
    demo.wait_status(&short, TaskStatus::Running, Duration::from_secs(30));
    demo.wait_status(&long, TaskStatus::Running, Duration::from_secs(30));
    sup.stop();
    assert_eq!(demo.task(&short).status, TaskStatus::Finished);
    assert_eq!(error_of(&demo.task(&long)), "worker shutdown");
    assert!(sup.log().contains("drain period over"));
}

#[test]
fn by_default_a_shutdown_waits_for_short_tasks_and_a_second_one_does_not() {
    let demo = Demo::new();
    let short = demo.enqueue("sleep", json!({"secs": 2}));
    let long = demo.enqueue("sleep", json!({"secs": 600}));
    // An empty RT_DRAIN_TIMEOUT counts as unset: the default applies.
    let mut sup = demo.start(&["--concurrency", "2"], &[("RT_DRAIN_TIMEOUT", "")]);
    demo.wait_status(&short, TaskStatus::Running, Duration::from_secs(30));
    demo.wait_status(&long, TaskStatus::Running, Duration::from_secs(30));
    sup.signal(Signal::SIGTERM);
    wait_log(&sup, "running ones get 25s to finish", 1);
    demo.wait_status(&short, TaskStatus::Finished, Duration::from_secs(20));
    // The long one is still running inside the drain, until a second SIGTERM.
    assert_eq!(
        demo.task(&long).status,
        TaskStatus::Running,
        "{}",
        sup.log()
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(
        sup.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        sup.log()
    );
    assert_eq!(error_of(&demo.task(&long)), "worker shutdown");
}

#[test]
fn sigquit_stops_at_once() {
    let demo = Demo::new();
    let id = demo.enqueue("guarded_sleep", json!({"secs": 600}));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(30));
    sup.signal(Signal::SIGQUIT);
    assert_eq!(
        sup.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        sup.log()
    );
    assert_eq!(error_of(&demo.task(&id)), "worker shutdown");
}

#[test]
fn sighup_reloads_settings_and_replaces_worker_processes_without_interrupting() {
    let demo = Demo::new();
    let settings = demo.path("settings.toml");
    fs::write(&settings, "worker_concurrency = 1\n").expect("settings");
    let settings_arg = settings.to_string_lossy().into_owned();
    let before = demo.enqueue("pid", json!(null));
    let mut sup = demo.start(&["--config", &settings_arg], &[]);
    demo.wait_status(&before, TaskStatus::Finished, Duration::from_secs(30));
    let old_pid = demo.task(&before).meta["pid"].clone();
    // Runs until the test opens the gate, so it surely spans the reload.
    let gate = demo.path("gate");
    let running = demo.enqueue("wait_for_file", json!({ "path": gate }));
    demo.wait_status(&running, TaskStatus::Running, Duration::from_secs(30));

    fs::write(
        &settings,
        "worker_concurrency = 2\nworker_queues = [\"default\", \"other\"]\n",
    )
    .expect("settings");
    sup.signal(Signal::SIGHUP);
    wait_log(&sup, "settings reloaded", 1);
    wait_slots(&demo, 2);
    // The running task was not interrupted.
    assert_eq!(demo.task(&running).status, TaskStatus::Running);
    fs::write(&gate, "").expect("gate");
    let t = demo.wait_ended(&running, Duration::from_secs(60));
    assert_eq!(t.status, TaskStatus::Finished, "{}", sup.log());
    // The new queue is served, by new worker processes.
    let after = demo
        .store
        .queue("other")
        .enqueue("pid", &json!(null))
        .expect("enqueue");
    demo.wait_status(&after, TaskStatus::Finished, Duration::from_secs(30));
    assert_ne!(demo.task(&after).meta["pid"], old_pid);

    // A broken file keeps the old settings.
    fs::write(&settings, "worker_concurrency = \"many\"\n").expect("settings");
    sup.signal(Signal::SIGHUP);
    wait_log(&sup, "settings not reloaded", 1);
    assert!(sup.log().contains("worker_concurrency"));
    let still = demo
        .store
        .queue("other")
        .enqueue("noop", &json!(null))
        .expect("enqueue");
    demo.wait_status(&still, TaskStatus::Finished, Duration::from_secs(30));
    assert_eq!(slots(&demo), 2);
    sup.stop();
}

/// The parent of the worker process that ran `id` (a `peek_parent` of
/// `stat`): the fork server, with `--max-tasks-per-child 1`.
fn parent_of(demo: &Demo, id: &str) -> String {
    let t = demo.task(id);
    let stat = t.meta["read"].as_str().unwrap_or_default().to_owned();
    assert!(!stat.is_empty(), "no parent read: {t:?}");
    stat.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn after_sighup_no_task_runs_on_a_spare_process_of_the_old_settings() {
    // One task per worker process: the next one is prepared while a task
    // runs, by the fork server of the settings in force then. A reload
    // starts a new fork server; a spare of the old one must not run a task.
    let demo = Demo::new();
    let settings = demo.path("settings.toml");
    fs::write(&settings, "worker_concurrency = 1\n").expect("settings");
    let settings_arg = settings.to_string_lossy().into_owned();
    let peek = json!({ "file": "stat" });
    let first = demo.enqueue("peek_parent", peek.clone());
    let mut sup = demo.start(
        &["--config", &settings_arg, "--max-tasks-per-child", "1"],
        &[],
    );
    demo.wait_status(&first, TaskStatus::Finished, Duration::from_secs(30));
    let old_server = parent_of(&demo, &first);
    let gate = demo.path("gate");
    let running = demo.enqueue("wait_for_file", json!({ "path": gate }));
    demo.wait_status(&running, TaskStatus::Running, Duration::from_secs(30));
    sup.signal(Signal::SIGHUP);
    wait_log(&sup, "settings reloaded", 1);
    fs::write(&gate, "").expect("gate");
    demo.wait_status(&running, TaskStatus::Finished, Duration::from_secs(60));
    let after = demo.enqueue("peek_parent", peek);
    demo.wait_status(&after, TaskStatus::Finished, Duration::from_secs(30));
    assert_ne!(parent_of(&demo, &after), old_server, "{}", sup.log());
    sup.stop();
}

#[test]
fn sigtstp_pauses_fetching_and_sigcont_resumes() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    wait_slots(&demo, 1);
    sup.signal(Signal::SIGTSTP);
    wait_log(&sup, "SIGTSTP: quiet", 1);
    let id = demo.enqueue("noop", json!(null));
    // Let two heartbeats pass (a second apart): a fetching slot would have
    // taken the task long before.
    let beat = || {
        demo.store
            .worker_infos()
            .ok()
            .and_then(|w| w.first().and_then(|w| w.heartbeat_at))
    };
    for _ in 0..2 {
        let seen = beat();
        wait_until("a heartbeat", Duration::from_secs(30), || beat() != seen);
    }
    assert_eq!(demo.task(&id).status, TaskStatus::Queued);
    sup.signal(Signal::SIGCONT);
    demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(30));
    sup.stop();
}

#[test]
fn sigusr1_dumps_every_slot_to_the_log() {
    let demo = Demo::new();
    let id = demo.enqueue("sleep", json!({"secs": 600}));
    let mut sup = demo.start(&["--concurrency", "2"], &[]);
    demo.wait_status(&id, TaskStatus::Running, Duration::from_secs(30));
    sup.signal(Signal::SIGUSR1);
    wait_log(&sup, "status (SIGUSR1)", 1);
    let log = sup.log();
    assert!(log.contains("1 busy, 1 idle"), "{log}");
    assert!(
        log.contains("busy") && log.contains("with sleep(secs=600)"),
        "{log}"
    );
    sup.stop();
}
