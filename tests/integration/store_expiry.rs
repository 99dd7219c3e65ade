//! Task expiry in the store: an expiry is checked at enqueue, stored in
//! the record, and a fetch (the plain one, the blocking one, and the one
//! that follows a finish) never starts a task whose expiry has passed:
//! it ends `expired` in its registry, and the fetch goes on.
//!
//! Expiries in the past are written into records directly (as a raw
//! producer, or time, would), so no test waits for a clock.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redis_tasks::store::{EnqueueOptions, SlotInfo};
use redis_tasks::{StoreError, TaskStatus};
use serde_json::json;

use crate::support::{RedisServer, snapshot};

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn slot(id: &str) -> SlotInfo {
    SlotInfo {
        id: id.into(),
        description: "host.1/1".into(),
        queues: queues(&["q"]),
        supervisor: "sup".into(),
        host: "host".into(),
        pid: 1,
        started_at: Timestamp::now(),
    }
}

fn field(c: &mut redis::Connection, key: &str, f: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(f).query(c).expect("hget")
}

fn hset(c: &mut redis::Connection, key: &str, f: &str, v: &str) {
    redis::cmd("HSET")
        .arg(key)
        .arg(f)
        .arg(v)
        .query::<()>(c)
        .expect("hset");
}

fn an_hour() -> EnqueueOptions {
    EnqueueOptions::new().expires_in(Duration::from_secs(3600))
}

/// A minute ago, as the schema writes times.
fn a_minute_ago() -> String {
    (Timestamp::now() - SignedDuration::from_secs(60)).to_string()
}

#[test]
fn an_expired_task_is_never_started_and_the_fetch_goes_on() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let q = queues(&["q"]);
    let options = an_hour().unique("report:7");
    let old = store
        .queue("q")
        .enqueue_with("t", &json!(["old"]), &options)
        .expect("old");
    let fresh = store
        .queue("q")
        .enqueue_with("t", &json!(["fresh"]), &an_hour())
        .expect("fresh");
    let stored = field(&mut c, &n.task_of(&old), "expires_at").expect("expires_at");
    assert!(stored.parse::<Timestamp>().expect("a time") > Timestamp::now());
    hset(&mut c, &n.task_of(&old), "expires_at", &a_minute_ago());

    // On partitioned data the unique task lives with its key, in
    // another partition than the queue's: fetch until nothing is left.
    let mut started = Vec::new();
    while let Some(f) = store.fetch("s1", &q, Duration::ZERO).expect("fetch") {
        assert_eq!(n.held("s1"), vec![f.id.clone()]);
        assert!(
            store
                .finish(
                    &f.lease.slot,
                    &f.id,
                    TaskStatus::Finished,
                    None,
                    Timestamp::now()
                )
                .expect("finish")
        );
        started.push(f.id);
    }
    assert_eq!(started, vec![fresh.clone()]);

    let rec = store.task(&old).expect("record");
    assert_eq!(rec.status, TaskStatus::Expired);
    assert!(rec.started_at.is_none() && rec.ended_at.is_some());
    assert_eq!(field(&mut c, &n.task_of(&old), "worker"), None);
    assert_eq!(store.expired().ids(0, 10).expect("ids"), vec![old.clone()]);
    assert_eq!(store.expired().count().expect("count"), 1);
    assert_eq!(store.failed().count().expect("count"), 0);
    // Ended for good: waiters wake, the uniqueness key is free again.
    let ended = store
        .wait_for_end(&old, Duration::from_secs(5))
        .expect("wait")
        .expect("ended");
    assert_eq!(ended.status, TaskStatus::Expired);
    let again = store
        .queue("q")
        .enqueue_with_outcome("t", &json!(["again"]), &an_hour().unique("report:7"))
        .expect("again");
    assert!(again.is_new());

    // The fetch hands over what it expired, once.
    let noted = store.take_expired();
    assert_eq!(noted.len(), 1);
    assert_eq!(noted[0].id, old);
    assert_eq!(noted[0].queue, "q");
    let rec = noted[0].record.as_ref().expect("record");
    assert_eq!(rec.status, TaskStatus::Expired);
    assert_eq!(rec.args, json!(["old"]));
    assert!(store.take_expired().is_empty());
}

