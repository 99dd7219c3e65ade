//! Reliable fetch: priority order, the blocking wait, records that are
//! missing or corrupt, fencing of finish and requeue, requeue at the front.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis_tasks::store::Ending;
use redis_tasks::{StoreError, TaskStatus};
use serde_json::{Value, json};

use crate::support::{RedisServer, snapshot, wait_until};

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn list(c: &mut redis::Connection, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(c)
        .expect("lrange")
}

fn field(c: &mut redis::Connection, key: &str, f: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(f).query(c).expect("hget")
}

#[test]
fn fetch_takes_the_first_non_empty_queue_and_marks_everything() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store
        .register_slot(&redis_tasks::store::SlotInfo {
            id: "s1".into(),
            description: "host.1/1".into(),
            queues: queues(&["high", "low"]),
            supervisor: "sup".into(),
            host: "host".into(),
            pid: 1,
            started_at: Timestamp::now(),
        })
        .expect("register");
    let low = store
        .queue("low")
        .enqueue("t", &json!(["low"]))
        .expect("low");
    let high = store
        .queue("high")
        .enqueue("t", &json!(["high"]))
        .expect("high");
    let prio = queues(&["high", "low"]);

    let f = store
        .fetch("s1", &prio, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, high);
    let rec = f.record.expect("record");
    assert_eq!(rec.status, TaskStatus::Running);
    assert!(rec.started_at.is_some());
    assert_eq!(n.held("s1"), vec![high.clone()]);
    assert_eq!(list(&mut c, &n.queue("high")), Vec::<String>::new());
    assert_eq!(
        field(&mut c, &n.task_of(&high), "worker").as_deref(),
        Some("s1")
    );
    assert_eq!(
        field(&mut c, &n.slot_in("high", "s1"), "state").as_deref(),
        Some("busy")
    );
    assert_eq!(
        field(&mut c, &n.slot_in("high", "s1"), "current_task").as_deref(),
        Some(high.as_str())
    );

    // A slot holding a task cannot take another.
    let before = snapshot(&mut c);
    assert!(matches!(
        store.fetch("s1", &prio, Duration::ZERO),
        Err(StoreError::SlotBusy { ids, .. }) if ids == vec![high.clone()]
    ));
    assert_eq!(snapshot(&mut c), before);

    let now = Timestamp::now();
    assert!(
        store
            .finish("s1", &high, TaskStatus::Finished, None, now)
            .expect("finish")
    );
    let rec = store.task(&high).expect("task");
    assert_eq!(
        (rec.status, rec.ended_at),
        (
            TaskStatus::Finished,
            Some(Timestamp::from_microsecond(now.as_microsecond()).expect("micros"))
        )
    );
    // The slot that ran it stays named (docs/redis-schema.md).
    assert_eq!(
        field(&mut c, &n.task_of(&high), "worker").as_deref(),
        Some("s1")
    );
    assert_eq!(
        field(&mut c, &n.slot_in("high", "s1"), "state").as_deref(),
        Some("idle")
    );
    assert_eq!(
        field(&mut c, &n.slot_in("high", "s1"), "current_task").as_deref(),
        Some("")
    );
    assert!(n.held("s1").is_empty());

    let f = store
        .fetch("s1", &prio, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, low);
    assert!(
        store
            .finish("s1", &low, TaskStatus::Failed, Some("bad"), now)
            .expect("finish")
    );
    assert_eq!(store.failed().ids(0, 5).expect("failed"), vec![low]);
    assert!(
        store
            .fetch("s1", &prio, Duration::ZERO)
            .expect("fetch")
            .is_none()
    );
    assert!(
        store
            .fetch("s1", &[], Duration::from_secs(5))
            .expect("no queues")
            .is_none()
    );
}

#[test]
fn a_blocked_fetch_wakes_up_for_new_work_on_its_first_queue() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let fetcher = store.independent().expect("independent");
    // A wait far longer than any of the test's own deadlines: a fetch that
    // returns a task woke up for it, not at the end of its wait.
    let handle = std::thread::spawn(move || {
        let got = fetcher.fetch("s1", &queues(&["main", "other"]), Duration::from_secs(300));
        (got, Instant::now())
    });
    let mut c = server.client();
    wait_until("the fetch to block", Duration::from_secs(60), || {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut c)
            .expect("info");
        info.contains("blocked_clients:1")
    });
    let enqueued = Instant::now();
    let id = store.queue("main").enqueue("t", &()).expect("enqueue");
    let (got, returned) = handle.join().expect("fetch thread");
    let f = got.expect("fetch").expect("a task");
    assert_eq!(f.id, id);
    assert_eq!(f.record.expect("record").status, TaskStatus::Running);
    let took = returned.saturating_duration_since(enqueued);
    assert!(
        took < Duration::from_secs(60),
        "woke {took:?} after the enqueue"
    );
    assert_eq!(n.held("s1"), vec![id]);
}

