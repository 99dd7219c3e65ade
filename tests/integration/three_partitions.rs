//! Store tests run again on data split into three partitions, so that a
//! store method that does not route to the right partition fails here and
//! not only on a Cluster. `support::server::test_partitions` gives every
//! test of this module that layout (libtest names a test's thread after
//! it); the programs a test starts get it through `RT_REDIS_PARTITIONS`.
//!
//! Tests that read or write keys directly name them through
//! `support::Names`, the store's own key builder. Not here: `store_schema`
//! (data of the Python original, which has no partitions) and
//! `store_partitions` (which sets its own layouts).

// Loading these files a second time is the point: the same tests, another
// layout.
#[allow(clippy::duplicate_mod)]
#[path = "async_producer.rs"]
mod async_producer;
#[allow(clippy::duplicate_mod)]
#[path = "scheduler_store.rs"]
mod scheduler_store;
#[allow(clippy::duplicate_mod)]
#[path = "store_canceled.rs"]
mod store_canceled;
#[allow(clippy::duplicate_mod)]
#[path = "store_children.rs"]
mod store_children;
#[allow(clippy::duplicate_mod)]
#[path = "store_connection.rs"]
mod store_connection;
#[allow(clippy::duplicate_mod)]
#[path = "store_dead_slots.rs"]
mod store_dead_slots;
#[allow(clippy::duplicate_mod)]
#[path = "store_delayed.rs"]
mod store_delayed;
#[allow(clippy::duplicate_mod)]
#[path = "store_expiry.rs"]
mod store_expiry;
#[allow(clippy::duplicate_mod)]
#[path = "store_fetch.rs"]
mod store_fetch;
#[allow(clippy::duplicate_mod)]
#[path = "store_finish_fetch.rs"]
mod store_finish_fetch;
#[allow(clippy::duplicate_mod)]
#[path = "store_flow.rs"]
mod store_flow;
#[allow(clippy::duplicate_mod)]
#[path = "store_history.rs"]
mod store_history;
#[allow(clippy::duplicate_mod)]
#[path = "store_producer.rs"]
mod store_producer;
#[allow(clippy::duplicate_mod)]
#[path = "store_read_ahead.rs"]
mod store_read_ahead;
#[allow(clippy::duplicate_mod)]
#[path = "store_registry.rs"]
mod store_registry;
#[allow(clippy::duplicate_mod)]
#[path = "store_results.rs"]
mod store_results;
#[allow(clippy::duplicate_mod)]
#[path = "store_slots.rs"]
mod store_slots;
#[allow(clippy::duplicate_mod)]
#[path = "store_tasks.rs"]
mod store_tasks;
#[allow(clippy::duplicate_mod)]
#[path = "store_unique.rs"]
mod store_unique;

/// The layout of this module is really three partitions (a guard on the
/// thread-name rule of `test_partitions`).
#[test]
fn tests_here_run_on_three_partitions() {
    let server = crate::support::RedisServer::start();
    assert_eq!(server.store().partition_count(), 3);
}