#[test]
fn a_task_before_its_expiry_runs_and_one_without_costs_nothing_new() {
    let server = RedisServer::start();
    let store = server.store();
    store.register_slot(&slot("s1")).expect("register");
    let q = queues(&["q"]);
    let id = store
        .queue("q")
        .enqueue_with("t", &1, &an_hour())
        .expect("enqueue");
    let f = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, id);
    let rec = f.record.expect("record");
    assert_eq!(rec.status, TaskStatus::Running);
    assert!(rec.expires_at.is_some_and(|at| at > Timestamp::now()));
    assert!(store.take_expired().is_empty());
    assert_eq!(store.expired().count().expect("count"), 0);
}

#[test]
fn bad_expiries_are_refused_with_nothing_written() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let before = snapshot(&mut c);
    let now = Timestamp::now();
    for (what, options) in [
        ("zero", EnqueueOptions::new().expires_in(Duration::ZERO)),
        (
            "past",
            EnqueueOptions::new().expires_at(now - SignedDuration::from_secs(5)),
        ),
        (
            "before the delay",
            EnqueueOptions::new()
                .delay(Duration::from_secs(600))
                .expires_in(Duration::from_secs(60)),
        ),
        (
            "unique, past",
            EnqueueOptions::new()
                .unique("k")
                .expires_at(now - SignedDuration::from_secs(5)),
        ),
    ] {
        match store.queue("q").enqueue_with("t", &1, &options) {
            Err(StoreError::InvalidOption { option, reason }) => {
                assert_eq!(option, "expires", "{what}");
                assert!(!reason.is_empty(), "{what}");
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn a_record_too_large_to_load_is_expired_all_the_same() {
    let server = RedisServer::start();
    let n = server.names();
    let producer = server.store();
    let store = server.store().with_max_args_bytes(64);
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let big = "x".repeat(4096);
    let id = producer
        .queue("q")
        .enqueue_with("t", &json!([big]), &an_hour())
        .expect("enqueue");
    hset(&mut c, &n.task_of(&id), "expires_at", &a_minute_ago());
    let fetched = store
        .fetch("s1", &queues(&["q"]), Duration::ZERO)
        .expect("fetch");
    assert!(fetched.is_none(), "{fetched:?}");
    assert_eq!(store.task(&id).expect("record").status, TaskStatus::Expired);
    let noted = store.take_expired();
    assert_eq!(noted.len(), 1);
    // Its large fields stay out of the reply, as for any record over them.
    assert!(
        matches!(&noted[0].record, Err(StoreError::Corrupt { field, .. }) if field == "args"),
        "{:?}",
        noted[0].record
    );
    assert!(n.held("s1").is_empty());
}

#[test]
fn the_blocking_fetch_and_the_finish_fetch_expire_too() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let q = queues(&["q"]);

    // A slot blocked on the queue: the id it takes has expired.
    let pushed = std::thread::scope(|s| {
        let waiting = s.spawn(|| store.fetch("s1", &q, Duration::from_secs(3)));
        // Written as a raw producer would, once the slot is (most likely)
        // waiting; were it not yet, its non-blocking look expires the
        // task instead, and the test holds all the same.
        std::thread::sleep(Duration::from_millis(300));
        let id = "raw-expired";
        let tk = n.task("q", id);
        redis::cmd("HSET")
            .arg(&tk)
            .arg(&[
                ("task", "t"),
                ("args", "[]"),
                ("status", "queued"),
                ("queue", "q"),
                ("enqueued_at", &Timestamp::now().to_string()),
                ("expires_at", &a_minute_ago()),
            ])
            .query::<()>(&mut c)
            .expect("hset");
        redis::cmd("RPUSH")
            .arg(n.queue("q"))
            .arg(id)
            .query::<()>(&mut c)
            .expect("rpush");
        let got = waiting.join().expect("thread").expect("fetch");
        assert!(got.is_none(), "{got:?}");
        id
    });
    assert_eq!(
        store.task(pushed).expect("record").status,
        TaskStatus::Expired
    );
    assert_eq!(store.take_expired().len(), 1);

    // A busy slot's finish takes the next task past an expired one.
    let first = store.queue("q").enqueue("t", &1).expect("first");
    let gone = store
        .queue("q")
        .enqueue_with("t", &2, &an_hour())
        .expect("gone");
    let next = store.queue("q").enqueue("t", &3).expect("next");
    hset(&mut c, &n.task_of(&gone), "expires_at", &a_minute_ago());
    let f = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, first);
    let (done, after) = store
        .finish_and_fetch(
            &f.lease,
            TaskStatus::Finished,
            None,
            None,
            &q,
            Timestamp::now(),
        )
        .expect("finish and fetch");
    assert!(done);
    assert_eq!(after.expect("next").id, next);
    assert_eq!(
        store.task(&gone).expect("record").status,
        TaskStatus::Expired
    );
    let noted: Vec<String> = store.take_expired().into_iter().map(|e| e.id).collect();
    assert_eq!(noted, vec![gone]);
    assert_eq!(store.expired().count().expect("count"), 2);
}

#[test]
fn a_delayed_task_whose_expiry_passed_while_it_waited_is_not_started() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let options = EnqueueOptions::new()
        .delay(Duration::from_secs(60))
        .expires_in(Duration::from_secs(120));
    let id = store
        .queue("q")
        .enqueue_with("t", &1, &options)
        .expect("enqueue");
    assert_eq!(
        store.task(&id).expect("record").status,
        TaskStatus::Scheduled
    );
    // Both times pass while it waits (no supervisor promoted it).
    hset(&mut c, &n.task_of(&id), "expires_at", &a_minute_ago());
    let later = Timestamp::now() + SignedDuration::from_secs(3600);
    assert_eq!(store.promote_due(later, 100).expect("promote").moved, 1);
    let fetched = store
        .fetch("s1", &queues(&["q"]), Duration::ZERO)
        .expect("fetch");
    assert!(fetched.is_none(), "{fetched:?}");
    assert_eq!(store.task(&id).expect("record").status, TaskStatus::Expired);
    assert_eq!(store.take_expired().len(), 1);
}

