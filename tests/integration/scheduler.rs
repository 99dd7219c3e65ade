//! The scheduler process (the demo binary's `scheduler` subcommand, and
//! `worker --scheduler`) against a real Redis: due runs enqueued once,
//! singleton skips, catch-up after downtime, one active scheduler with
//! takeover after SIGKILL, graceful SIGTERM.
//!
//! Timers are short through the environment: the lock lives 3 s
//! (`RT_WORKER_HEARTBEAT_TIMEOUT`) and is refreshed every second.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use nix::sys::signal::Signal;
use redis_tasks::config::schedule::{CronSchedule, Schedule};

use crate::e2e::{Demo, Running, demo_bin};
use crate::support::{Cmd, wait_until};

/// Lock expiry and refresh the tests run with.
const LOCK_TTL: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(60);

/// Writes `toml` as the settings file and starts the demo binary with
/// `args` (e.g. `["scheduler"]`) in the background.
fn start(demo: &Demo, args: &[&str], toml: &str) -> Running {
    start_env(demo, args, toml, &[])
}

/// [`start`] with extra environment (set after the defaults).
fn start_env(demo: &Demo, args: &[&str], toml: &str, env: &[(&str, &str)]) -> Running {
    let settings = demo.path("settings.toml");
    fs::write(&settings, toml).expect("write settings");
    let log = demo.path(&format!(
        "scheduler-{}.log",
        Timestamp::now().as_nanosecond()
    ));
    let file = fs::File::create(&log).expect("log file");
    let child = Command::new(demo_bin())
        .args(args)
        .env("RT_SETTINGS", &settings)
        .env("REDIS_URL", demo.redis.url())
        .env("DEMO_OUTCOME_LOG", demo.outcome_log())
        .env("RT_WORKER_HEARTBEAT_FREQ", "1")
        .env(
            "RT_WORKER_HEARTBEAT_TIMEOUT",
            LOCK_TTL.as_secs().to_string(),
        )
        .env("RT_MAINTENANCE_FREQ", "1")
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("start the demo scheduler");
    Running { child, log }
}

