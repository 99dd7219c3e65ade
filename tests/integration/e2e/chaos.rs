//! The chaos soak: a mixed workload runs while a chaos loop kills the
//! supervisor (and starts it again), kills worker processes, restarts Redis
//! (append-only, fsync always, so Redis itself keeps its data) and sends
//! bursts of SIGTTIN/SIGTTOU/SIGHUP. At the end every task is accounted
//! for by id.
//!
//! The short version runs in the normal suite; set `REDIS_TASKS_CHAOS_TASKS`
//! (e.g. 5000) for a long one, and `REDIS_TASKS_CHAOS_FRESH=1` to give every
//! task a fresh worker process from the fork server.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use super::{Demo, Running, children_of};
use crate::support::{RedisServer, wait_until};

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mark,
    ReentrantMark,
    Fail,
    Panic,
    Abort,
    Timeout,
}

const ENV: [(&str, &str); 2] = [("RT_MAX_ABORTED_RUNS", "1000"), ("RUST_LOG", "info")];

fn start(demo: &Demo) -> Running {
    let mut args = vec!["--concurrency", "3", "--instance", "chaos"];
    // REDIS_TASKS_CHAOS_FRESH=1: a fresh worker process per task (the fork
    // server's path).
    if std::env::var_os("REDIS_TASKS_CHAOS_FRESH").is_some() {
        args.extend(["--max-tasks-per-child", "1"]);
    }
    demo.start(&args, &ENV)
}