#[test]
fn a_blocked_fetch_returns_none_after_its_wait() {
    let server = RedisServer::start();
    let store = server.store();
    let start = Instant::now();
    let got = store
        .fetch("s1", &queues(&["main"]), Duration::from_millis(300))
        .expect("fetch");
    assert!(got.is_none());
    assert!(start.elapsed() >= Duration::from_millis(290));
    // The connection is still usable afterwards.
    assert!(
        store
            .fetch("s1", &queues(&["main"]), Duration::ZERO)
            .expect("again")
            .is_none()
    );
}

#[test]
fn a_missing_record_goes_to_failed_and_fetch_goes_on() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    redis::cmd("RPUSH")
        .arg(n.queue("default"))
        .arg("ghost")
        .exec(&mut c)
        .expect("rpush");
    let real = store.queue("default").enqueue("t", &()).expect("enqueue");
    let f = store
        .fetch("s1", &queues(&["default"]), Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, real);
    assert_eq!(store.failed().ids(0, 5).expect("failed"), vec!["ghost"]);
    let ghost = store.task("ghost").expect("minimal record");
    assert_eq!(ghost.status, TaskStatus::Failed);
    assert_eq!(ghost.error.as_deref(), Some("task record missing"));
    assert_eq!(ghost.queue, "default");
    assert_eq!(n.held("s1"), vec![real]);
}

#[test]
fn a_missing_record_after_a_blocking_move_goes_to_failed_too() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let fetcher = store.independent().expect("independent");
    // Longer than the two waits below together: still blocked when the
    // real task comes.
    let handle = std::thread::spawn(move || {
        fetcher.fetch("s1", &queues(&["main"]), Duration::from_secs(300))
    });
    let mut c = server.client();
    wait_until("the fetch to block", Duration::from_secs(60), || {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut c)
            .expect("info");
        info.contains("blocked_clients:1")
    });
    redis::cmd("RPUSH")
        .arg(n.queue("main"))
        .arg("ghost")
        .exec(&mut c)
        .expect("rpush");
    wait_until("the ghost to be failed", Duration::from_secs(60), || {
        store.failed().count().expect("count") == 1
    });
    let id = store.queue("main").enqueue("t", &()).expect("enqueue");
    let f = handle
        .join()
        .expect("thread")
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, id);
    assert_eq!(
        store.task("ghost").expect("ghost").error.as_deref(),
        Some("task record missing")
    );
}

#[test]
fn a_corrupt_record_is_fetched_with_its_error() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    redis::cmd("HSET")
        .arg(n.home("default").task("bad"))
        .arg(&[
            ("task", "t"),
            ("args", "{oops"),
            ("status", "queued"),
            ("queue", "default"),
        ])
        .exec(&mut c)
        .expect("hset");
    redis::cmd("RPUSH")
        .arg(n.queue("default"))
        .arg("bad")
        .exec(&mut c)
        .expect("rpush");
    let f = store
        .fetch("s1", &queues(&["default"]), Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, "bad");
    let err = f.record.expect_err("corrupt");
    assert!(
        matches!(&err, StoreError::Corrupt { field, .. } if field == "args"),
        "{err}"
    );
    // The supervisor fails it with that text.
    let now = Timestamp::now();
    assert!(
        store
            .finish("s1", "bad", TaskStatus::Failed, Some(&err.to_string()), now)
            .expect("finish")
    );
    assert_eq!(store.failed().ids(0, 5).expect("failed"), vec!["bad"]);
}

#[test]
fn finish_and_requeue_from_a_slot_that_lost_the_task_change_nothing() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let id = store.queue("default").enqueue("t", &()).expect("enqueue");
    store
        .fetch("s1", &queues(&["default"]), Duration::ZERO)
        .expect("fetch")
        .expect("task");
    let before = snapshot(&mut c);
    let now = Timestamp::now();
    assert!(
        !store
            .finish("s2", &id, TaskStatus::Finished, None, now)
            .expect("finish")
    );
    assert!(
        !store
            .requeue_interrupted("s2", &id, "worker shutdown", now)
            .expect("requeue")
    );
    assert!(
        !store
            .finish("s1", "other", TaskStatus::Failed, Some("x"), now)
            .expect("finish")
    );
    assert_eq!(snapshot(&mut c), before);
    assert!(matches!(
        store.finish("s1", &id, TaskStatus::Running, None, now),
        Err(StoreError::NotFinal { .. })
    ));
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn an_interrupted_task_goes_back_to_the_front_with_its_aborted_runs() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("default");
    let first = q.enqueue("t", &1).expect("first");
    let second = q.enqueue("t", &2).expect("second");
    let names = queues(&["default"]);
    for (round, reason) in ["worker shutdown", "worker died"].iter().enumerate() {
        let f = store
            .fetch("s1", &names, Duration::ZERO)
            .expect("fetch")
            .expect("task");
        assert_eq!(f.id, first, "round {round}");
        let started = f.record.expect("record").started_at.expect("started");
        let now = Timestamp::now();
        assert!(
            store
                .requeue_interrupted("s1", &first, reason, now)
                .expect("requeue")
        );
        assert_eq!(
            q.ids(0, 10).expect("ids"),
            vec![first.clone(), second.clone()]
        );
        let rec = store.task(&first).expect("task");
        assert_eq!(rec.status, TaskStatus::Queued);
        assert_eq!((rec.started_at, rec.ended_at), (None, None));
        assert_eq!(rec.aborted_runs.len(), round + 1);
        let run = &rec.aborted_runs[round];
        assert_eq!(run.started_at, Some(started));
        assert_eq!(run.reason, *reason);
    }
    assert!(n.held("s1").is_empty());
}

