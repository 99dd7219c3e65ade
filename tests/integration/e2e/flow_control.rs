//! Flow control with real supervisors: a concurrency limit and a rate
//! limit shared by several supervisors, pause and resume across them, and
//! the admin command's `queue` verbs (docs/flow-control.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_tasks::TaskStatus;
use redis_tasks::store::{Limit, Rate};
use serde_json::json;

use super::{Demo, Running};
use crate::support::{Cmd, wait_until};

/// How many tasks of `queue` run right now, read in one atomic step over
/// every slot's list (a read spread over several commands could count a
/// task that ended and its successor together).
fn running_now(demo: &Demo, queue: &str) -> usize {
    running_where(demo, "queue", queue)
}

/// How many running tasks whose record has `field` = `value` the slots'
/// lists hold right now, in one atomic step.
fn running_where(demo: &Demo, field: &str, value: &str) -> usize {
    let script = redis::Script::new(
        r"
local n = 0
for _, slot in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  for _, id in ipairs(redis.call('LRANGE', ARGV[1] .. ':worker:' .. slot .. ':task', 0, -1)) do
    local f = redis.call('HMGET', ARGV[1] .. ':task:' .. id, 'status', ARGV[2])
    if f[1] == 'running' and f[2] == ARGV[3] then n = n + 1 end
  end
end
return n
",
    );
    let keys = demo.redis.names().first();
    let mut c = demo.redis.client();
    script
        .key(keys.workers())
        .arg(keys.prefix())
        .arg(field)
        .arg(value)
        .invoke::<usize>(&mut c)
        .expect("count running")
}

fn supervisors(demo: &Demo, n: usize, args: &[&str]) -> Vec<Running> {
    (0..n).map(|_| demo.start(args, &[])).collect()
}

/// How many processes run `sleep <secs>` right now, from the process
/// table: the children the `spawn` tasks of a test start (each task waits
/// for its child, so this counts the tasks running).
fn sleeping(secs: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| *cmdline == format!("sleep\0{secs}\0").into_bytes())
        .count()
}

#[test]
fn three_supervisors_never_run_more_than_the_concurrency_limit() {
    let demo = Demo::new();
    demo.store
        .limit_queue("api", Limit::Concurrency(3))
        .expect("limit");
    // Each task runs a `sleep 0.37` child and waits for it: the process
    // table shows the running tasks, next to Redis's count.
    let ids: Vec<String> = (0..24)
        .map(|_| {
            demo.store
                .queue("api")
                .enqueue("spawn", &json!({"children": 1, "secs": 0.37}))
                .expect("enqueue")
        })
        .collect();
    // Nine slots in all: without the limit, nine would run at once.
    let mut running = supervisors(&demo, 3, &["--concurrency", "3", "api"]);
    let (mut most, mut most_processes) = (0, 0);
    wait_until("every task to end", Duration::from_secs(120), || {
        most = most.max(running_now(&demo, "api"));
        most_processes = most_processes.max(sleeping("0.37"));
        ids.iter().all(|id| {
            demo.store
                .task(id)
                .is_ok_and(|t| t.status == TaskStatus::Finished)
        })
    });
    assert!(most <= 3, "{most} ran at once under a limit of 3");
    assert!(
        most_processes <= 3,
        "{most_processes} task processes at once under a limit of 3"
    );
    assert_eq!(
        most, 3,
        "the limit was never reached: the test proves nothing"
    );
    assert!(
        most_processes >= 2,
        "the process table never showed the tasks"
    );
    for r in &mut running {
        r.stop();
    }
}

