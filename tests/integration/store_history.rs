//! The per-minute history of endings (`P:history:<q>:<hour>`) at the
//! store level: each kind of ending counted in its minute, run time and
//! queue wait percentiles within the buckets' resolution, the keys'
//! expiry, queues merged, and hostile record fields that neither break an
//! ending nor the read.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redis_tasks::protocol::TaskStatus;
use redis_tasks::store::{Ending, MinuteStats, SlotInfo};
use redis_tasks::{CancelResult, Store};
use serde_json::json;

use crate::support::RedisServer;

fn slot(store: &Store, name: &str, queue: &str) -> SlotInfo {
    crate::support::registered_slot(store, name, &[queue])
}

/// Every minute of `queue` (all queues for `None`) within an hour of now,
/// added up.
fn total(store: &Store, queue: Option<&str>) -> MinuteStats {
    let hour = SignedDuration::from_hours(1);
    let minutes = store
        .history(queue, Timestamp::now() - hour, Timestamp::now() + hour)
        .expect("history");
    let mut sum = MinuteStats::default();
    for m in &minutes {
        sum.merge(m);
    }
    sum
}

/// Fetches the head of `queue` into slot `s` and returns its id.
fn take(store: &Store, s: &SlotInfo) -> String {
    store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task")
        .id
}

fn secs(d: Option<Duration>) -> f64 {
    d.expect("a percentile").as_secs_f64()
}

#[test]
fn each_kind_of_ending_is_counted_in_its_minute() {
    let server = RedisServer::start();
    let store = server.store();
    let q = store.queue("hist");
    let s = slot(&store, "s1", "hist");
    for _ in 0..3 {
        q.enqueue("send", &json!([])).expect("enqueue");
    }
    let done = take(&store, &s);
    let end = Timestamp::now();
    assert!(
        store
            .finish(&s.id, &done, TaskStatus::Finished, None, end)
            .expect("finish")
    );
    let failed = take(&store, &s);
    assert!(
        store
            .finish(&s.id, &failed, TaskStatus::Failed, Some("boom"), end)
            .expect("finish")
    );
    let retried = take(&store, &s);
    let at = end + SignedDuration::from_secs(600);
    assert!(
        store
            .schedule_retry(&s.id, &retried, "again", at, end)
            .expect("retry")
    );
    // Canceled: queued, scheduled, and running.
    let queued = q.enqueue("send", &json!([])).expect("enqueue");
    assert_eq!(
        store.cancel_task(&queued).expect("cancel"),
        CancelResult::Canceled
    );
    let later = q
        .enqueue_in(Duration::from_secs(600), "send", &json!([]))
        .expect("enqueue_in");
    assert_eq!(
        store.cancel_task(&later).expect("cancel"),
        CancelResult::Canceled
    );
    q.enqueue("send", &json!([])).expect("enqueue");
    let running = take(&store, &s);
    assert!(
        store
            .finish_canceled(&s.id, &running, "stop", end)
            .expect("finish")
    );

    let sum = total(&store, Some("hist"));
    assert_eq!(
        (sum.finished, sum.failed, sum.retried, sum.canceled),
        (1, 1, 1, 3)
    );
    // The two cancels before a start have no run time or wait.
    assert_eq!((sum.run.count(), sum.wait.count()), (4, 4));
    // All in the minute of `end` (the ending scripts' clock, as given).
    let minutes = store.history(Some("hist"), end, end).expect("history");
    assert_eq!(minutes.len(), 1);
    assert_eq!(minutes[0].minute, end.as_second().div_euclid(60));
    assert_eq!(minutes[0].finished, 1);
    // Nothing for another queue, nor before the endings.
    assert_eq!(total(&store, Some("other")).total(), 0);
    let before = end - SignedDuration::from_mins(5);
    assert!(
        store
            .history(Some("hist"), before - SignedDuration::from_mins(5), before)
            .expect("history")
            .is_empty()
    );
}

#[test]
fn run_time_and_wait_percentiles_are_within_the_bucket_resolution() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("timed");
    let s = slot(&store, "s1", "timed");
    let mut conn = server.client();
    // 19 tasks that waited about 60 s and ran about 3 s, one that waited
    // about 1 h and ran about 10 min: p50 is the former, p95 the latter.
    for i in 0..20 {
        let id = q.enqueue("send", &json!([i])).expect("enqueue");
        let (wait, run) = if i == 19 { (3600, 600) } else { (60, 3) };
        let enqueued = Timestamp::now() - SignedDuration::from_secs(wait);
        let _: () = redis::cmd("HSET")
            .arg(n.task("timed", &id))
            .arg("enqueued_at")
            .arg(enqueued.to_string())
            .query(&mut conn)
            .expect("hset");
        assert_eq!(take(&store, &s), id);
        let end = Timestamp::now() + SignedDuration::from_secs(run);
        assert!(
            store
                .finish(&s.id, &id, TaskStatus::Finished, None, end)
                .expect("finish")
        );
    }
    let sum = total(&store, Some("timed"));
    assert_eq!(sum.finished, 20);
    let root2 = 2f64.sqrt();
    let within = |got: f64, want: f64| got > want / root2 && got < want * root2;
    let (p50_run, p95_run) = (
        secs(sum.run.percentile(0.5)),
        secs(sum.run.percentile(0.96)),
    );
    assert!(within(p50_run, 3.0), "p50 run {p50_run}");
    assert!(within(p95_run, 600.0), "p96 run {p95_run}");
    let (p50_wait, p95_wait) = (
        secs(sum.wait.percentile(0.5)),
        secs(sum.wait.percentile(0.96)),
    );
    assert!(within(p50_wait, 60.0), "p50 wait {p50_wait}");
    assert!(within(p95_wait, 3600.0), "p96 wait {p95_wait}");
}

