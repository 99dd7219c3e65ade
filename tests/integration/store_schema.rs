//! The schema marker `P:schema`: data of the Python original (or of any
//! other format) under our prefix is refused with a clear error and never
//! changed; our own data without a marker is adopted.

use std::time::Duration;

use redis::Connection;
use redis_tasks::{StoreError, TaskStatus};

use crate::support::{RedisServer, snapshot, wait_until};

const P: &str = "redis_tasks";

/// Writes one queued task the way the Python original lays it out: a hash
/// with `func_name`/`kwargs`/`origin`, the id LPUSHed to its queue and to
/// the queue's unblock list, the queue in `P:queues`.
fn python_enqueue(conn: &mut Connection, id: &str, with_unblock: bool) {
    let task = format!("{P}:task:{id}");
    redis::cmd("HSET")
        .arg(&task)
        .arg(&[
            ("func_name", "app.tasks.send_report"),
            ("args", "[42]"),
            ("kwargs", "{}"),
            ("status", "queued"),
            ("origin", "default"),
            ("description", "app.tasks.send_report(42)"),
            ("enqueued_at", "2026-03-01T10:00:00.000000"),
            ("meta", "{}"),
            ("aborted_runs", "[]"),
        ])
        .exec(conn)
        .expect("HSET");
    redis::cmd("LPUSH")
        .arg(format!("{P}:queue:default"))
        .arg(id)
        .exec(conn)
        .expect("LPUSH");
    if with_unblock {
        redis::cmd("LPUSH")
            .arg(format!("{P}:unblock_queue:default"))
            .arg(id)
            .exec(conn)
            .expect("LPUSH");
    }
    redis::cmd("SADD")
        .arg(format!("{P}:queues"))
        .arg("default")
        .exec(conn)
        .expect("SADD");
}

fn marker(conn: &mut Connection) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("{P}:schema"))
        .query(conn)
        .expect("GET")
}

fn assert_foreign(err: StoreError) {
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::ForeignSchema { .. }),
        "unexpected error: {text}"
    );
    assert!(text.contains("RT_REDIS_PREFIX"), "{text}");
    assert!(text.contains("redis_prefix"), "{text}");
}

#[test]
fn store_schema_python_data_is_refused_and_left_unchanged() {
    let server = RedisServer::start();
    let mut conn = server.client();
    python_enqueue(&mut conn, "py-1", true);
    redis::cmd("ZADD")
        .arg(format!("{P}:finished_tasks"))
        .arg(1_700_000_000)
        .arg("py-0")
        .exec(&mut conn)
        .expect("ZADD");
    let before = snapshot(&mut conn);
    let store = server.store();

    assert_foreign(store.check_schema().expect_err("check"));
    assert_foreign(store.claim_schema().expect_err("claim"));
    assert_foreign(
        store
            .queue("default")
            .enqueue("send_report", &[1])
            .expect_err("enqueue"),
    );
    assert_foreign(store.queue("default").empty().expect_err("empty"));
    let slot = redis_tasks::store::SlotInfo {
        id: "s1".into(),
        description: "box.1/1".into(),
        queues: vec!["default".into()],
        supervisor: "sup".into(),
        host: "box".into(),
        pid: 1,
        started_at: jiff::Timestamp::now(),
    };
    assert_foreign(store.register_slot(&slot).expect_err("register"));
    assert_foreign(
        store
            .set_supervisor_id("box", "main", "sup")
            .expect_err("mapping"),
    );
    assert_eq!(snapshot(&mut conn), before, "nothing may change");
}

#[test]
fn store_schema_each_sign_of_the_original_is_enough() {
    // Only the finished registry of the original.
    let server = RedisServer::start();
    let mut conn = server.client();
    redis::cmd("ZADD")
        .arg(format!("{P}:failed_tasks"))
        .arg(1)
        .arg("x")
        .exec(&mut conn)
        .expect("ZADD");
    assert_foreign(server.store().claim_schema().expect_err("failed_tasks"));

    // Only a queued record in the original's shape (no unblock list).
    let server = RedisServer::start();
    let mut conn = server.client();
    python_enqueue(&mut conn, "py-2", false);
    assert_foreign(server.store().claim_schema().expect_err("record"));

    // Only a live worker of the original.
    let server = RedisServer::start();
    let mut conn = server.client();
    redis::cmd("ZADD")
        .arg(format!("{P}:workers"))
        .arg(1)
        .arg("w1")
        .exec(&mut conn)
        .expect("ZADD");
    redis::cmd("HSET")
        .arg(format!("{P}:worker:w1"))
        .arg(&[
            ("state", "idle"),
            ("description", "Worker w1"),
            ("queues", "default"),
        ])
        .exec(&mut conn)
        .expect("HSET");
    assert_foreign(server.store().claim_schema().expect_err("worker"));
    assert_eq!(marker(&mut conn), None);
}

#[test]
fn store_schema_a_marker_of_another_format_is_refused() {
    let server = RedisServer::start();
    let mut conn = server.client();
    redis::cmd("SET")
        .arg(format!("{P}:schema"))
        .arg("redis-tasks-rs 2")
        .exec(&mut conn)
        .expect("SET");
    let before = snapshot(&mut conn);
    let store = server.store();
    let err = store.claim_schema().expect_err("claim");
    assert!(err.to_string().contains("redis-tasks-rs 2"), "{err}");
    assert_foreign(err);
    assert_foreign(store.queue("q").enqueue("t", &()).expect_err("enqueue"));
    assert_eq!(snapshot(&mut conn), before);
}

