//! The per-process setup hook (`App::setup`): built once in each worker
//! process before its first task, reached by tasks through
//! `TaskContext::state`; a failing hook is "worker failed to start" and
//! counts towards the boot-loop guard.
//!
//! The demo's hook is steered by the file `redis-tasks-demo-setup` in the
//! supervisor's working directory (see `examples/demo/setup.rs`), so these
//! tests start the supervisor in the test's temp dir.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, Running, demo_bin, error_of};

/// Starts `worker` with `args` in the demo's temp dir.
fn start_in_dir(demo: &Demo, args: &[&str]) -> Running {
    let log = demo.path("supervisor.log");
    let file = fs::File::create(&log).expect("log file");
    let child = Command::new(demo_bin())
        .arg("worker")
        .args(args)
        .current_dir(demo.dir.path())
        .env_remove("RT_SETTINGS")
        .env("REDIS_URL", demo.redis.url())
        .env("RT_WORKER_HEARTBEAT_FREQ", "1")
        .env("RT_WORKER_HEARTBEAT_TIMEOUT", "3")
        .env("RT_MAINTENANCE_FREQ", "1")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("start the demo supervisor");
    Running { child, log }
}

#[test]
fn the_hook_runs_once_per_worker_process_and_tasks_share_its_state() {
    let demo = Demo::new();
    fs::write(demo.path("redis-tasks-demo-setup"), "log").expect("write");
    let ids: Vec<String> = (0..4)
        .map(|_| demo.enqueue("setup_state", json!(null)))
        .collect();
    // One slot, worker processes reused for two tasks each.
    let mut sup = start_in_dir(&demo, &["--concurrency", "1", "--max-tasks-per-child", "2"]);
    let results: Vec<(u64, u64)> = ids
        .iter()
        .map(|id| {
            let record = demo
                .store
                .wait_for_end(id, Duration::from_secs(120))
                .expect("wait")
                .expect("ended");
            assert_eq!(
                record.status,
                TaskStatus::Finished,
                "{record:?}\n{}",
                sup.log()
            );
            let r = record.result.expect("result");
            (
                r["pid"].as_u64().expect("pid"),
                r["calls"].as_u64().expect("calls"),
            )
        })
        .collect();
    sup.stop();
    // Tasks 1-2 ran in one process, 3-4 in the next; each process built
    // its state once and its tasks counted on it.
    assert_eq!(results[0].0, results[1].0, "{results:?}");
    assert_eq!(results[2].0, results[3].0, "{results:?}");
    assert_ne!(results[0].0, results[2].0, "{results:?}");
    let calls: Vec<u64> = results.iter().map(|r| r.1).collect();
    assert_eq!(calls, vec![1, 2, 1, 2]);
    let log = fs::read_to_string(demo.path("redis-tasks-demo-setup.log")).expect("setup log");
    for (pid, _) in &results {
        let runs = log.lines().filter(|l| *l == pid.to_string()).count();
        assert_eq!(runs, 1, "the hook ran once in process {pid}: {log}");
    }
}

#[test]
fn a_failing_hook_stops_the_supervisor_at_start_with_its_message() {
    let demo = Demo::new();
    fs::write(
        demo.path("redis-tasks-demo-setup"),
        "fail: database unreachable",
    )
    .expect("write");
    let id = demo.enqueue("noop", json!(null));
    let mut sup = start_in_dir(&demo, &["--concurrency", "1", "--burst"]);
    let code = sup.wait_exit(Duration::from_secs(60));
    assert_ne!(code, Some(0), "{}", sup.log());
    assert!(
        sup.log()
            .contains("worker process failed to start: setup hook failed: database unreachable"),
        "{}",
        sup.log()
    );
    assert_eq!(
        demo.task(&id).status,
        TaskStatus::Queued,
        "no task was touched"
    );
}

#[test]
fn a_hook_failing_later_fails_the_task_and_the_boot_loop_guard_stops_the_supervisor() {
    let demo = Demo::new();
    // A fresh process per task: each one runs the hook.
    let mut sup = start_in_dir(&demo, &["--concurrency", "1", "--max-tasks-per-child", "1"]);
    let first = demo.enqueue("setup_state", json!(null));
    let done = demo
        .store
        .wait_for_end(&first, Duration::from_secs(120))
        .expect("wait")
        .expect("ended");
    assert_eq!(done.status, TaskStatus::Finished, "{}", sup.log());
    fs::write(
        demo.path("redis-tasks-demo-setup"),
        "fail: cache warm-up failed",
    )
    .expect("write");
    let ids: Vec<String> = (0..8).map(|_| demo.enqueue("noop", json!(null))).collect();
    let code = sup.wait_exit(Duration::from_secs(120));
    assert_ne!(code, Some(0), "{}", sup.log());
    assert!(
        sup.log()
            .contains("worker processes in a row failed to start"),
        "{}",
        sup.log()
    );
    let failed: Vec<_> = ids
        .iter()
        .map(|id| demo.task(id))
        .filter(|t| t.status == TaskStatus::Failed)
        .collect();
    assert!(!failed.is_empty(), "{}", sup.log());
    for t in &failed {
        assert_eq!(
            error_of(t),
            "worker failed to start: setup hook failed: cache warm-up failed"
        );
    }
    // The guard stopped it before it ran through every task (each task
    // costs at most two failed starts: its own and the refill after it).
    assert!(
        ids.iter()
            .any(|id| demo.task(id).status == TaskStatus::Queued),
        "{}",
        sup.log()
    );
}
