//! A task's own output: what it writes to stdout and stderr is read by its
//! supervisor (not by its worker process), kept with the task (the last
//! `task_log_kib` KiB), printed by `task logs ID`, and written to the
//! supervisor's log prefixed with the task's id unless
//! `task_output_to_log = false`.

use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::{Value, json};

use super::Demo;

/// A worker process per slot that runs many tasks, and a fresh (forked)
/// one per task.
const MODES: [&str; 2] = ["1000", "1"];

fn logs(demo: &Demo, id: &str) -> String {
    demo.cmd().args(["task", "logs", id]).run().stdout
}

#[test]
fn printed_text_is_kept_per_task_in_reused_and_fresh_processes() {
    for per_child in MODES {
        let demo = Demo::new();
        let alpha = demo.enqueue("print", json!({"text": format!("alpha-{per_child}")}));
        let beta = demo.enqueue("print", json!({"text": format!("beta-{per_child}")}));
        let silent = demo.enqueue("noop", json!(null));
        let out = demo.burst(&["--concurrency", "1", "--max-tasks-per-child", per_child]);
        for id in [&alpha, &beta, &silent] {
            assert_eq!(demo.task(id).status, TaskStatus::Finished, "{}", out.stderr);
        }
        // Both streams, each task only its own.
        let a = logs(&demo, &alpha);
        assert_eq!(a.matches(&format!("alpha-{per_child}")).count(), 2, "{a:?}");
        assert!(!a.contains("beta"), "{a:?}");
        let b = logs(&demo, &beta);
        assert_eq!(b.matches(&format!("beta-{per_child}")).count(), 2, "{b:?}");
        assert!(!b.contains("alpha"), "{b:?}");
        // The supervisor's log has each line, prefixed with the task's id.
        assert_eq!(
            out.stderr
                .matches(&format!("[{alpha}] alpha-{per_child}"))
                .count(),
            2,
            "{}",
            out.stderr
        );
        // A task that wrote nothing has nothing stored, and says so.
        let none = demo.cmd().args(["task", "logs", &silent]).run();
        assert_eq!(none.stdout, "");
        assert!(
            none.stderr.contains("has no captured output"),
            "{}",
            none.stderr
        );
        let mut redis = demo.redis.client();
        let names = demo.redis.names();
        let key = names.home_of_task(&silent).output(&silent);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query(&mut redis)
            .expect("exists");
        assert!(!exists, "a silent task costs no key");
        // The key expires with the registries.
        let ttl: i64 = redis::cmd("TTL")
            .arg(names.home_of_task(&alpha).output(&alpha))
            .query(&mut redis)
            .expect("ttl");
        assert!(ttl > 600_000 && ttl <= 604_800, "{ttl}");
        // JSON, and an unknown id.
        let js: Value =
            serde_json::from_str(&demo.cmd().args(["task", "logs", &beta, "--json"]).stdout())
                .expect("json");
        assert_eq!(js["id"], beta.as_str());
        assert!(
            js["output"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("beta-{per_child}"))),
            "{js}"
        );
        let unknown = demo.cmd().args(["task", "logs", "no-such-task"]).fails();
        assert!(
            unknown.stderr.contains("task no-such-task not found"),
            "{}",
            unknown.stderr
        );
    }
}

#[test]
fn an_isolated_tasks_output_is_kept_too() {
    let demo = Demo::new();
    let settings = demo.path("settings.toml");
    // Any isolation key makes "untrusted" a profile of its own: a worker
    // process per task, started by exec under its restrictions (as a
    // dynamic user when the tests run as root).
    std::fs::write(&settings, "[queues.untrusted]\nopen_files_limit = 64\n").expect("settings");
    let id = demo
        .store
        .queue("untrusted")
        .enqueue("print", &json!({"text": "from the sandbox"}))
        .expect("enqueue");
    let config = settings.display().to_string();
    let out = demo.burst(&["--concurrency", "1", "--config", &config, "untrusted"]);
    assert_eq!(
        demo.task(&id).status,
        TaskStatus::Finished,
        "{}",
        out.stderr
    );
    assert_eq!(logs(&demo, &id).matches("from the sandbox").count(), 2);
    assert!(
        out.stderr.contains(&format!("[{id}] from the sandbox")),
        "{}",
        out.stderr
    );
}

#[test]
fn output_written_before_a_crash_is_kept() {
    for per_child in MODES {
        let demo = Demo::new();
        let id = demo.enqueue("print_crash", json!({"text": "last words"}));
        let out = demo.burst(&["--concurrency", "1", "--max-tasks-per-child", per_child]);
        assert_eq!(demo.task(&id).status, TaskStatus::Failed, "{}", out.stderr);
        let kept = logs(&demo, &id);
        assert_eq!(kept.matches("last words").count(), 2, "{kept:?}");
    }
}

#[test]
fn output_written_before_a_timeout_is_kept() {
    let demo = Demo::new();
    let id = demo
        .store
        .queue("default")
        .enqueue_with(
            "print",
            &json!({"text": "then I hung", "secs": 60}),
            &redis_tasks::EnqueueOptions::new().timeout(Duration::from_secs(1)),
        )
        .expect("enqueue");
    let out = demo.burst(&["--concurrency", "1"]);
    let task = demo.task(&id);
    assert_eq!(task.status, TaskStatus::Failed, "{}", out.stderr);
    assert!(super::error_of(&task).contains("timeout"), "{task:?}");
    assert_eq!(logs(&demo, &id).matches("then I hung").count(), 2);
}