#[test]
fn a_rate_limit_holds_in_every_window_across_supervisors() {
    let demo = Demo::new();
    let rate: Rate = "50/1s".parse().expect("rate");
    demo.store
        .limit_queue("mail", Limit::Rate(rate))
        .expect("limit");
    let n = 150;
    let batch: Vec<(&str, serde_json::Value)> = (0..n).map(|_| ("noop", json!(null))).collect();
    let ids = demo
        .store
        .queue("mail")
        .enqueue_many(&batch)
        .expect("enqueue");
    let mut running = supervisors(&demo, 2, &["--concurrency", "2", "mail"]);
    // The admissions, on Redis's clock: P:starts:mail holds every start of
    // the last second, so reading it more often than that sees them all.
    let starts_key = demo.redis.names().home("mail").starts("mail");
    let mut c = demo.redis.client();
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut look = |seen: &mut BTreeMap<String, i64>| {
        let now: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(&starts_key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(&mut c)
            .expect("zrange");
        seen.extend(now);
    };
    wait_until("every task to end", Duration::from_secs(120), || {
        look(&mut seen);
        ids.iter().all(|id| {
            demo.store
                .task(id)
                .is_ok_and(|t| t.status == TaskStatus::Finished)
        })
    });
    // The last starts, made after the last look.
    look(&mut seen);
    for r in &mut running {
        r.stop();
    }
    if seen.len() != n {
        let named: std::collections::BTreeSet<&str> =
            seen.keys().filter_map(|m| m.split('@').next()).collect();
        for id in ids.iter().filter(|id| !named.contains(id.as_str())) {
            eprintln!("unseen {id}: {:?}", demo.task(id).started_at);
        }
        let mut all: Vec<(i64, &String)> = seen.iter().map(|(m, t)| (*t, m)).collect();
        all.sort();
        eprintln!("first seen {:?} last {:?}", all.first(), all.last());
        let mut st: Vec<i64> = ids
            .iter()
            .map(|id| demo.task(id).started_at.expect("started").as_millisecond())
            .collect();
        st.sort_unstable();
        let mut w = 0;
        for (i, t) in st.iter().enumerate() {
            w = w.max(st[i..].iter().take_while(|u| **u <= t + 1000).count());
        }
        eprintln!(
            "worst window by started_at {w}; first {} last {}",
            st[0],
            st[n - 1]
        );
    }
    assert_eq!(seen.len(), n, "every start was seen");
    let mut times: Vec<i64> = seen.values().copied().collect();
    times.sort_unstable();
    // No window of 1000 ms, wherever it starts, holds more than 50.
    let mut worst = 0;
    for (i, t) in times.iter().enumerate() {
        let inside = times[i..].iter().take_while(|u| **u <= t + 1000).count();
        worst = worst.max(inside);
    }
    assert!(worst <= 50, "{worst} starts in one second");
    // And it keeps close to the rate: 150 starts need a little over 2 s.
    let span = Duration::from_millis((times[n - 1] - times[0]).unsigned_abs());
    eprintln!("150 starts at 50/1s over {span:?} (worst window: {worst})");
    assert!(span >= Duration::from_millis(2000), "{span:?}");
    assert!(
        span < Duration::from_secs(8),
        "{span:?}: far below the rate"
    );
}

#[test]
fn a_pause_holds_a_queue_on_every_supervisor_until_resume() {
    let demo = Demo::new();
    demo.store.pause_queue("held").expect("pause");
    let held: Vec<String> = (0..5)
        .map(|i| {
            demo.store
                .queue("held")
                .enqueue("noop", &i)
                .expect("enqueue")
        })
        .collect();
    let mut running = supervisors(&demo, 2, &["--concurrency", "2", "held", "probe"]);
    // Both supervisors serve: probes on the other queue end...
    let probes: Vec<String> = (0..8)
        .map(|i| {
            demo.store
                .queue("probe")
                .enqueue("noop", &i)
                .expect("probe")
        })
        .collect();
    for id in &probes {
        demo.wait_status(id, TaskStatus::Finished, Duration::from_secs(60));
    }
    // ...while the paused queue keeps every task.
    assert_eq!(demo.store.queue("held").count().expect("count"), 5);
    for id in &held {
        assert_eq!(demo.task(id).status, TaskStatus::Queued);
    }
    let resumed = Instant::now();
    demo.store.resume_queue("held").expect("resume");
    for id in &held {
        demo.wait_status(id, TaskStatus::Finished, Duration::from_secs(60));
    }
    eprintln!(
        "five paused tasks ended {:?} after resume",
        resumed.elapsed()
    );
    for r in &mut running {
        r.stop();
    }
}

#[test]
fn the_admin_command_pauses_limits_and_lists_queues() {
    let demo = Demo::new();
    let url = demo.redis.url();
    demo.store
        .queue("api")
        .enqueue("noop", &1)
        .expect("enqueue");
    let out = Cmd::admin(&url).args(["queue", "pause", "api"]).stdout();
    assert_eq!(out, "paused queue api");
    Cmd::admin(&url)
        .args([
            "queue",
            "limit",
            "api",
            "--concurrency",
            "4",
            "--rate",
            "10/1m",
        ])
        .run();
    let listed: serde_json::Value =
        serde_json::from_str(&Cmd::admin(&url).args(["queue", "list", "--json"]).stdout())
            .expect("json");
    assert_eq!(
        listed,
        json!([{"name": "api", "length": 1, "running": 0, "paused": true,
                "concurrency_limit": 4, "rate_limit": "10/1m"}])
    );
    let table = Cmd::admin(&url).args(["queue", "list"]).stdout();
    assert!(
        table.contains("api") && table.contains("yes") && table.contains("10/1m"),
        "{table}"
    );
    let info = Cmd::admin(&url).args(["info"]).stdout();
    assert!(info.contains("(paused)"), "{info}");

    Cmd::admin(&url).args(["queue", "resume", "api"]).run();
    Cmd::admin(&url)
        .args(["queue", "limit", "api", "--clear"])
        .run();
    let flow = demo.store.queue_flow("api").expect("flow");
    assert_eq!(
        (flow.paused, flow.concurrency, flow.rate),
        (false, None, None)
    );

    // Bad input: a clear error, nothing changed.
    for (args, says) in [
        (vec!["queue", "limit", "api", "--rate", "50"], "N/PERIOD"),
        (
            vec!["queue", "limit", "api", "--concurrency", "0"],
            "concurrency",
        ),
        (vec!["queue", "limit", "api"], "required"),
        (vec!["queue", "pause", "bad name"], "invalid queue name"),
    ] {
        let o = Cmd::admin(&url).args(&args).fails();
        assert!(o.stderr.contains(says), "{args:?}: {}", o.stderr);
    }
    assert_eq!(demo.store.queue_flow("api").expect("flow"), flow);
}

#[test]
fn the_settings_file_seeds_limits_that_run_time_changes_keep() {
    let demo = Demo::new();
    let settings = demo.path("settings.toml");
    std::fs::write(
        &settings,
        "[queues.api]\nconcurrency_limit = 2\nrate_limit = \"5/1s\"\n",
    )
    .expect("settings");
    let path = settings.to_str().expect("utf-8");
    let mut first = demo.start(&["api"], &[("RT_SETTINGS", path)]);
    wait_until("the limits seeded", Duration::from_secs(60), || {
        demo.store
            .queue_flow("api")
            .is_ok_and(|f| f.concurrency == Some(2))
    });
    assert_eq!(
        demo.store
            .queue_flow("api")
            .expect("flow")
            .rate
            .map(|r| r.to_string()),
        Some("5/1s".to_owned())
    );
    first.stop();
    // A run-time change survives the next start.
    demo.store
        .limit_queue("api", Limit::Concurrency(7))
        .expect("limit");
    let mut second = demo.start(&["api"], &[("RT_SETTINGS", path)]);
    let probe = demo.store.queue("api").enqueue("noop", &1).expect("probe");
    demo.wait_status(&probe, TaskStatus::Finished, Duration::from_secs(60));
    assert_eq!(
        demo.store.queue_flow("api").expect("flow").concurrency,
        Some(7)
    );
    second.stop();
}

/// The queues of the first `n` tasks started, in order of start.
fn first_started(demo: &Demo, ids: &[String], n: usize) -> Vec<String> {
    let mut started: Vec<(jiff::Timestamp, String)> = ids
        .iter()
        .map(|id| {
            let t = demo.task(id);
            (t.started_at.expect("started"), t.queue)
        })
        .collect();
    started.sort();
    started.into_iter().take(n).map(|(_, q)| q).collect()
}

#[test]
fn weights_let_a_light_queue_through_and_strict_priority_does_not() {
    for (specs, strict) in [(["high=5", "low=1"], false), (["high", "low"], true)] {
        let demo = Demo::new();
        let mut ids = Vec::new();
        for queue in ["high", "low"] {
            let batch: Vec<(&str, serde_json::Value)> =
                (0..60).map(|_| ("noop", json!(null))).collect();
            ids.extend(
                demo.store
                    .queue(queue)
                    .enqueue_many(&batch)
                    .expect("enqueue"),
            );
        }
        demo.burst(&["--concurrency", "1", specs[0], specs[1]]);
        let first = first_started(&demo, &ids, 60);
        let low = first.iter().filter(|q| *q == "low").count();
        if strict {
            assert_eq!(low, 0, "strict priority ran low before high was empty");
        } else {
            // About one in six; far from none and far from half.
            assert!((2..=25).contains(&low), "{low} of the first 60 from low");
        }
    }
    // A weight that does not read is refused at start, naming the queue.
    let demo = Demo::new();
    let out = demo
        .cmd()
        .args(["worker", "--burst", "high=5", "low"])
        .fails();
    assert!(
        out.stderr.contains("\"low\" has no weight"),
        "{}",
        out.stderr
    );
}

#[test]
fn supervisor_kills_and_redis_restarts_never_break_a_limit_nor_lose_a_task() {
    chaos_under_a_limit(
        |store| store.limit_queue("api", Limit::Concurrency(2)),
        |demo| running_now(demo, "api"),
    );
}

#[test]
fn supervisor_kills_and_redis_restarts_never_break_a_task_function_limit() {
    chaos_under_a_limit(
        |store| store.limit_task("sleep", Limit::Concurrency(2)),
        |demo| running_of_function(demo, "sleep"),
    );
}

/// Two supervisors run 120 `sleep` tasks on `api` under the limit `set`
/// sets, SIGKILLed and restarted and Redis restarted six times meanwhile:
/// `running` (sampled atomically) never exceeds 2, reaches it, and every
/// task ends.
fn chaos_under_a_limit(
    set: impl Fn(&redis_tasks::Store) -> Result<(), redis_tasks::StoreError>,
    running: impl Fn(&Demo) -> usize,
) {
    use nix::sys::signal::Signal;

    let mut demo = Demo::with_redis(crate::support::RedisServer::start_persistent());
    set(&demo.store).expect("limit");
    let batch: Vec<(&str, serde_json::Value)> =
        (0..120).map(|_| ("sleep", json!({"secs": 0.05}))).collect();
    let ids = demo
        .store
        .queue("api")
        .enqueue_many(&batch)
        .expect("enqueue");
    let start = |demo: &Demo, instance: &str| {
        demo.start(
            &["--concurrency", "3", "--instance", instance, "api"],
            &[("RUST_LOG", "info")],
        )
    };
    let mut sups = vec![start(&demo, "a"), start(&demo, "b")];
    // Ended: finished, or failed ("worker died": a plain task running
    // when its supervisor is killed gets that outcome, it is not rerun).
    let ended = |demo: &Demo| {
        ids.iter()
            .filter(|id| {
                demo.store
                    .task(id)
                    .is_ok_and(|t| matches!(t.status, TaskStatus::Finished | TaskStatus::Failed))
            })
            .count()
    };
    // Sampled while Redis may be down: a failed read samples nothing.
    let sample = |demo: &Demo| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| running(demo))).unwrap_or(0)
    };
    let (mut most, mut acts, mut next) = (0, 0, 15);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        most = most.max(sample(&demo));
        let done = ended(&demo);
        if done == ids.len() {
            break;
        }
        if Instant::now() > deadline {
            let left: Vec<String> = ids
                .iter()
                .filter_map(|id| {
                    let t = demo.store.task(id).ok()?;
                    (t.status != TaskStatus::Finished).then(|| {
                        format!(
                            "{id}: {} {:?} {:?}",
                            t.status,
                            t.error,
                            t.aborted_runs.len()
                        )
                    })
                })
                .collect();
            panic!("{done} of {} ended; left: {left:#?}", ids.len());
        }
        if done >= next && acts < 6 {
            next += 15;
            acts += 1;
            if acts % 3 == 0 {
                demo.redis.restart();
            } else {
                let which = acts % 2;
                sups[which].signal(Signal::SIGKILL);
                sups[which].wait_exit(Duration::from_secs(30));
                sups[which] = start(&demo, if which == 0 { "a" } else { "b" });
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        acts >= 4,
        "only {acts} disturbances: the test proves little"
    );
    assert!(most <= 2, "{most} ran at once under a limit of 2");
    assert_eq!(
        most, 2,
        "the limit was never reached: the test proves little"
    );
    for s in &mut sups {
        s.stop();
    }
}

