//! The finished and failed registries: listing, emptying, requeueing failed
//! tasks, and expiry that also deletes the records.

use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::{Store, StoreError, TaskStatus};
use serde_json::json;

use crate::support::{RedisServer, snapshot};

/// Enqueues a task on `queue`, takes it into slot `s` and ends it with
/// `status` at `at`.
pub fn ended_task(store: &Store, queue: &str, status: TaskStatus, at: Timestamp) -> String {
    let id = store
        .queue(queue)
        .enqueue("job", &json!([1]))
        .expect("enqueue");
    let fetched = store
        .fetch("s", &[queue.to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(fetched.id, id);
    let error = (status == TaskStatus::Failed).then_some("boom");
    assert!(store.finish("s", &id, status, error, at).expect("finish"));
    id
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[test]
fn registries_list_count_and_empty() {
    let server = RedisServer::start();
    let store = server.store();
    let t0 = ts("2026-01-01T00:00:00Z");
    let f1 = ended_task(&store, "q", TaskStatus::Finished, t0);
    let f2 = ended_task(
        &store,
        "q",
        TaskStatus::Finished,
        ts("2026-01-01T00:00:01Z"),
    );
    let x1 = ended_task(&store, "q", TaskStatus::Failed, t0);
    assert_eq!(store.finished().count().expect("count"), 2);
    assert_eq!(store.failed().count().expect("count"), 1);
    assert_eq!(
        store.finished().ids(0, 10).expect("ids"),
        vec![f1.clone(), f2.clone()]
    );
    assert_eq!(store.finished().ids(1, 10).expect("ids"), vec![f2.clone()]);
    let failed = store.failed().tasks(0, 10).expect("tasks");
    let rec = failed[0].as_ref().expect("record");
    assert_eq!(
        (rec.id.as_str(), rec.status),
        (x1.as_str(), TaskStatus::Failed)
    );
    assert_eq!(rec.error.as_deref(), Some("boom"));
    assert_eq!(rec.ended_at, Some(t0));

    assert_eq!(store.finished().empty().expect("empty"), 2);
    assert_eq!(store.finished().count().expect("count"), 0);
    assert!(matches!(store.task(&f1), Err(StoreError::NotFound { .. })));
    assert!(store.task(&x1).is_ok());
}

#[test]
fn requeue_failed_puts_tasks_back_at_the_tail_and_reports_the_rest() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let t0 = ts("2026-01-01T00:00:00Z");
    let failed = ended_task(&store, "mail", TaskStatus::Failed, t0);
    let done = ended_task(&store, "mail", TaskStatus::Finished, t0);
    // A failed-registry entry whose record lost its status.
    let other = ended_task(&store, "mail", TaskStatus::Failed, t0);
    let waiting = store.queue("mail").enqueue("job", &()).expect("enqueue");
    let mut c = server.client();
    redis::cmd("HSET")
        .arg(n.task_of(&other))
        .arg("status")
        .arg("finished")
        .exec(&mut c)
        .expect("hset");
    let report = store
        .requeue_failed(&[
            failed.clone(),
            done.clone(),
            "ghost".to_owned(),
            other.clone(),
        ])
        .expect("requeue");
    assert_eq!(report.requeued, 1);
    let rejected: Vec<(&str, &str)> = report
        .rejected
        .iter()
        .map(|r| (r.id.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (done.as_str(), "not in the failed registry"),
            ("ghost", "not in the failed registry"),
            (other.as_str(), "status is finished, not failed"),
        ]
    );
    assert_eq!(
        store.queue("mail").ids(0, 10).expect("ids"),
        vec![waiting, failed.clone()]
    );
    let rec = store.task(&failed).expect("task");
    assert_eq!(rec.status, TaskStatus::Queued);
    assert_eq!(
        (rec.error, rec.started_at, rec.ended_at),
        (None, None, None)
    );
    assert_eq!(store.failed().ids(0, 10).expect("failed"), vec![other]);
}

#[test]
fn requeue_all_failed_takes_every_batch() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    // 1200 failed tasks, written directly (faster than running each).
    let mut pipe = redis::pipe();
    for i in 0..1200 {
        let id = format!("id{i:04}");
        pipe.cmd("HSET")
            .arg(n.task("default", &id))
            .arg(&[
                ("task", "t"),
                ("args", "[]"),
                ("status", "failed"),
                ("queue", "default"),
                ("enqueued_at", "2026-01-01T00:00:00Z"),
                ("error", "x"),
            ])
            .ignore();
        pipe.cmd("ZADD")
            .arg(n.home("default").failed())
            .arg(i)
            .arg(&id)
            .ignore();
    }
    pipe.exec(&mut c).expect("seed");
    let report = store.requeue_all_failed().expect("requeue all");
    assert_eq!((report.requeued, report.rejected.len()), (1200, 0));
    assert_eq!(store.failed().count().expect("count"), 0);
    assert_eq!(store.queue("default").count().expect("count"), 1200);
    assert_eq!(store.queues().expect("queues"), vec!["default"]);
}

#[test]
fn expiry_removes_old_entries_with_their_records() {
    let server = RedisServer::start();
    let store = server.store();
    let old = ended_task(
        &store,
        "q",
        TaskStatus::Finished,
        ts("2026-01-01T00:00:00Z"),
    );
    let old_failed = ended_task(&store, "q", TaskStatus::Failed, ts("2026-01-01T00:00:00Z"));
    let recent = ended_task(
        &store,
        "q",
        TaskStatus::Finished,
        ts("2026-01-07T23:00:00Z"),
    );
    let now = ts("2026-01-08T00:00:01Z");
    let week = Duration::from_secs(604_800);
    let mut c = server.client();
    assert_eq!(store.expire_registries(now, week).expect("expire"), 2);
    assert!(matches!(store.task(&old), Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.task(&old_failed),
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.task(&recent).is_ok());
    assert_eq!(store.finished().ids(0, 10).expect("ids"), vec![recent]);
    let before = snapshot(&mut c);
    assert_eq!(store.expire_registries(now, week).expect("expire again"), 0);
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn a_registry_key_of_the_wrong_type_is_named() {
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let failed = n.first().failed();
    redis::cmd("SET")
        .arg(&failed)
        .arg("x")
        .exec(&mut c)
        .expect("set");
    let before = snapshot(&mut c);
    for err in [
        store.failed().count().expect_err("count"),
        store.failed().empty().expect_err("empty"),
        store
            .requeue_failed(&["a".to_owned()])
            .expect_err("requeue"),
    ] {
        assert!(
            matches!(&err, StoreError::WrongType { key, .. } if *key == failed),
            "{err}"
        );
    }
    assert_eq!(snapshot(&mut c), before);
}

/// `TaskFilter::text` matches the error or the description; the other
/// fields still must match too.
#[test]
fn the_text_filter_matches_the_error_or_the_description() {
    use redis_tasks::store::{RegistryKind, TaskFilter};
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    for (id, queue, description, error) in [
        ("t-desc", "mail", "send invoice 42", "boom"),
        ("t-err", "mail", "send receipt", "invoice template missing"),
        ("t-none", "mail", "send receipt", "boom"),
        ("t-other", "reports", "invoice report", "boom"),
    ] {
        redis::pipe()
            .cmd("HSET")
            .arg(n.task(queue, id))
            .arg(&[
                ("task", "job"),
                ("args", "null"),
                ("status", "failed"),
                ("queue", queue),
                ("description", description),
                ("error", error),
                ("enqueued_at", "2026-11-25T08:17:26Z"),
            ])
            .cmd("ZADD")
            .arg(n.home(queue).failed())
            .arg(1_764_000_000)
            .arg(id)
            .exec(&mut c)
            .expect("failed task");
    }
    let text = |queue: Option<&str>, text: &str| {
        let filter = TaskFilter {
            queue: queue.map(str::to_owned),
            text: Some(text.to_owned()),
            ..TaskFilter::default()
        };
        let mut ids = store
            .matching(RegistryKind::Failed, &filter)
            .expect("matching");
        ids.sort();
        ids
    };
    assert_eq!(text(None, "invoice"), ["t-desc", "t-err", "t-other"]);
    assert_eq!(text(Some("mail"), "invoice"), ["t-desc", "t-err"]);
    assert_eq!(text(Some("mail"), "Invoice"), Vec::<String>::new());
    // `error_contains` alone still looks at the error only.
    let filter = TaskFilter {
        error_contains: Some("invoice".to_owned()),
        ..TaskFilter::default()
    };
    assert_eq!(
        store
            .matching(RegistryKind::Failed, &filter)
            .expect("matching"),
        ["t-err"]
    );
}

/// `Store::scan` goes through a registry a slice at a time: a stopped
/// scan's cursor goes on where it stopped, every match comes once, newest
/// first; a budget of zero stops after one window; a time range is a
/// range of ranks.
#[test]
fn a_scan_goes_on_from_its_cursor_to_the_end() {
    use redis_tasks::store::{
        FILTER_WINDOW, Listing, RegistryKind, ScanCursor, ScanLimits, TaskFilter,
    };
    let server = RedisServer::start();
    let n = server.names();
    let store = server.store();
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..2600_i64 {
        let (id, queue) = (
            format!("s-{i:04}"),
            if i % 2 == 0 { "mail" } else { "reports" },
        );
        pipe.cmd("HSET")
            .arg(n.task(queue, &id))
            .arg(&[
                ("task", "job"),
                ("args", "null"),
                ("status", "failed"),
                ("queue", queue),
                ("error", "boom"),
                ("enqueued_at", "2026-11-25T08:17:26Z"),
            ])
            .ignore()
            .cmd("ZADD")
            .arg(n.home(queue).failed())
            .arg(1_764_000_000 + i)
            .arg(&id)
            .ignore();
    }
    pipe.exec(&mut c).expect("failed tasks");
    let listing = Listing::Registry(RegistryKind::Failed);
    let mail = TaskFilter {
        queue: Some("mail".to_owned()),
        ..TaskFilter::default()
    };
    let limits = ScanLimits {
        max_found: 250,
        budget: None,
    };
    let (mut found, mut cursor, mut scans) = (Vec::new(), ScanCursor::START, 0);
    loop {
        let scan = store.scan(&listing, &mail, cursor, limits).expect("scan");
        assert!(scan.found.len() <= 250);
        scans += 1;
        found.extend(scan.found.into_iter().map(|(id, _)| id));
        match scan.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let expected: Vec<String> = (0..2600)
        .rev()
        .step_by(2)
        .map(|i| format!("s-{:04}", i - 1))
        .collect();
    assert_eq!(found, expected, "each match once, newest first");
    assert!(scans >= 6, "{scans} scans");

    // A spent budget stops the scan after one window, with a cursor.
    let zero = ScanLimits {
        max_found: usize::MAX,
        budget: Some(Duration::ZERO),
    };
    let scan = store
        .scan(&listing, &TaskFilter::default(), ScanCursor::START, zero)
        .expect("scan");
    assert_eq!(scan.looked, FILTER_WINDOW as u64);
    assert!(scan.next.is_some());

    // Ended at or after the 2,400th second: the 200 newest, 100 on mail.
    let recent = TaskFilter {
        since: Some(Timestamp::from_second(1_764_002_400).expect("time")),
        ..mail.clone()
    };
    let all = ScanLimits {
        max_found: usize::MAX,
        budget: None,
    };
    let scan = store
        .scan(&listing, &recent, ScanCursor::START, all)
        .expect("scan");
    assert_eq!(scan.found.len(), 100);
    assert!(scan.looked <= 200, "{} looked at", scan.looked);
}