#[test]
fn a_flood_keeps_the_last_task_log_kib_and_garbage_stays_harmless() {
    let demo = Demo::new();
    let flood = demo.enqueue("flood", json!({"kib": 4096}));
    let after = demo.enqueue("print", json!({"text": "after the flood"}));
    let mut cmd = demo.cmd();
    cmd.env("RT_TASK_LOG_KIB", "8")
        .args(["worker", "--burst", "--concurrency", "1"])
        .timeout(Duration::from_secs(120));
    let out = cmd.run();
    assert_eq!(
        demo.task(&flood).status,
        TaskStatus::Finished,
        "{}",
        out.stderr
    );
    assert_eq!(demo.task(&after).status, TaskStatus::Finished);
    // The stored value: a note, then at most 8 KiB, ending with the end.
    let mut redis = demo.redis.client();
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(demo.redis.names().home_of_task(&flood).output(&flood))
        .query(&mut redis)
        .expect("get");
    let first_line = stored
        .iter()
        .position(|&b| b == b'\n')
        .expect("a note line");
    assert!(
        stored.len() - first_line - 1 <= 8 * 1024,
        "{}",
        stored.len()
    );
    let note = String::from_utf8_lossy(&stored[..first_line]);
    assert!(
        note.contains("earlier bytes of output were dropped"),
        "{note}"
    );
    assert!(stored.ends_with(b"flood done\n"));
    // Shown escaped; --raw gives the bytes as they were.
    let shown = logs(&demo, &flood);
    assert!(shown.contains("garbage\\u{1b}[2J"), "{shown}");
    assert!(!shown.contains('\u{1b}'));
    let raw = demo.cmd().args(["task", "logs", &flood, "--raw"]).run();
    assert!(raw.stdout.contains("garbage\u{1b}[2J"), "{:?}", raw.stdout);
    // The log got at most its budget of lines, escaped; the next task's
    // output is its own.
    assert!(!out.stderr.contains('\u{1b}'), "an escape reached the log");
    let flood_lines = out.stderr.matches("flood line ").count();
    assert!(flood_lines < 100_000, "{flood_lines} flood lines logged");
    assert!(out.stderr.contains("were not logged"), "{}", out.stderr);
    let next = logs(&demo, &after);
    assert!(
        next.contains("after the flood") && !next.contains("flood line"),
        "{next}"
    );
}

#[test]
fn the_log_prefix_and_the_capture_can_be_turned_off() {
    let demo = Demo::new();
    let quiet = demo.enqueue("print", json!({"text": "not in the log"}));
    let mut cmd = demo.cmd();
    cmd.env("RT_TASK_OUTPUT_TO_LOG", "false")
        .args(["worker", "--burst", "--concurrency", "1"])
        .timeout(Duration::from_secs(120));
    let out = cmd.run();
    assert!(!out.stderr.contains("not in the log"), "{}", out.stderr);
    assert_eq!(logs(&demo, &quiet).matches("not in the log").count(), 2);

    let unkept = demo.enqueue("print", json!({"text": "in the log only"}));
    let mut cmd = demo.cmd();
    cmd.env("RT_TASK_LOG_KIB", "0")
        .args(["worker", "--burst", "--concurrency", "1"])
        .timeout(Duration::from_secs(120));
    let out = cmd.run();
    assert!(
        out.stderr.contains(&format!("[{unkept}] in the log only")),
        "{}",
        out.stderr
    );
    let none = demo.cmd().args(["task", "logs", &unkept]).run();
    assert!(
        none.stderr.contains("has no captured output"),
        "{}",
        none.stderr
    );
}

/// The attack: a task leaves a child that writes after the task ended,
/// hoping its text lands in the next task's output (a forged log of
/// someone else's run). The slot kills what a task leaves running as the
/// task ends, before the next task starts, so the text lands nowhere.
#[test]
fn a_child_writing_after_its_task_ended_does_not_reach_the_next_task() {
    for per_child in MODES {
        let demo = Demo::new();
        let leaver = demo.enqueue(
            "print_late",
            json!({"text": "forged by a leftover", "secs": 0.5}),
        );
        let next = demo.enqueue("sleep", json!({"secs": 1.5}));
        let out = demo.burst(&["--concurrency", "1", "--max-tasks-per-child", per_child]);
        assert_eq!(
            demo.task(&leaver).status,
            TaskStatus::Finished,
            "{}",
            out.stderr
        );
        assert_eq!(demo.task(&next).status, TaskStatus::Finished);
        if per_child != "1" {
            // The reused process's leftover is killed as its task ends.
            assert!(
                out.stderr.contains("the task left running"),
                "{}",
                out.stderr
            );
        }
        let none = demo.cmd().args(["task", "logs", &next]).run();
        assert!(!none.stdout.contains("forged"), "{}", none.stdout);
        assert!(
            !out.stderr.contains("forged by a leftover"),
            "{}",
            out.stderr
        );
    }
}

/// The peak resident memory of process `pid`, in KiB (`VmHWM`).
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_flood_cannot_grow_the_supervisor() {
    let demo = Demo::new();
    let mut running = demo.start(&["--concurrency", "1"], &[("RUST_LOG", "info")]);
    // 64 MiB of short lines, as fast as the task can write them.
    let id = demo.enqueue("flood", json!({"kib": 64 * 1024}));
    demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(300));
    let peak = peak_rss_kib(running.pid());
    eprintln!(
        "supervisor peak RSS under a 64 MiB flood: {} MiB",
        peak >> 10
    );
    assert!(peak < 50 << 10, "supervisor peak RSS {peak} KiB");
    let kept = logs(&demo, &id);
    assert!(
        kept.len() < 70 * 1024 && kept.ends_with("flood done\n"),
        "{}",
        kept.len()
    );
    running.stop();
}
