//! Partitioned data on one Redis (`redis_partitions = 3`): queues land in
//! different hash-tagged partitions, and every view and step that spans
//! them (listings, counts, registries, fetch, unique enqueue, graphs,
//! delayed tasks, cancel, dead-slot recovery) works as on unpartitioned
//! data. The layout marker keeps programs with another count away.
//!
//! The same code on a real three-master Cluster: `deployments::cluster`.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::store::{GraphPlan, PlannedNode, RedisConfig, SlotInfo};
use redis_tasks::{CancelResult, EnqueueOptions, Enqueued, Store, StoreError, TaskStatus};
use serde_json::json;

use crate::support::RedisServer;

fn partitioned(server: &RedisServer, count: u16) -> Store {
    let config = RedisConfig::from_url(&server.url(), None)
        .expect("url")
        .with_partitions(count);
    Store::with_config(config, "redis_tasks").expect("store")
}

fn slot(id: &str, queues: &[&str]) -> SlotInfo {
    SlotInfo {
        id: id.to_owned(),
        description: id.to_owned(),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        supervisor: "sup".to_owned(),
        host: "h".to_owned(),
        pid: 1,
        started_at: Timestamp::now(),
    }
}

/// The hash tags of the partitions holding a queue list, from the keys.
fn queue_tags(server: &RedisServer) -> BTreeSet<String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("redis_tasks:{*}:queue:*")
        .query(&mut server.client())
        .expect("keys");
    keys.iter()
        .filter_map(|k| Some(k.split_once('{')?.1.split_once('}')?.0.to_owned()))
        .collect()
}

#[test]
fn queues_spread_over_partitions_and_every_view_spans_them() {
    let server = RedisServer::start();
    let store = partitioned(&server, 3);
    assert_eq!(store.partition_count(), 3);
    let queues: Vec<String> = (0..8).map(|i| format!("q{i}")).collect();
    let mut ids = Vec::new();
    for q in &queues {
        ids.push(
            store
                .queue(q.as_str())
                .enqueue("job", &json!([q]))
                .expect("enqueue"),
        );
        ids.push(
            store
                .queue(q.as_str())
                .enqueue("job", &json!([q, 2]))
                .expect("enqueue"),
        );
    }
    // Nothing under the unpartitioned names; queues in several partitions.
    let plain: Vec<String> = redis::cmd("KEYS")
        .arg("redis_tasks:queue:*")
        .query(&mut server.client())
        .expect("keys");
    assert!(plain.is_empty(), "{plain:?}");
    assert!(queue_tags(&server).len() >= 2, "{:?}", queue_tags(&server));

    assert_eq!(store.queues().expect("queues"), queues);
    assert_eq!(store.queue("q3").count().expect("count"), 2);
    assert_eq!(store.queue("q3").ids(0, 10).expect("ids").len(), 2);
    let records = store.tasks(&ids).expect("tasks");
    assert!(records.iter().all(|r| r.is_ok()), "{records:?}");

    // One slot serving every queue takes every task, in queue order.
    store.register_slot(&slot("s1", &[])).expect("register");
    let mut taken = Vec::new();
    while let Some(f) = store.fetch("s1", &queues, Duration::ZERO).expect("fetch") {
        let status = if taken.len() % 4 == 0 {
            TaskStatus::Failed
        } else {
            TaskStatus::Finished
        };
        assert!(
            store
                .finish("s1", &f.id, status, None, Timestamp::now())
                .expect("finish")
        );
        taken.push(f.id);
    }
    assert_eq!(taken.len(), ids.len());
    assert_eq!(
        taken.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(store.finished().count().expect("count"), 12);
    assert_eq!(store.failed().count().expect("count"), 4);
    assert_eq!(store.finished().ids(0, 100).expect("ids").len(), 12);
    assert_eq!(store.finished().ids(10, 100).expect("ids").len(), 2);
    let infos = store.worker_infos().expect("infos");
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].state, "idle");

    // Requeue of failed tasks finds each in its partition.
    let failed = store.failed().ids(0, 100).expect("failed ids");
    let mut asked = failed.clone();
    asked.push("ghost".to_owned());
    let report = store.requeue_failed(&asked).expect("requeue");
    assert_eq!(report.requeued, 4);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].id, "ghost");
    let waiting: u64 = queues
        .iter()
        .map(|q| store.queue(q.as_str()).count().expect("count"))
        .sum();
    assert_eq!(waiting, 4);
}

