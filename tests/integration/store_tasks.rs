//! Reading task records (unknown, half-written, corrupt, wrong key type),
//! canceling, and meta updates.

use redis_tasks::{StoreError, TaskStatus};
use serde_json::json;

use crate::support::{Names, RedisServer, snapshot};

/// Writes a hash field by field, as a buggy producer might.
/// (On partition 0, where a task read by id alone is looked for last.)
fn raw_hash(c: &mut redis::Connection, n: &Names, id: &str, fields: &[(&str, &str)]) {
    redis::cmd("HSET")
        .arg(n.first().task(id))
        .arg(fields)
        .exec(c)
        .expect("hset");
}

const GOOD: &[(&str, &str)] = &[
    ("task", "t"),
    ("args", "[]"),
    ("status", "queued"),
    ("queue", "default"),
    ("enqueued_at", "2026-01-01T00:00:00Z"),
];

#[test]
fn an_unknown_id_is_not_found() {
    let server = RedisServer::start();
    let store = server.store();
    let err = store.task("nope").expect_err("unknown id");
    assert!(matches!(&err, StoreError::NotFound { id } if id == "nope"));
    assert_eq!(err.to_string(), "task nope not found");
}

#[test]
fn half_written_and_corrupt_records_name_the_field() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("no-task", "task", None),
        ("no-args", "args", None),
        ("no-status", "status", None),
        ("no-queue", "queue", None),
        ("no-enqueued", "enqueued_at", None),
        ("bad-args", "args", Some("{not json")),
        ("bad-status", "status", Some("done")),
        ("bad-time", "enqueued_at", Some("last tuesday")),
        ("bad-start", "started_at", Some("12:00")),
        ("bad-meta", "meta", Some("[1, 2]")),
        ("bad-runs", "aborted_runs", Some("{\"a\": 1}")),
    ];
    for (id, field, value) in cases {
        let mut fields: Vec<(&str, &str)> =
            GOOD.iter().copied().filter(|(k, _)| k != field).collect();
        if let Some(v) = value {
            fields.push((field, v));
        }
        raw_hash(&mut c, &n, id, &fields);
    }
    let before = snapshot(&mut c);
    for (id, field, _) in cases {
        match store.task(id) {
            Err(StoreError::Corrupt {
                id: got, field: f, ..
            }) => {
                assert_eq!((got.as_str(), f.as_str()), (*id, *field));
            }
            other => panic!("{id}: expected Corrupt, got {other:?}"),
        }
    }
    // The batch read reports each record in its place.
    raw_hash(&mut c, &n, "good", GOOD);
    let ids: Vec<String> = ["good", "missing", "bad-args"].map(String::from).to_vec();
    let got = store.tasks(&ids).expect("tasks");
    assert_eq!(got[0].as_ref().expect("good").task, "t");
    assert!(matches!(got[1], Err(StoreError::NotFound { .. })));
    assert!(matches!(&got[2], Err(StoreError::Corrupt { field, .. }) if field == "args"));
    let err = store.task("bad-status").expect_err("corrupt");
    assert_eq!(
        err.to_string(),
        "task bad-status has a corrupt record: field \"status\": unknown task status \"done\""
    );
    redis::cmd("DEL")
        .arg(n.first().task("good"))
        .exec(&mut c)
        .expect("del");
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn a_task_key_of_the_wrong_type_is_named() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    redis::cmd("RPUSH")
        .arg(n.first().task("odd"))
        .arg("x")
        .exec(&mut c)
        .expect("rpush");
    let before = snapshot(&mut c);
    let expect_wrong = |err: StoreError| match err {
        StoreError::WrongType {
            key,
            expected,
            found,
        } => {
            assert_eq!(key, n.first().task("odd"));
            assert_eq!((expected.as_str(), found.as_str()), ("hash", "list"));
        }
        other => panic!("expected WrongType, got {other:?}"),
    };
    expect_wrong(store.task("odd").expect_err("task"));
    let got = store.tasks(&["odd".to_owned()]).expect("tasks");
    let Some(Err(err)) = got.into_iter().next() else {
        panic!("expected an error in place")
    };
    expect_wrong(err);
    expect_wrong(store.cancel("odd").expect_err("cancel"));
    let mut meta = serde_json::Map::new();
    meta.insert("k".into(), json!(1));
    expect_wrong(store.update_meta("odd", &meta).expect_err("meta"));
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn cancel_removes_a_queued_task_and_lets_it_expire() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store().with_registry_ttl(1000);
    let q = store.queue("default");
    let a = q.enqueue("t", &1).expect("a");
    let b = q.enqueue("t", &2).expect("b");
    store.cancel(&a).expect("cancel");
    assert_eq!(q.ids(0, 10).expect("ids"), vec![b.clone()]);
    let rec = store.task(&a).expect("still readable");
    assert_eq!(rec.status, TaskStatus::Canceled);
    assert!(rec.ended_at.is_some());
    let mut c = server.client();
    let ttl: i64 = redis::cmd("TTL")
        .arg(n.task_of(&a))
        .query(&mut c)
        .expect("ttl");
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    // b untouched, no expiry.
    let ttl: i64 = redis::cmd("TTL")
        .arg(n.task_of(&b))
        .query(&mut c)
        .expect("ttl");
    assert_eq!(ttl, -1);
    // A second cancel sees the new status.
    assert!(matches!(
        store.cancel(&a),
        Err(StoreError::NotQueued {
            status: TaskStatus::Canceled,
            ..
        })
    ));
}

