//! The producer API against a real Redis: what enqueue writes, batches, the
//! size limit, listing, emptying and deleting queues, and the raw-command
//! enqueue that `docs/redis-schema.md` documents for other languages.

use std::collections::HashMap;

use redis_tasks::{StoreError, TaskStatus};
use serde_json::json;

use crate::support::{RedisServer, snapshot};

#[test]
fn enqueue_writes_the_documented_keys() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let id = store
        .queue("mail")
        .enqueue("send_report", &json!([42, {"to": "x"}]))
        .expect("enqueue");
    assert!(uuid_like(&id), "id {id} is not a hyphenated uuid");

    let mut c = server.client();
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(n.task_of(&id))
        .query(&mut c)
        .expect("hgetall");
    assert_eq!(hash["task"], "send_report");
    assert_eq!(hash["args"], r#"[42,{"to":"x"}]"#);
    assert_eq!(hash["status"], "queued");
    assert_eq!(hash["queue"], "mail");
    assert_eq!(hash["description"], r#"send_report(42, {"to":"x"})"#);
    let enqueued: jiff::Timestamp = hash["enqueued_at"].parse().expect("rfc 3339 time");
    assert!(hash["enqueued_at"].ends_with('Z'));
    assert!(jiff::Timestamp::now().duration_since(enqueued).as_secs() < 60);
    let list: Vec<String> = redis::cmd("LRANGE")
        .arg(n.queue("mail"))
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .expect("lrange");
    assert_eq!(list, vec![id.clone()]);
    let queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg(n.home("mail").queues())
        .query(&mut c)
        .expect("smembers");
    assert_eq!(queues, vec!["mail"]);

    let rec = store.task(&id).expect("read back");
    assert_eq!(rec.id, id);
    assert_eq!(rec.task, "send_report");
    assert_eq!(rec.args, json!([42, {"to": "x"}]));
    assert_eq!(rec.status, TaskStatus::Queued);
    assert_eq!(rec.queue, "mail");
    assert_eq!(rec.enqueued_at, enqueued);
    assert_eq!(
        (rec.started_at, rec.ended_at, rec.error),
        (None, None, None)
    );
    assert!(rec.meta.is_empty() && rec.aborted_runs.is_empty());
}

#[test]
fn enqueue_accepts_any_serialisable_args() {
    #[derive(serde::Serialize)]
    struct Report {
        user: u32,
        to: &'static str,
    }
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let q = store.queue("default");
    let a = q
        .enqueue("report", &Report { user: 7, to: "x" })
        .expect("struct");
    let b = q.enqueue("noop", &()).expect("unit");
    let c = q.enqueue("one", &5).expect("number");
    // The stored JSON keeps the struct's field order; the description lists
    // keyword arguments sorted by name.
    let mut c2 = server.client();
    let args: String = redis::cmd("HGET")
        .arg(n.task_of(&a))
        .arg("args")
        .query(&mut c2)
        .expect("hget");
    assert_eq!(args, r#"{"user":7,"to":"x"}"#);
    assert_eq!(
        store.task(&a).expect("a").description,
        r#"report(to="x", user=7)"#
    );
    assert_eq!(store.task(&b).expect("b").description, "noop()");
    assert_eq!(store.task(&c).expect("c").args, json!(5));
    assert_eq!(q.ids(0, 10).expect("ids"), vec![a, b, c]);
}

#[test]
fn enqueue_many_keeps_order_across_batches() {
    let server = RedisServer::start();
    let store = server.store();
    let q = store.queue("bulk");
    let calls: Vec<(String, serde_json::Value)> = (0..1203)
        .map(|i| (format!("t{}", i % 3), json!([i])))
        .collect();
    let ids = q.enqueue_many(&calls).expect("enqueue_many");
    assert_eq!(ids.len(), 1203);
    assert_eq!(q.count().expect("count"), 1203);
    assert_eq!(q.ids(0, 2000).expect("ids"), ids);
    assert_eq!(q.ids(1200, 10).expect("tail"), ids[1200..].to_vec());
    let tasks = q.tasks(600, 2).expect("tasks");
    let rec = tasks[1].as_ref().expect("record");
    assert_eq!((rec.task.as_str(), &rec.args), ("t1", &json!([601])));
    assert!(
        q.enqueue_many::<&str, ()>(&[])
            .expect("empty batch")
            .is_empty()
    );
}

#[test]
fn oversized_args_are_refused_and_nothing_is_written() {
    let server = RedisServer::start();
    let store = server.store().with_max_args_bytes(64);
    let q = store.queue("default");
    q.enqueue("small", &json!(["x"])).expect("small args pass");
    let mut c = server.client();
    let before = snapshot(&mut c);
    let big = "y".repeat(100);
    match q.enqueue("big", &json!([big])) {
        Err(StoreError::ArgsTooLarge { size, limit }) => {
            assert_eq!(limit, 64);
            assert_eq!(size, 104);
        }
        other => panic!("expected ArgsTooLarge, got {other:?}"),
    }
    // One bad call in a batch refuses the whole batch.
    let batch = vec![("a", json!(1)), ("b", json!([big]))];
    assert!(matches!(
        q.enqueue_many(&batch),
        Err(StoreError::ArgsTooLarge { .. })
    ));
    assert_eq!(snapshot(&mut c), before);
    // The default limit is 1 MiB.
    let store = server.store();
    let huge = "z".repeat(1024 * 1024);
    let err = store
        .queue("default")
        .enqueue("huge", &json!(huge))
        .expect_err("too large");
    assert!(
        err.to_string().contains("over the limit of 1048576 bytes"),
        "{err}"
    );
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn bad_names_are_refused() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    for (queue, task) in [
        ("", "t"),
        ("a b", "t"),
        ("a,b", "t"),
        ("ok", ""),
        ("ok", "x y"),
    ] {
        let err = store.queue(queue).enqueue(task, &()).expect_err("bad name");
        assert!(matches!(err, StoreError::InvalidName { .. }), "{err}");
    }
    assert!(snapshot(&mut c).is_empty());
}

#[test]
fn a_queue_key_of_the_wrong_type_is_named_and_nothing_changes() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    redis::cmd("SET")
        .arg(n.queue("default"))
        .arg("not a list")
        .exec(&mut c)
        .expect("set");
    let before = snapshot(&mut c);
    for err in [
        store
            .queue("default")
            .enqueue("t", &())
            .expect_err("enqueue"),
        store.queue("default").count().expect_err("count"),
        store.queue("default").ids(0, 5).expect_err("ids"),
        store.queue("default").empty().expect_err("empty"),
    ] {
        match &err {
            StoreError::WrongType {
                key,
                expected,
                found,
            } => {
                assert_eq!(key, &n.queue("default"));
                assert_eq!(expected, "list");
                assert_eq!(found, "string");
            }
            other => panic!("expected WrongType, got {other:?}"),
        }
        assert!(err.to_string().contains(&n.queue("default")));
    }
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn empty_and_delete_remove_ids_and_records() {
    let server = RedisServer::start();
    let store = server.store();
    let a = store.queue("a");
    let ids = a
        .enqueue_many(&(0..1100).map(|i| ("t", i)).collect::<Vec<_>>())
        .expect("enqueue");
    let keep = store.queue("b").enqueue("t", &()).expect("enqueue b");
    store.queue("c").enqueue("t", &()).expect("enqueue c");
    assert_eq!(store.queues().expect("queues"), vec!["a", "b", "c"]);

    assert_eq!(a.empty().expect("empty"), 1100);
    assert_eq!(a.count().expect("count"), 0);
    assert!(matches!(
        store.task(&ids[0]),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.task(&ids[1099]),
        Err(StoreError::NotFound { .. })
    ));
    // Emptied, not deleted: the name stays listed.
    assert_eq!(store.queues().expect("queues"), vec!["a", "b", "c"]);

    assert_eq!(store.queue("c").delete().expect("delete"), 1);
    assert_eq!(store.queues().expect("queues"), vec!["a", "b"]);
    assert_eq!(store.task(&keep).expect("b untouched").queue, "b");
    let mut c = server.client();
    let names = server.names();
    let left: Vec<String> = snapshot(&mut c)
        .into_iter()
        .map(|(key, _, _)| key)
        .filter(|key| !key.ends_with(":schema"))
        .collect();
    // Queue b, its task, and the queues sets naming a and b.
    let home = names.home("b");
    let mut want = vec![
        home.queue("b"),
        home.task(&keep),
        home.queues(),
        names.home("a").queues(),
    ];
    want.sort();
    want.dedup();
    assert_eq!(left, want);
}

#[test]
fn a_raw_command_enqueue_as_documented_reads_back() {
    // Exactly the commands docs/redis-schema.md gives to other languages.
    let server = RedisServer::start();
    let n = server.names();
    let mut c = server.client();
    let id = "2a0e3c4e-8f3b-4d52-9a66-0c1d2e3f4a5b";
    let key = n.task("default", id);
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&key)
        .arg(&[
            ("task", "send_report"),
            ("args", r#"[42, {"to": "ops@example.com"}]"#),
            ("status", "queued"),
            ("queue", "default"),
            ("enqueued_at", "2026-11-25T08:17:26.123456Z"),
        ])
        .cmd("RPUSH")
        .arg(n.queue("default"))
        .arg(id)
        .cmd("SADD")
        .arg(n.home("default").queues())
        .arg("default")
        .exec(&mut c)
        .expect("raw enqueue");
    let store = server.store();
    let rec = store.task(id).expect("read back");
    assert_eq!(rec.task, "send_report");
    assert_eq!(rec.args, json!([42, {"to": "ops@example.com"}]));
    assert_eq!(rec.status, TaskStatus::Queued);
    assert_eq!(
        rec.description,
        r#"send_report(42, {"to":"ops@example.com"})"#
    );
    assert_eq!(rec.enqueued_at.to_string(), "2026-11-25T08:17:26.123456Z");
    assert_eq!(store.queue("default").ids(0, 10).expect("ids"), vec![id]);
    assert_eq!(store.queues().expect("queues"), vec!["default"]);
}

/// Whether `s` reads like a hyphenated UUID v4.
fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && parts[2].starts_with('4')
}