/// Run times named in "enqueued ... for the run at T" log lines.
fn enqueued_runs(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("scheduler: enqueued"))
        .filter_map(|l| l.split("for the run at ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

const EVERY_SECOND: &str = r#"
[schedule.tick]
task = "noop"
every = "1s"
singleton = false
"#;

#[test]
fn two_schedulers_enqueue_each_run_once_and_the_second_takes_over_after_sigkill() {
    let demo = Demo::new();
    let mut first = start(&demo, &["scheduler"], EVERY_SECOND);
    wait_until("the first scheduler to take the lock", WAIT, || {
        first.log().contains("lock taken")
    });
    let second = start(&demo, &["scheduler"], EVERY_SECOND);
    wait_until("the second scheduler to wait", WAIT, || {
        second.log().contains("waiting to take over")
    });
    wait_until("three runs enqueued", WAIT, || {
        demo.store.queue("default").count().unwrap_or(0) >= 3
    });
    assert!(
        enqueued_runs(&second.log()).is_empty(),
        "only the lock holder enqueues:\n{}",
        second.log()
    );

    // The lock a killed scheduler held goes away by itself: it carries
    // the short TTL (read in Redis, not timed by the test).
    let mut conn = demo.redis.client();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("redis_tasks:lock:scheduler")
        .query(&mut conn)
        .expect("PTTL");
    assert!(
        pttl > 0 && pttl <= LOCK_TTL.as_millis() as i64,
        "the scheduler lock's ttl is {pttl} ms, not at most {LOCK_TTL:?}"
    );
    first.signal(Signal::SIGKILL);
    let killed = Instant::now();
    first.wait_exit(WAIT);
    wait_until("the second scheduler to take over", WAIT, || {
        second.log().contains("lock taken")
    });
    // Takeover follows the lock's expiry (3 s) and one refresh period. The
    // bound is ten times that, so a loaded machine does not fail it; a
    // second scheduler that waited for anything but the lock would.
    let took = killed.elapsed();
    assert!(
        took <= LOCK_TTL + Duration::from_secs(30),
        "takeover took {took:?}, lock ttl {LOCK_TTL:?}"
    );
    let before = demo.store.queue("default").count().expect("count");
    wait_until("the second scheduler to enqueue", WAIT, || {
        demo.store.queue("default").count().unwrap_or(0) >= before + 2
    });

    // Every run time was enqueued by exactly one of them, once.
    let mut all = enqueued_runs(&first.log());
    all.extend(enqueued_runs(&second.log()));
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a run was enqueued twice: {all:?}"
    );
    // The second scheduler's own count, read after its log.
    let count = demo.store.queue("default").count().expect("count") as usize;
    let logged = {
        let mut all = enqueued_runs(&first.log());
        all.extend(enqueued_runs(&second.log()));
        all.len()
    };
    assert!(
        count >= distinct.len() && count <= logged,
        "{count} tasks queued, {logged} enqueues logged"
    );
}

#[test]
fn a_singleton_entry_skips_runs_while_its_task_waits() {
    let demo = Demo::new();
    let sched = start(
        &demo,
        &["scheduler"],
        r#"
[schedule.tick]
task = "noop"
every = "1s"
"#,
    );
    wait_until("two runs skipped", WAIT, || {
        sched.log().matches("skipped the run at").count() >= 2
    });
    assert_eq!(demo.store.queue("default").count().expect("count"), 1);
}

#[test]
fn missed_runs_are_caught_up_within_the_limit() {
    let demo = Demo::new();
    // A downtime of ten minutes: the last runs are set back by hand.
    let ten_min_ago = Timestamp::now() - jiff::SignedDuration::from_mins(10);
    let mut conn = demo.redis.client();
    for entry in ["many", "single"] {
        let () = redis::cmd("HSET")
            .arg(format!("redis_tasks:schedule:{entry}"))
            .arg("last_run")
            .arg(ten_min_ago.to_string())
            .arg("last_run_score")
            .arg(format!("{}", ten_min_ago.as_second()))
            .query(&mut conn)
            .expect("HSET");
    }
    let toml = r#"
scheduler_max_catchup = 300

[schedule.many]
task = "noop"
cron = "* * * * *"
singleton = false
queue = "many"

[schedule.single]
task = "noop"
cron = "* * * * *"
queue = "single"
"#;
    let t0 = Timestamp::now();
    let sched = start(&demo, &["scheduler"], toml);
    wait_until("the catch-up", WAIT, || {
        sched.log().matches("missed runs since").count() >= 2
    });
    let t1 = Timestamp::now();
    // Runs inside [start - 300 s, start]: every minute mark in it.
    let every_minute = Schedule::Cron(CronSchedule::parse("* * * * *").expect("cron"));
    let expected = |now: Timestamp| {
        every_minute
            .runs_after(
                now - jiff::SignedDuration::from_secs(301),
                &jiff::tz::TimeZone::UTC,
            )
            .take_while(|r| r.at <= now)
            .filter(|r| r.at >= now - jiff::SignedDuration::from_secs(300))
            .count() as u64
    };
    let many = demo.store.queue("many").count().expect("count");
    let range = expected(t0).min(expected(t1))..=expected(t0).max(expected(t1)) + 1;
    assert!(
        range.contains(&many),
        "non-singleton catch-up enqueued {many}, expected {range:?}:\n{}",
        sched.log()
    );
    assert!(many < 10, "runs older than the limit were skipped");
    assert_eq!(
        demo.store.queue("single").count().expect("count"),
        1,
        "a singleton catches up at most once"
    );
}

#[test]
fn sigterm_stops_the_scheduler_and_releases_the_lock() {
    let demo = Demo::new();
    let mut sched = start(&demo, &["scheduler"], EVERY_SECOND);
    wait_until("the lock", WAIT, || sched.log().contains("lock taken"));
    sched.signal(Signal::SIGTERM);
    assert_eq!(sched.wait_exit(WAIT), Some(0), "{}", sched.log());
    assert!(sched.log().contains("lock released"), "{}", sched.log());
    let mut conn = demo.redis.client();
    let exists: bool = redis::cmd("EXISTS")
        .arg("redis_tasks:lock:scheduler")
        .query(&mut conn)
        .expect("EXISTS");
    assert!(!exists, "the lock is gone at once");
}

#[test]
fn worker_with_scheduler_enqueues_and_runs_the_entries() {
    let demo = Demo::new();
    let path = demo.path("ticks.txt");
    let toml = format!(
        r#"
[schedule.tick]
task = "write_file"
every = "1s"
args = {{ path = "{}", text = "tick\n" }}
"#,
        path.display()
    );
    let mut sup = start(&demo, &["worker", "--scheduler", "-c", "1"], &toml);
    wait_until("two scheduled runs executed", WAIT, || {
        fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= 2)
    });
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait_exit(WAIT), Some(0), "{}", sup.log());
    assert!(sup.log().contains("lock released"), "{}", sup.log());
}