#[test]
fn an_expiry_written_with_an_offset_is_read_on_the_same_clock() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let q = queues(&["q"]);
    let zoned = |secs: i64, offset_secs: i32| {
        let offset = jiff::tz::Offset::from_seconds(offset_secs).expect("offset");
        (Timestamp::now() + SignedDuration::from_secs(secs))
            .display_with_offset(offset)
            .to_string()
    };
    // Ten minutes ago at UTC-3, ten minutes ahead at UTC+5:30: the first
    // has expired, the second has not.
    let gone = store
        .queue("q")
        .enqueue_with("t", &1, &an_hour())
        .expect("gone");
    let kept = store
        .queue("q")
        .enqueue_with("t", &2, &an_hour())
        .expect("kept");
    let past = zoned(-600, -3 * 3600);
    let future = zoned(600, 5 * 3600 + 1800);
    assert!(
        past.ends_with("-03:00") && future.ends_with("+05:30"),
        "{past} {future}"
    );
    hset(&mut c, &n.task_of(&gone), "expires_at", &past);
    hset(&mut c, &n.task_of(&kept), "expires_at", &future);
    let f = store
        .fetch("s1", &q, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    assert_eq!(f.id, kept);
    assert_eq!(
        store.task(&gone).expect("record").status,
        TaskStatus::Expired
    );
}

/// A hostile producer's expiry (a valid time followed by 20 KB of spaces
/// and a letter) once held Redis for seconds in the fetch script (the
/// time pattern backtracked over the spaces); now it is refused on sight.
/// Redis's own slow log is the witness, with a threshold a thousand times
/// above a fetch's cost.
#[test]
fn a_padded_expiry_does_not_hold_redis() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    store.register_slot(&slot("s1")).expect("register");
    let id = store
        .queue("q")
        .enqueue_with("t", &1, &an_hour())
        .expect("enqueue");
    let padded = format!("{}{}x", a_minute_ago(), " ".repeat(20_000));
    hset(&mut c, &n.task_of(&id), "expires_at", &padded);
    crate::support::watch_slow_calls(&mut c);
    let fetched = store.fetch("s1", &queues(&["q"]), Duration::ZERO);
    assert_eq!(
        crate::support::slow_calls(&mut c),
        0,
        "a call took over a second"
    );
    // Not a time: the task is fetched and its record reported unreadable
    // by the reader, not expired by a guess.
    let f = fetched.expect("fetch").expect("the task");
    assert_eq!(f.id, id);
    assert!(f.record.is_err(), "{:?}", f.record);
}