/// How many tasks of function `task` run right now, over every slot, read
/// in one atomic step (as `running_now`).
fn running_of_function(demo: &Demo, task: &str) -> usize {
    running_where(demo, "task", task)
}

#[test]
fn a_task_function_limit_holds_across_supervisors_and_queues_while_other_work_runs() {
    let demo = Demo::new();
    let url = demo.redis.url();
    let out = Cmd::admin(&url)
        .args(["task", "limit", "sleep", "--concurrency", "2"])
        .stdout();
    assert_eq!(out, "task sleep: at most 2 running at once");
    let mut sleeps = Vec::new();
    for q in ["a", "b"] {
        for _ in 0..6 {
            sleeps.push(
                demo.store
                    .queue(q)
                    .enqueue("sleep", &json!({"secs": 0.3}))
                    .expect("enqueue"),
            );
        }
    }
    let noops: Vec<String> = (0..10)
        .map(|_| demo.store.queue("a").enqueue("noop", &1).expect("enqueue"))
        .collect();
    // One supervisor seeds another function's limit from its settings.
    let settings = demo.path("settings.toml");
    std::fs::write(&settings, "[tasks.render]\nconcurrency_limit = 4\n").expect("settings");
    let path = settings.to_str().expect("utf-8");
    let mut sups = vec![
        demo.start(&["--concurrency", "3", "a", "b"], &[("RT_SETTINGS", path)]),
        demo.start(&["--concurrency", "3", "a", "b"], &[]),
    ];
    let mut most = 0;
    wait_until("every task to end", Duration::from_secs(120), || {
        most = most.max(running_of_function(&demo, "sleep"));
        sleeps.iter().chain(&noops).all(|id| {
            demo.store
                .task(id)
                .is_ok_and(|t| t.status == TaskStatus::Finished)
        })
    });
    assert!(most <= 2, "{most} sleeps ran at once under a limit of 2");
    assert_eq!(
        most, 2,
        "the limit was never reached: the test proves nothing"
    );
    // The slots took the noops while sleeps were held back: every noop
    // ended before the last sleep started.
    let last_sleep_start = sleeps
        .iter()
        .filter_map(|id| demo.task(id).started_at)
        .max()
        .expect("starts");
    for id in &noops {
        let ended = demo.task(id).ended_at.expect("ended");
        assert!(
            ended < last_sleep_start,
            "noop {id} waited behind held sleeps"
        );
    }
    assert_eq!(demo.store.task_flow("sleep").expect("flow").held, 0);
    assert_eq!(
        demo.store.task_flow("render").expect("flow").concurrency,
        Some(4)
    );
    let o = Cmd::admin(&url)
        .args(["task", "limit", "sleep", "--concurrency", "0"])
        .fails();
    assert!(o.stderr.contains("concurrency"), "{}", o.stderr);
    Cmd::admin(&url)
        .args(["task", "limit", "sleep", "--clear"])
        .run();
    assert_eq!(
        demo.store.task_flow("sleep").expect("flow").concurrency,
        None
    );
    for s in &mut sups {
        s.stop();
    }
}