#[test]
fn an_entry_naming_an_unknown_task_is_refused_at_start() {
    let demo = Demo::new();
    let mut sched = start(
        &demo,
        &["scheduler"],
        "[schedule.x]\ntask = \"no_such_task\"\ndaily = \"03:00\"\n",
    );
    assert_ne!(sched.wait_exit(WAIT), Some(0));
    assert!(sched.log().contains("schedule.x.task"), "{}", sched.log());
}

/// The admin command `redis-tasks schedule ACTION NAME` against the demo's
/// Redis.
fn schedule_cmd(demo: &Demo, action: &str, name: &str) -> Cmd {
    let mut cmd = Cmd::admin(&demo.redis.url());
    cmd.args(["schedule", action, name]);
    cmd
}

/// Entries that are never due during a test: only "run now" enqueues them.
const RARE: &str = r#"
[schedule.report]
task = "noop"
daily = "03:00"
queue = "manual"

[schedule.other]
task = "noop"
cron = "0 4 1 1 *"
queue = "other"
"#;

#[test]
fn run_now_and_pause_reach_the_active_scheduler_at_once_and_run_exactly_once() {
    let demo = Demo::new();
    // A 30 s refresh: anything faster than that came through the wake list.
    let slow = [
        ("RT_WORKER_HEARTBEAT_FREQ", "30"),
        ("RT_WORKER_HEARTBEAT_TIMEOUT", "90"),
    ];
    let active = start_env(&demo, &["scheduler"], RARE, &slow);
    wait_until("the first scheduler to take the lock", WAIT, || {
        active.log().contains("lock taken")
    });
    let standby = start_env(&demo, &["scheduler"], RARE, &slow);
    wait_until("the second scheduler to wait", WAIT, || {
        standby.log().contains("waiting to take over")
    });

    // An unknown entry is refused with a clear message and nothing written.
    let refused = schedule_cmd(&demo, "run", "nope").fails();
    assert!(
        refused.stderr.contains("unknown schedule entry \"nope\"")
            && refused.stderr.contains("other, report"),
        "{}",
        refused.stderr
    );
    let mut conn = demo.redis.client();
    let exists: bool = redis::cmd("EXISTS")
        .arg("redis_tasks:schedule:nope")
        .query(&mut conn)
        .expect("EXISTS");
    assert!(!exists, "an unknown entry leaves no key behind");

    let asked = Instant::now();
    schedule_cmd(&demo, "run", "report").run();
    wait_until("the run asked for now", WAIT, || {
        demo.store.queue("manual").count().unwrap_or(0) == 1
    });
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "run now took {took:?}: the scheduler waited for its 30 s refresh instead of its wake list"
    );

    // Paused, the entry still runs when asked to, and each request once.
    schedule_cmd(&demo, "pause", "report").run();
    wait_until("the scheduler to see the pause", WAIT, || {
        active.log().contains("entry report is paused")
    });
    let again = schedule_cmd(&demo, "pause", "report").stdout();
    assert!(again.contains("already paused"), "{again}");
    schedule_cmd(&demo, "run", "report").run();
    schedule_cmd(&demo, "run", "report").run();
    wait_until("both runs asked for", WAIT, || {
        demo.store.queue("manual").count().unwrap_or(0) >= 3
    });
    // Another wake-up (a run of the other entry) proves no request is left
    // to enqueue a fourth time.
    schedule_cmd(&demo, "run", "other").run();
    wait_until("the other entry's run", WAIT, || {
        demo.store.queue("other").count().unwrap_or(0) == 1
    });
    assert_eq!(demo.store.queue("manual").count().expect("count"), 3);
    let requests: Option<String> = redis::cmd("HGET")
        .arg("redis_tasks:schedule:report")
        .arg("run_requests")
        .query(&mut conn)
        .expect("HGET");
    assert_eq!(requests, None, "every request was taken");
    assert!(
        !standby.log().contains("asked for now"),
        "only the lock holder enqueues:\n{}",
        standby.log()
    );
    let logged = active.log().matches("asked for now").count();
    assert_eq!(logged, 4, "{}", active.log());
}