#[test]
fn a_retried_run_waits_from_its_due_time_not_its_enqueue() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("again");
    let s = slot(&store, "s1", "again");
    let mut conn = server.client();
    let id = q.enqueue("send", &json!([])).expect("enqueue");
    assert_eq!(take(&store, &s), id);
    let due = Timestamp::now() + SignedDuration::from_millis(100);
    assert!(
        store
            .schedule_retry(&s.id, &id, "boom", due, Timestamp::now())
            .expect("retry")
    );
    // Enqueued long ago: only the time since the retry was due counts.
    let _: () = redis::cmd("HSET")
        .arg(n.task("again", &id))
        .arg("enqueued_at")
        .arg((Timestamp::now() - SignedDuration::from_hours(5)).to_string())
        .query(&mut conn)
        .expect("hset");
    let promote_at = due + SignedDuration::from_millis(1);
    assert_eq!(store.promote_due(promote_at, 10).expect("promote").moved, 1);
    assert_eq!(take(&store, &s), id);
    assert!(
        store
            .finish(&s.id, &id, TaskStatus::Finished, None, Timestamp::now())
            .expect("finish")
    );
    let sum = total(&store, Some("again"));
    assert_eq!((sum.finished, sum.retried), (1, 1));
    // The largest wait of the two runs: well under the 5 hours.
    let max_wait = secs(sum.wait.percentile(1.0));
    assert!(max_wait < 600.0, "wait {max_wait}");
}

#[test]
fn the_hour_key_expires_a_little_after_72_hours() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("ttl");
    let s = slot(&store, "s1", "ttl");
    q.enqueue("send", &json!([])).expect("enqueue");
    let id = take(&store, &s);
    let end = Timestamp::now();
    assert!(
        store
            .finish(&s.id, &id, TaskStatus::Finished, None, end)
            .expect("finish")
    );
    let hour = end.as_second().div_euclid(3600);
    let key = n.home("ttl").history("ttl", hour);
    let mut conn = server.client();
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut conn).expect("ttl");
    assert!(
        (72 * 3600..=76 * 3600).contains(&ttl),
        "ttl of {key}: {ttl}"
    );
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query(&mut conn)
        .expect("hkeys");
    let minute = end.as_second().div_euclid(60) % 60;
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert!(fields[0].starts_with(&format!("{minute}:f:")), "{fields:?}");
}