#[test]
fn store_schema_first_write_marks_the_prefix() {
    let server = RedisServer::start();
    let mut conn = server.client();
    let store = server.store();
    store.check_schema().expect("an empty prefix is fine");
    assert_eq!(marker(&mut conn), None, "a check writes nothing");
    store.queue("q").enqueue("t", &()).expect("enqueue");
    assert_eq!(
        marker(&mut conn).as_deref(),
        Some(redis_tasks::store::SCHEMA_MARKER)
    );
    store.claim_schema().expect("ours");
    // Another prefix is another world.
    let other = redis_tasks::Store::open(&server.url(), "other").expect("open");
    other.check_schema().expect("other prefix");
}

#[test]
fn store_schema_our_data_without_a_marker_is_adopted() {
    let server = RedisServer::start();
    let mut conn = server.client();
    // A task enqueued with the raw commands of docs/redis-schema.md (or by
    // a version of this code that wrote no marker).
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(format!("{P}:task:t1"))
        .arg(&[
            ("task", "send_report"),
            ("args", "[1]"),
            ("status", "queued"),
            ("queue", "default"),
            ("enqueued_at", "2026-03-01T10:00:00Z"),
        ])
        .cmd("RPUSH")
        .arg(format!("{P}:queue:default"))
        .arg("t1")
        .cmd("SADD")
        .arg(format!("{P}:queues"))
        .arg("default")
        .exec(&mut conn)
        .expect("raw enqueue");
    let store = server.store();
    store.claim_schema().expect("adopted");
    assert_eq!(
        marker(&mut conn).as_deref(),
        Some(redis_tasks::store::SCHEMA_MARKER)
    );
}

#[test]
fn store_schema_fetch_leaves_a_record_it_did_not_write_alone() {
    let server = RedisServer::start();
    let mut conn = server.client();
    let store = server.store();
    store.claim_schema().expect("claim an empty prefix");
    // The original enqueues into the same queue later (it ignores the marker).
    python_enqueue(&mut conn, "py-3", true);
    let before = snapshot(&mut conn);

    let err = store
        .fetch("s1", &["default".to_owned()], Duration::ZERO)
        .expect_err("no fetch of a foreign record");
    assert!(
        matches!(&err, StoreError::ForeignTask { id, queue, .. } if id == "py-3" && queue == "default"),
        "{err}"
    );
    assert!(err.to_string().contains("RT_REDIS_PREFIX"), "{err}");
    assert_eq!(
        snapshot(&mut conn),
        before,
        "record, queue and registries unchanged"
    );
    let failed: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{P}:failed"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("ZRANGE");
    assert!(failed.is_empty());

    // Our own tasks behind it still run once it is gone.
    redis::cmd("LREM")
        .arg(format!("{P}:queue:default"))
        .arg(0)
        .arg("py-3")
        .exec(&mut conn)
        .expect("LREM");
    let id = store.queue("default").enqueue("t", &()).expect("enqueue");
    let fetched = store
        .fetch("s1", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(fetched.id, id);
    assert_eq!(fetched.record.expect("record").status, TaskStatus::Running);
}

#[test]
fn store_schema_a_blocking_fetch_leaves_a_record_it_did_not_write_alone() {
    let server = RedisServer::start();
    let mut conn = server.client();
    let store = server.store();
    store.claim_schema().expect("claim an empty prefix");
    let waiting = std::thread::spawn(move || {
        store.fetch("s1", &["default".to_owned()], Duration::from_secs(20))
    });
    // Once the slot blocks on the empty queue, the original enqueues.
    wait_until("the fetch to block", Duration::from_secs(10), || {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut conn)
            .expect("CLIENT LIST");
        clients.contains("cmd=blmove")
    });
    python_enqueue(&mut conn, "py-4", false);
    let err = waiting
        .join()
        .expect("fetch thread")
        .expect_err("no fetch of a foreign record");
    assert!(
        matches!(&err, StoreError::ForeignTask { id, .. } if id == "py-4"),
        "{err}"
    );
    let queue: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{P}:queue:default"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("LRANGE");
    assert_eq!(queue, ["py-4"]);
    let slot_list: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{P}:worker:s1:task"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("LRANGE");
    assert!(slot_list.is_empty());
    let status: Option<String> = redis::cmd("HGET")
        .arg(format!("{P}:task:py-4"))
        .arg("status")
        .query(&mut conn)
        .expect("HGET");
    assert_eq!(status.as_deref(), Some("queued"));
}

#[test]
fn store_schema_a_supervisor_and_admin_commands_refuse_the_originals_prefix() {
    let demo = crate::e2e::Demo::new();
    let mut conn = demo.redis.client();
    python_enqueue(&mut conn, "py-5", true);
    let before = snapshot(&mut conn);

    let mut cmd = demo.cmd();
    cmd.args(["worker", "--burst", "--concurrency", "1"])
        .timeout(Duration::from_secs(60));
    let out = cmd.fails();
    assert!(out.stderr.contains("RT_REDIS_PREFIX"), "{}", out.stderr);
    let out = crate::support::Cmd::admin(&demo.redis.url())
        .arg("info")
        .fails();
    assert!(out.stderr.contains("RT_REDIS_PREFIX"), "{}", out.stderr);
    assert_eq!(
        snapshot(&mut conn),
        before,
        "the original's task is untouched"
    );
}