#[test]
fn cancel_refuses_anything_but_a_waiting_task_and_changes_nothing() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let q = store.queue("default");
    let waiting = q.enqueue("t", &()).expect("enqueue");
    for (id, status) in [("r", "running"), ("f", "finished"), ("x", "failed")] {
        let fields: Vec<(&str, &str)> = GOOD
            .iter()
            .copied()
            .map(|(k, v)| if k == "status" { (k, status) } else { (k, v) })
            .collect();
        raw_hash(&mut c, &n, id, &fields);
    }
    // Queued, but already moved into a slot's list (a blocking fetch's
    // first half).
    raw_hash(&mut c, &n, "taken", GOOD);
    redis::cmd("RPUSH")
        .arg(n.first().worker_task("s1"))
        .arg("taken")
        .exec(&mut c)
        .expect("rpush");
    raw_hash(&mut c, &n, "weird", &[("task", "t"), ("status", "done")]);
    let before = snapshot(&mut c);
    for (id, status) in [
        ("r", TaskStatus::Running),
        ("f", TaskStatus::Finished),
        ("x", TaskStatus::Failed),
    ] {
        let err = store.cancel(id).expect_err("not queued");
        assert!(
            matches!(&err, StoreError::NotQueued { status: s, .. } if *s == status),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("task {id} cannot be canceled: it is {status}, not queued")
        );
    }
    assert!(matches!(
        store.cancel("taken"),
        Err(StoreError::Taken { .. })
    ));
    assert!(matches!(
        store.cancel("ghost"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.cancel("weird"),
        Err(StoreError::Corrupt { field, .. }) if field == "status"
    ));
    assert_eq!(snapshot(&mut c), before);
    assert_eq!(q.ids(0, 10).expect("ids"), vec![waiting]);
}

#[test]
fn update_meta_merges_keys() {
    let server = RedisServer::start();
    let store = server.store();
    let id = store.queue("default").enqueue("t", &()).expect("enqueue");
    let mut m = serde_json::Map::new();
    m.insert("progress".into(), json!(10));
    m.insert("stage".into(), json!("load"));
    store.update_meta(&id, &m).expect("meta");
    let mut m2 = serde_json::Map::new();
    m2.insert("progress".into(), json!(50));
    m2.insert("list".into(), json!([]));
    store.update_meta(&id, &m2).expect("meta again");
    let rec = store.task(&id).expect("task");
    assert_eq!(
        serde_json::Value::Object(rec.meta),
        json!({"progress": 50, "stage": "load", "list": []})
    );
    let mut c = server.client();
    let before = snapshot(&mut c);
    assert!(matches!(
        store.update_meta("ghost", &m),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(snapshot(&mut c), before);
}