#[test]
fn wrong_key_types_on_the_fetch_path_are_named_and_nothing_changes() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.queue("good").enqueue("t", &()).expect("enqueue");
    redis::cmd("SET")
        .arg(n.queue("bad"))
        .arg("x")
        .exec(&mut c)
        .expect("set");
    let before = snapshot(&mut c);
    for block in [Duration::ZERO, Duration::from_millis(200)] {
        let err = store
            .fetch("s1", &queues(&["bad", "good"]), block)
            .expect_err("wrong type");
        assert!(
            matches!(&err, StoreError::WrongType { key, .. } if *key == n.queue("bad")),
            "{err}"
        );
        assert_eq!(snapshot(&mut c), before);
    }
}

/// Lists of past runs padded by a hostile producer (`[`, 20 KB of spaces,
/// `]`) once held Redis for seconds where the end scripts trimmed them (a
/// lazy pattern before `%s*$` backtracks over every space); Redis's slow
/// log, with a threshold a thousand times above a script's cost, stays
/// empty now, and the runs are still appended.
#[test]
fn padded_lists_of_runs_do_not_hold_redis() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let q = store.queue("default");
    let ended = q.enqueue("t", &1).expect("ended");
    let requeued = q.enqueue("t", &2).expect("requeued");
    let padded = format!("[{}]", " ".repeat(20_000));
    for (id, field) in [(&ended, "attempts"), (&requeued, "aborted_runs")] {
        redis::cmd("HSET")
            .arg(n.task_of(id))
            .arg(field)
            .arg(&padded)
            .query::<()>(&mut c)
            .expect("hset");
    }
    crate::support::watch_slow_calls(&mut c);
    let names = queues(&["default"]);
    let first = store
        .fetch("s1", &names, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(first.id, ended);
    let failed = Ending::Failed { error: "no" };
    assert!(
        store
            .conclude(&first.lease, failed, Timestamp::now())
            .expect("conclude")
    );
    let second = store
        .fetch("s1", &names, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(second.id, requeued);
    assert!(
        store
            .requeue_interrupted("s1", &requeued, "worker died", Timestamp::now())
            .expect("requeue")
    );
    assert_eq!(
        crate::support::slow_calls(&mut c),
        0,
        "a call took over a second"
    );
    let mut runs = |id: &str, f: &str| -> Value {
        let text: String = redis::cmd("HGET")
            .arg(n.task_of(id))
            .arg(f)
            .query(&mut c)
            .expect("hget");
        serde_json::from_str(&text).expect("a JSON list")
    };
    assert_eq!(runs(&ended, "attempts").as_array().map(Vec::len), Some(1));
    assert_eq!(
        runs(&requeued, "aborted_runs").as_array().map(Vec::len),
        Some(1)
    );
}

/// Libraries of ours the server holds (`FUNCTION LIST`).
fn our_libraries(c: &mut redis::Connection) -> usize {
    let libs: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("redis_tasks_*")
        .query(c)
        .expect("function list");
    libs.len()
}

/// A store of `server` as a new ACL user `user` with every command but
/// `denied` (as the documented ACL leaves out `FCALL`).
fn store_as_user(
    server: &RedisServer,
    c: &mut redis::Connection,
    user: &str,
    denied: &[&str],
) -> redis_tasks::Store {
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER")
        .arg(user)
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all");
    for command in denied {
        acl.arg(format!("-{command}"));
    }
    let _: () = acl.query(c).expect("acl setuser");
    let url = server
        .url()
        .replace("redis://", &format!("redis://{user}:pw@"));
    let config = redis_tasks::store::RedisConfig::from_url(&url, None)
        .expect("url")
        .with_partitions(crate::support::test_partitions());
    redis_tasks::Store::with_config(config, "redis_tasks").expect("store")
}

/// A busy slot's finish-and-fetch runs as the task path's Redis function:
/// loaded by the first call, loaded again when the server lost it (a
/// restart without persistence), and where the server will not run
/// functions for us (here an ACL user without `FCALL`), the same Lua runs
/// as a script.
#[test]
fn a_busy_slots_finish_and_fetch_runs_as_a_function_loaded_when_missing() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let slot = crate::support::registered_slot(&store, "s1", &["q"]);
    let q = store.queue("q");
    let ids: Vec<String> = (0..6)
        .map(|i| q.enqueue("t", &json!([i])).expect("enqueue"))
        .collect();
    let step = |store: &redis_tasks::Store, cur: &redis_tasks::store::Fetched| {
        let finished = Ending::Finished {
            result: Some("7"),
            children: &[],
        };
        let (done, next) = store
            .conclude_and_fetch(&cur.lease, finished, &slot.queues, Timestamp::now())
            .expect("finish and fetch");
        assert!(done);
        next.expect("the next task")
    };
    let mut cur = store
        .fetch(&slot.id, &slot.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(our_libraries(&mut c), 0);
    cur = step(&store, &cur);
    assert_eq!(our_libraries(&mut c), 1, "the first call loads the library");
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut c)
        .expect("function flush");
    cur = step(&store, &cur);
    assert_eq!(our_libraries(&mut c), 1, "loaded again once lost");

    let limited = store_as_user(&server, &mut c, "no_functions", &["fcall", "function"]);
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut c)
        .expect("function flush");
    cur = step(&limited, &cur);
    cur = step(&limited, &cur);
    assert_eq!(our_libraries(&mut c), 0, "ran as a script");
    assert_eq!(cur.id, ids[4]);
    for id in &ids[..4] {
        let record = store.task(id).expect("record");
        assert_eq!(record.status, TaskStatus::Finished, "{id}");
        assert_eq!(record.result, Some(json!(7)), "{id}");
    }
}