#[test]
fn unique_keys_graphs_delays_and_cancels_work_across_partitions() {
    let server = RedisServer::start();
    let store = partitioned(&server, 3);

    // One uniqueness key across queues in different partitions: one task.
    let first = store
        .queue("a")
        .enqueue_with_outcome("job", &json!(1), &EnqueueOptions::new().unique("k"))
        .expect("unique");
    let second = store
        .queue("b")
        .enqueue_with_outcome("job", &json!(2), &EnqueueOptions::new().unique("k"))
        .expect("unique again");
    assert!(first.is_new());
    assert_eq!(second, Enqueued::Existing(first.id().to_owned()));

    // A graph whose nodes sit on different queues.
    store
        .mark_graph_middleware(Duration::from_secs(60))
        .expect("marker");
    let node = |name: &str, queue: &str, after: &[&str]| PlannedNode {
        name: name.to_owned(),
        task: "job".to_owned(),
        args: json!(null),
        queue: queue.to_owned(),
        after: after.iter().map(|a| (*a).to_owned()).collect(),
        inputs: false,
        fan_in: false,
    };
    let plan = GraphPlan {
        id: "g1".to_owned(),
        nodes: vec![node("x", "q0", &[]), node("y", "q5", &["x"])],
        on_failure: redis_tasks::store::FailurePolicy::Cancel,
        ttl: Duration::from_secs(600),
    };
    let roots = store.enqueue_graph(&plan).expect("graph");
    assert_eq!(roots.len(), 1);
    assert_eq!(store.task(&roots[0]).expect("root").queue, "q0");
    let advance = store
        .graph_node_ended("g1", "x", &roots[0], false)
        .expect("advance");
    assert!(
        matches!(advance, redis_tasks::store::Advance::Advanced { .. }),
        "{advance:?}"
    );
    assert_eq!(store.queue("q5").count().expect("count"), 1);

    // A delayed task is promoted by the pass over every partition.
    let later = store
        .queue("c")
        .enqueue_with(
            "job",
            &json!(3),
            &EnqueueOptions::new().delay(Duration::from_secs(3600)),
        )
        .expect("delayed");
    assert_eq!(store.scheduled_count().expect("scheduled"), 1);
    assert_eq!(
        store.scheduled_ids(0, 10).expect("ids"),
        vec![later.clone()]
    );
    let promoted = store
        .promote_due(Timestamp::now() + jiff::SignedDuration::from_hours(2), 100)
        .expect("promote");
    assert_eq!(promoted.moved, 1);
    assert_eq!(
        store.task(&later).expect("later").status,
        TaskStatus::Queued
    );

    // Cancel of a queued task, and of a running one (a request).
    assert_eq!(
        store.cancel_task(&later).expect("cancel"),
        CancelResult::Canceled
    );
    store.register_slot(&slot("s1", &["a"])).expect("register");
    let f = store
        .fetch("s1", &["a".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(f.id, first.id());
    assert_eq!(
        store.cancel_task(&f.id).expect("cancel running"),
        CancelResult::Requested
    );
    assert_eq!(
        store.cancel_requests().expect("requests"),
        vec![(f.id.clone(), "s1".to_owned())]
    );
    assert!(
        store
            .finish_canceled("s1", &f.id, "canceled", Timestamp::now())
            .expect("end")
    );
    let ended = store
        .wait_for_end(&f.id, Duration::from_secs(5))
        .expect("wait");
    assert_eq!(ended.map(|r| r.status), Some(TaskStatus::Canceled));
    // The key is free again once its task ended.
    let third = store
        .queue("b")
        .enqueue_with_outcome("job", &json!(4), &EnqueueOptions::new().unique("k"))
        .expect("unique after end");
    assert!(third.is_new());
}

#[test]
fn a_dead_slots_tasks_come_back_from_every_partition() {
    let server = RedisServer::start();
    let store = partitioned(&server, 3);
    let queues: Vec<String> = (0..6).map(|i| format!("q{i}")).collect();
    for q in &queues {
        store
            .queue(q.as_str())
            .enqueue("job", &json!(null))
            .expect("enqueue");
    }
    store.register_slot(&slot("dead", &[])).expect("register");
    let f = store
        .fetch("dead", &queues, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(120);
    let dead = store
        .dead_slots(later, Duration::from_secs(30))
        .expect("dead");
    assert_eq!(dead, vec!["dead".to_owned()]);
    let reclaimed = store.reclaim_slot("dead", later).expect("reclaim");
    // A started task is reported running (the supervisor decides).
    assert_eq!(reclaimed.running, vec![f.id.clone()]);
}

#[test]
fn programs_with_another_partition_count_are_refused() {
    let server = RedisServer::start();
    let three = partitioned(&server, 3);
    three.queue("a").enqueue("job", &json!(1)).expect("enqueue");
    let one = partitioned(&server, 1);
    let err = one.queue("a").count().expect_err("refused");
    assert!(
        matches!(err, StoreError::Layout { configured: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("redis_partitions"), "{err}");
    let four = partitioned(&server, 4);
    assert!(matches!(
        four.queues().expect_err("refused"),
        StoreError::Layout { configured: 4, .. }
    ));

    // Data of the unpartitioned layout is refused by a partitioned program,
    // and nothing is written.
    let other = RedisServer::start();
    let plain = other.store();
    plain.queue("a").enqueue("job", &json!(1)).expect("enqueue");
    let before = crate::support::snapshot(&mut other.client());
    let err = partitioned(&other, 3)
        .queue("a")
        .enqueue("job", &json!(2))
        .expect_err("refused");
    assert!(err.to_string().contains("unpartitioned layout"), "{err}");
    assert_eq!(crate::support::snapshot(&mut other.client()), before);
}

/// A fetch's lease names the partition and queue the task came from; its
/// writes (progress, meta, the ending) reach the task through
/// `Store::leased` without looking for it, and a record that names
/// another queue than its list is refused, naming both.
#[test]
fn a_lease_leads_every_write_to_the_tasks_partition() {
    let server = RedisServer::start();
    let store = partitioned(&server, 3);
    let queues: Vec<String> = (0..6).map(|i| format!("q{i}")).collect();
    for q in &queues {
        store
            .queue(q.as_str())
            .enqueue("job", &json!([q]))
            .expect("enqueue");
    }
    store.register_slot(&slot("s1", &[])).expect("register");
    let mut partitions = BTreeSet::new();
    while let Some(f) = store.fetch("s1", &queues, Duration::ZERO).expect("fetch") {
        let record = f.record.expect("record");
        assert_eq!(f.lease.queue, record.queue);
        assert_eq!(f.lease.id, f.id);
        partitions.insert(f.lease.partition);
        let part = store.leased(&f.lease);
        // The partition store holds the record itself.
        assert_eq!(part.task(&f.id).expect("in its partition").id, f.id);
        let progress = redis_tasks::protocol::Progress::new(1, Some(2), "half");
        assert!(part.set_progress(&f.id, &progress).expect("progress"));
        assert!(
            part.finish("s1", &f.id, TaskStatus::Finished, None, Timestamp::now())
                .expect("finish")
        );
        assert_eq!(
            store.task(&f.id).expect("task").status,
            TaskStatus::Finished
        );
    }
    assert!(partitions.len() >= 2, "{partitions:?}");
}

#[test]
fn an_id_a_lost_reply_left_behind_is_met_by_the_slots_next_fetch() {
    let server = RedisServer::start();
    let store = partitioned(&server, 3);
    let queues: Vec<String> = (0..6).map(|i| format!("q{i}")).collect();
    for q in &queues {
        for n in 0..2 {
            store
                .queue(q.as_str())
                .enqueue("job", &json!([q, n]))
                .expect("enqueue");
        }
    }
    store.register_slot(&slot("s1", &[])).expect("register");
    let first = store
        .fetch("s1", &queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    // The end is recorded and the next task taken in one call whose reply
    // the slot never reads: the next id sits in the slot's list of the
    // first task's partition, and no table anywhere says so.
    let (done, lost) = store
        .finish_and_fetch(
            &first.lease,
            TaskStatus::Finished,
            None,
            None,
            &queues,
            Timestamp::now(),
        )
        .expect("finish and fetch");
    assert!(done);
    let lost = lost.expect("a next task in the same partition");
    assert_eq!(lost.lease.partition, first.lease.partition);
    // The slot keeps its last lease: its next fetch looks there first.
    let err = store
        .fetch_after("s1", &queues, Duration::ZERO, Some(&first.lease))
        .expect_err("the slot still holds an id");
    assert!(
        matches!(&err, StoreError::SlotBusy { ids, .. } if *ids == [lost.id.clone()]),
        "{err}"
    );
    // Handed back by slot and id alone: the fenced step finds its
    // partition, and the task is queued again, unstarted.
    assert!(
        store
            .release_unstarted("s1", &lost.id, Timestamp::now())
            .expect("release")
    );
    assert_eq!(
        store.task(&lost.id).expect("task").status,
        TaskStatus::Queued
    );
    let again = store
        .fetch_after("s1", &queues, Duration::ZERO, Some(&first.lease))
        .expect("fetch")
        .expect("a task");
    assert_eq!(again.id, lost.id, "back at the front of its queue");
}