#[test]
fn hostile_record_fields_and_keys_break_neither_an_ending_nor_the_read() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("bad");
    let s = slot(&store, "s1", "bad");
    let mut conn = server.client();
    for _ in 0..3 {
        q.enqueue("send", &json!([])).expect("enqueue");
    }
    let id = take(&store, &s);
    let _: () = redis::cmd("HSET")
        .arg(n.task("bad", &id))
        .arg("started_at")
        .arg("yesterday")
        .arg("enqueued_at")
        .arg("-5")
        .arg("attempts")
        .arg(r#"[{"next_attempt_at":"\u0000zzz"}]"#)
        .query(&mut conn)
        .expect("hset");
    let end = Timestamp::now();
    assert!(
        store
            .finish(&s.id, &id, TaskStatus::Finished, None, end)
            .expect("finish")
    );
    // The record's reader reports the bad times; the status was written.
    let status: String = redis::cmd("HGET")
        .arg(n.task("bad", &id))
        .arg("status")
        .query(&mut conn)
        .expect("hget");
    assert_eq!(status, "finished");
    let sum = total(&store, Some("bad"));
    assert_eq!(sum.finished, 1);
    // Times that do not parse land in bucket 0.
    assert_eq!(
        sum.run.percentile(1.0),
        Some(redis_tasks::store::bucket_middle(0))
    );

    // Long hostile times and attempts cost linear time, not quadratic (a
    // pattern that backtracks over 20 KB of spaces holds Redis for seconds).
    let id = take(&store, &s);
    let long_time = format!("2026-01-01T00:00:00{}x", " ".repeat(20_000));
    let many_dues = format!("[{}]", r#"{"next_attempt_at":"#.repeat(10_000));
    let _: () = redis::cmd("HSET")
        .arg(n.task("bad", &id))
        .arg("enqueued_at")
        .arg(&long_time)
        .arg("attempts")
        .arg(&many_dues)
        .query(&mut conn)
        .expect("hset");
    let began = std::time::Instant::now();
    assert!(
        store
            .finish(&s.id, &id, TaskStatus::Finished, None, end)
            .expect("finish")
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(total(&store, Some("bad")).finished, 2);

    // Garbage in the hour's key: a count is lost, the ending is not.
    let key = n
        .home("bad")
        .history("bad", end.as_second().div_euclid(3600));
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("7:f:1:1")
        .arg("many")
        .arg("zz")
        .arg("1")
        .query(&mut conn)
        .expect("hset");
    let id = take(&store, &s);
    assert!(
        store
            .finish(&s.id, &id, TaskStatus::Finished, None, end)
            .expect("finish")
    );
    // The three endings counted, the foreign fields skipped.
    assert_eq!(total(&store, Some("bad")).total(), 3);
    // A key of another type: the ending still goes through.
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).expect("del");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query(&mut conn)
        .expect("set");
    q.enqueue("send", &json!([])).expect("enqueue");
    let id = take(&store, &s);
    assert!(
        store
            .finish(&s.id, &id, TaskStatus::Finished, None, end)
            .expect("finish")
    );
    assert_eq!(
        store.task(&id).expect("record").status,
        TaskStatus::Finished
    );
    assert_eq!(total(&store, Some("bad")).total(), 0);
}

#[test]
fn the_overview_adds_up_every_queue() {
    let server = RedisServer::start();
    let store = server.store();
    let names = ["alpha", "beta", "gamma"];
    for (i, &name) in names.iter().enumerate() {
        let s = slot(&store, &format!("s-{name}"), name);
        for _ in 0..=i {
            store
                .queue(name)
                .enqueue("send", &json!([]))
                .expect("enqueue");
            let id = take(&store, &s);
            assert!(
                store
                    .finish(&s.id, &id, TaskStatus::Failed, Some("x"), Timestamp::now())
                    .expect("finish")
            );
        }
    }
    for (i, &name) in names.iter().enumerate() {
        assert_eq!(total(&store, Some(name)).failed, i as u64 + 1);
    }
    assert_eq!(total(&store, None).failed, 6);
}

/// A busy slot's finish and fetch counts from the times its lease carries
/// (read from the record at the fetch, no time parsed in Lua): the same
/// buckets as the plain finish, a retried run's wait from its due time.
#[test]
fn a_busy_slots_finish_and_fetch_counts_from_its_lease() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("busy");
    let s = slot(&store, "s1", "busy");
    let mut conn = server.client();
    let mut enqueued_ago = |id: &str, secs: i64| {
        let _: () = redis::cmd("HSET")
            .arg(n.task("busy", id))
            .arg("enqueued_at")
            .arg((Timestamp::now() - SignedDuration::from_secs(secs)).to_string())
            .query(&mut conn)
            .expect("hset");
    };
    let retried = q.enqueue("send", &json!([1])).expect("enqueue");
    assert_eq!(take(&store, &s), retried);
    let due = Timestamp::now() + SignedDuration::from_millis(100);
    assert!(
        store
            .schedule_retry(&s.id, &retried, "boom", due, Timestamp::now())
            .expect("retry")
    );
    enqueued_ago(&retried, 5 * 3600);
    let waited = q.enqueue("send", &json!([2])).expect("enqueue");
    enqueued_ago(&waited, 60);
    let promote_at = due + SignedDuration::from_millis(1);
    assert_eq!(store.promote_due(promote_at, 10).expect("promote").moved, 1);

    let finished = || Ending::Finished {
        result: None,
        children: &[],
    };
    let first = store
        .fetch(&s.id, &s.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(first.id, waited);
    let end = Timestamp::now() + SignedDuration::from_secs(3);
    let (done, next) = store
        .conclude_and_fetch(&first.lease, finished(), &s.queues, end)
        .expect("finish and fetch");
    assert!(done);
    let next = next.expect("the retried task, in the same call");
    assert_eq!(next.id, retried);
    let end = Timestamp::now() + SignedDuration::from_secs(3);
    let (done, none) = store
        .conclude_and_fetch(&next.lease, finished(), &s.queues, end)
        .expect("finish and fetch");
    assert!(done && none.is_none());

    let sum = total(&store, Some("busy"));
    assert_eq!((sum.finished, sum.retried), (2, 1));
    let root2 = 2f64.sqrt();
    let within = |got: f64, want: f64| got > want / root2 && got < want * root2;
    // The first run took 3 s; the second started at the first's end (the
    // same call stamped it) and took milliseconds.
    let run = secs(sum.run.percentile(1.0));
    assert!(within(run, 3.0), "run {run}");
    // The longest wait is the first task's minute, not the retried
    // task's five hours since its enqueue.
    let wait = secs(sum.wait.percentile(1.0));
    assert!(within(wait, 60.0), "wait {wait}");
}