/// The attack: another user of the same Redis (one who may `FUNCTION
/// LOAD`, which `+@write` grants) puts its own code under the name of the
/// task path's function. A user that may call `FCALL` runs it (the trust
/// docs/redis.md states); a user without `FCALL`, as the documented ACL,
/// never does: its finish runs the script, called by its own SHA1.
#[test]
fn a_planted_function_runs_only_for_a_user_that_may_call_fcall() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let slot = crate::support::registered_slot(&store, "s1", &["q"]);
    let q = store.queue("q");
    for i in 0..3 {
        q.enqueue("t", &json!([i])).expect("enqueue");
    }
    let finish = |store: &redis_tasks::Store, cur: &redis_tasks::store::Fetched| {
        let finished = Ending::Finished {
            result: None,
            children: &[],
        };
        store
            .conclude_and_fetch(&cur.lease, finished, &slot.queues, Timestamp::now())
            .expect("finish and fetch")
    };
    let first = store
        .fetch(&slot.id, &slot.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    let (done, second) = finish(&store, &first);
    assert!(done);
    let second = second.expect("the next task");
    // The names of our library and function, as anyone may list them.
    let libs: Vec<Vec<redis::Value>> = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("redis_tasks_*")
        .query(&mut c)
        .expect("function list");
    let library = libs
        .into_iter()
        .flatten()
        .filter_map(|v| redis::from_redis_value::<String>(v).ok())
        .find(|s| s.starts_with("redis_tasks_"))
        .expect("our library");
    let function = format!(
        "redis_tasks_finish_fetch_{}",
        &library["redis_tasks_".len()..]
    );
    let planted = format!(
        "#!lua name={library}\nredis.register_function('{function}', function(keys, args) \
         redis.call('INCR', 'planted') return {{0, false}} end)"
    );
    let _: redis::Value = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&planted)
        .query(&mut c)
        .expect("plant");

    // Without FCALL: the script runs, the planted code does not.
    let limited = store_as_user(&server, &mut c, "no_fcall", &["fcall"]);
    let (done, third) = finish(&limited, &second);
    assert!(done, "the script recorded the end");
    let planted_runs: Option<i64> = redis::cmd("GET").arg("planted").query(&mut c).expect("get");
    assert_eq!(planted_runs, None);
    assert_eq!(
        store.task(&second.id).expect("record").status,
        TaskStatus::Finished
    );

    // With FCALL the planted code runs instead of ours.
    let third = third.expect("the third task");
    let (done, _) = finish(&store, &third);
    assert!(!done, "the planted function answered");
    let planted_runs: Option<i64> = redis::cmd("GET").arg("planted").query(&mut c).expect("get");
    assert_eq!(planted_runs, Some(1));
}