const EVERY_SECOND_PAUSABLE: &str = r#"
[schedule.tick]
task = "noop"
every = "1s"
singleton = false
"#;

/// Run times (UTC) the log says were enqueued for entry `tick`.
fn tick_runs(log: &str) -> Vec<Timestamp> {
    enqueued_runs(log)
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect()
}

#[test]
fn a_paused_entry_skips_its_runs_across_a_restart_and_resumes_without_piling_up() {
    let demo = Demo::new();
    let mut first = start(&demo, &["scheduler"], EVERY_SECOND_PAUSABLE);
    wait_until("runs enqueued", WAIT, || {
        demo.store.queue("default").count().unwrap_or(0) >= 2
    });
    let out = schedule_cmd(&demo, "pause", "tick").stdout();
    assert!(out.contains("paused tick"), "{out}");
    let paused = Timestamp::now();
    wait_until("two runs skipped while paused", WAIT, || {
        first.log().matches("of entry tick: it is paused").count() >= 2
    });

    // The pause is kept in Redis: a new scheduler obeys it too.
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait_exit(WAIT), Some(0), "{}", first.log());
    let queued = demo.store.queue("default").count().expect("count");
    let second = start(&demo, &["scheduler"], EVERY_SECOND_PAUSABLE);
    wait_until("the new scheduler to skip paused runs", WAIT, || {
        second.log().contains("entry tick is paused")
            && second.log().matches("of entry tick: it is paused").count() >= 2
    });
    assert_eq!(
        demo.store.queue("default").count().expect("count"),
        queued,
        "a paused entry enqueued:\n{}",
        second.log()
    );

    let resumed = Timestamp::now();
    let out = schedule_cmd(&demo, "resume", "tick").stdout();
    assert!(out.contains("resumed tick"), "{out}");
    wait_until("runs enqueued again", WAIT, || {
        demo.store.queue("default").count().unwrap_or(0) >= queued + 2
    });
    assert!(
        second.log().contains("entry tick resumed"),
        "{}",
        second.log()
    );
    // Nothing due while paused was enqueued, before or after the resume.
    let mut all = tick_runs(&first.log());
    all.extend(tick_runs(&second.log()));
    let during: Vec<_> = all
        .iter()
        .filter(|at| **at > paused && **at < resumed)
        .collect();
    assert!(during.is_empty(), "runs of the pause enqueued: {during:?}");
}