#[test]
fn chaos_loses_nothing_and_runs_no_plain_task_twice() {
    let total: usize = std::env::var("REDIS_TASKS_CHAOS_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
    let mut demo = Demo::with_redis(RedisServer::start_persistent());
    let marks = demo.path("marks.txt");

    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let queue = demo.store.queue("default");
    let mut batch = Vec::new();
    for _ in 0..total {
        let kind = match rng.below(20) {
            0..=8 => Kind::Mark,
            9..=13 => Kind::ReentrantMark,
            14..=15 => Kind::Fail,
            16 => Kind::Panic,
            17 => Kind::Abort,
            _ => Kind::Timeout,
        };
        let secs = 0.02 + rng.below(80) as f64 / 1000.0;
        let (task, args) = match kind {
            Kind::Mark => ("mark", json!({"path": marks, "secs": secs})),
            Kind::ReentrantMark => ("reentrant_mark", json!({"path": marks, "secs": secs})),
            Kind::Fail => ("fail", json!({"message": "expected"})),
            Kind::Panic => ("panic", json!({"message": "expected"})),
            Kind::Abort => ("abort", json!(null)),
            Kind::Timeout => ("quick_timeout", json!({"secs": 30})),
        };
        batch.push((task, args, kind));
    }
    for chunk in batch.chunks(500) {
        let calls: Vec<(&str, &serde_json::Value)> =
            chunk.iter().map(|(t, a, _)| (*t, a)).collect();
        let ids = queue.enqueue_many(&calls).expect("enqueue");
        for (id, (_, _, kind)) in ids.into_iter().zip(chunk) {
            kinds.insert(id, *kind);
        }
    }

    let ended = |demo: &Demo| -> u64 {
        demo.store.finished().count().unwrap_or(0) + demo.store.failed().count().unwrap_or(0)
    };
    let mut sup = start(&demo);
    let (mut sup_kills, mut worker_kills, mut redis_restarts, mut signal_bursts) = (0, 0, 0, 0);
    let began = Instant::now();
    let step = (total as u64 / 25).clamp(5, 40);
    let mut next = step;
    // Act each time `step` more tasks have ended: chaos paced by progress.
    while next < total as u64 * 9 / 10 {
        wait_until(
            &format!("{next} tasks to end (seed {seed})"),
            Duration::from_secs(180),
            || ended(&demo) >= next,
        );
        next += step;
        match rng.below(10) {
            0..=2 => {
                sup.signal(Signal::SIGKILL);
                sup.wait_exit(Duration::from_secs(30));
                sup = start(&demo);
                sup_kills += 1;
            }
            3..=5 => {
                let workers = children_of(sup.pid());
                if let Some(pid) = workers.get(rng.below(workers.len().max(1) as u64) as usize) {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
                    worker_kills += 1;
                }
            }
            6..=7 => {
                demo.redis.restart();
                redis_restarts += 1;
            }
            _ => {
                for _ in 0..rng.below(5) + 1 {
                    sup.signal(Signal::SIGTTIN);
                }
                for _ in 0..rng.below(5) + 1 {
                    sup.signal(Signal::SIGTTOU);
                }
                sup.signal(Signal::SIGHUP);
                signal_bursts += 1;
            }
        }
    }
    wait_until(
        &format!("all {total} tasks to end (seed {seed})"),
        Duration::from_secs(300),
        || ended(&demo) >= total as u64,
    );
    sup.signal(Signal::SIGTERM);
    sup.wait_exit(Duration::from_secs(60));

    // Account for every task by id.
    let finished: BTreeSet<String> = demo
        .store
        .finished()
        .ids(0, usize::MAX >> 1)
        .expect("ids")
        .into_iter()
        .collect();
    let failed: BTreeSet<String> = demo
        .store
        .failed()
        .ids(0, usize::MAX >> 1)
        .expect("ids")
        .into_iter()
        .collect();
    let mut side_effects: BTreeMap<String, usize> = BTreeMap::new();
    for line in fs::read_to_string(&marks).unwrap_or_default().lines() {
        *side_effects.entry(line.to_owned()).or_default() += 1;
    }
    let mut outcome_lines: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for o in demo.outcomes() {
        outcome_lines
            .entry(o["id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(o);
    }
    let (mut lost, mut duplicated, mut repeated_outcomes) = (0, 0, 0);
    for (id, kind) in &kinds {
        let t = demo.task(id);
        let in_finished = finished.contains(id);
        let in_failed = failed.contains(id);
        assert!(
            in_finished != in_failed,
            "task {id} is in {} registries: {t:#?}",
            in_finished as u8 + in_failed as u8
        );
        match t.status {
            TaskStatus::Finished => assert!(in_finished, "{t:#?}"),
            TaskStatus::Failed => assert!(in_failed, "{t:#?}"),
            _ => {
                lost += 1;
                continue;
            }
        }
        let runs = side_effects.get(id).copied().unwrap_or(0);
        match kind {
            Kind::Mark if runs > 1 => duplicated += 1,
            Kind::ReentrantMark => {
                assert_eq!(
                    t.status,
                    TaskStatus::Finished,
                    "reentrant task {id} did not finish: {t:#?}"
                );
                assert!(runs >= 1, "reentrant task {id} never ran");
            }
            _ => {}
        }
        // process_outcome saw the final outcome: the last line for the id
        // agrees with Redis. An earlier line exists only when a supervisor
        // was killed between process_outcome and recording.
        let lines = outcome_lines.get(id).cloned().unwrap_or_default();
        let last = lines
            .last()
            .unwrap_or_else(|| panic!("no process_outcome line for {id}: {t:#?}"));
        let expected = if t.status == TaskStatus::Finished {
            "success"
        } else {
            "failure"
        };
        assert_eq!(last["outcome"], expected, "{id}: {lines:?} vs {t:#?}");
        repeated_outcomes += lines.len() - 1;
    }
    assert_eq!(
        finished.len() + failed.len(),
        kinds.len(),
        "registries hold exactly our tasks"
    );
    println!(
        "chaos (seed {seed}): {total} tasks in {:.0?}; supervisor kills {sup_kills}, worker kills {worker_kills}, \
         redis restarts {redis_restarts}, signal bursts {signal_bursts}; finished {}, failed {}; \
         lost {lost}, plain tasks run twice {duplicated}, process_outcome repeated after a kill {repeated_outcomes}",
        began.elapsed(),
        finished.len(),
        failed.len()
    );
    assert_eq!(lost, 0, "lost tasks");
    assert_eq!(duplicated, 0, "non-reentrant tasks that ran twice");
}
