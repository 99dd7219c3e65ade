//! The async producer (`AsyncStore`) on a three-master Redis Cluster:
//! every partition's requests go to the master serving its hash slot, to
//! the very keys the sync store uses; a killed master is followed to its
//! successor.

use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use redis_tasks::{AsyncStore, EnqueueOptions, Store, StoreError};
use serde_json::json;

use crate::support::cluster::ClusterSet;
use crate::support::wait_until;

/// A runtime for one test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn the_async_producer_routes_like_the_sync_store_and_follows_a_failover() {
    let mut set = ClusterSet::start_with(3, 1);
    let sync = Store::open(&set.url(), "redis_tasks").expect("sync store");
    let rt = runtime();
    let store = rt
        .block_on(AsyncStore::open(&set.url(), "redis_tasks"))
        .expect("async store on the cluster");
    assert_eq!(store.partition_count(), 16);

    // Queues all over the partitions: each task is where the sync
    // store's routing and key builder say, on the master of that slot.
    let mut ids = Vec::new();
    for i in 0..12 {
        let queue = format!("q{i}");
        let id = rt
            .block_on(store.queue(&queue).enqueue("add", &json!({"i": i})))
            .expect("enqueue");
        let key = sync.key_names(sync.partition_of(&queue)).queue(&queue);
        let master = set.master_of_slot(set.keyslot(&key));
        let listed: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut set.node(master).client())
            .expect("LRANGE on the slot's master");
        assert_eq!(listed, std::slice::from_ref(&id), "{queue}");
        ids.push(id);
    }
    let batch = rt
        .block_on(
            store
                .queue("q0")
                .enqueue_many(&[("add", json!(1)), ("add", json!(2))]),
        )
        .expect("batch");
    assert_eq!(sync.queue("q0").count().expect("count"), 3);
    let unique = EnqueueOptions::new().unique("nightly");
    let first = rt
        .block_on(
            store
                .queue("q1")
                .enqueue_with_outcome("add", &json!({}), &unique),
        )
        .expect("unique");
    let again = rt
        .block_on(
            store
                .queue("q2")
                .enqueue_with_outcome("add", &json!({}), &unique),
        )
        .expect("unique again");
    assert!(first.is_new() && !again.is_new());
    assert_eq!(first.id(), again.id());

    // Read, cancel and await, through the async store, what the sync one sees.
    for id in ids.iter().chain(&batch) {
        let rec = rt.block_on(store.task(id)).expect("task");
        assert_eq!(rec, sync.task(id).expect("sync task"));
    }
    rt.block_on(store.cancel(&ids[3])).expect("cancel");
    assert_eq!(
        sync.task(&ids[3]).expect("task").status,
        TaskStatus::Canceled
    );
    let ended = rt
        .block_on(store.wait_for_end(&ids[3], Duration::from_secs(5)))
        .expect("wait")
        .expect("ended");
    assert_eq!(ended.status, TaskStatus::Canceled);
    let none = rt
        .block_on(store.wait_for_end(&ids[4], Duration::from_millis(200)))
        .expect("wait");
    assert!(none.is_none());

    // The master of q5's partition dies; its replica takes over, and a
    // later call reaches it (the first ones may fail, and say so).
    let key = sync.key_names(sync.partition_of("q5")).queue("q5");
    let old = set.master_of_slot(set.keyslot(&key));
    set.kill_master(old);
    set.wait_failover(old);
    let mut after = None;
    wait_until(
        "an enqueue on the new master",
        Duration::from_secs(60),
        || match rt.block_on(store.queue("q5").enqueue("add", &json!({"after": true}))) {
            Ok(id) => {
                after = Some(id);
                true
            }
            Err(e) => {
                assert!(e.is_connection_error(), "{e}");
                false
            }
        },
    );
    let after = after.expect("enqueued");
    let rec = rt.block_on(store.task(&after)).expect("read back");
    assert_eq!(rec.args, json!({"after": true}));
    let missing = rt.block_on(store.task("no-such-id"));
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}
