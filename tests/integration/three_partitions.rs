//! Store tests run again on data split into three partitions, so that a
//! store method that does not route to the right partition fails here and
//! not only on a Cluster. `support::server::test_partitions` gives every
//! test of this module that layout (libtest names a test's thread after
//! it); the programs a test starts get it through `RT_REDIS_PARTITIONS`.
//!
//! Only the modules that read no raw key names are here yet: the others
//! must first build their keys for the partition they expect (issue 22,
//! point 7).

// Loading these files a second time is the point: the same tests, another
// layout.
#[allow(clippy::duplicate_mod)]
#[path = "store_connection.rs"]
mod store_connection;
#[allow(clippy::duplicate_mod)]
#[path = "store_dead_slots.rs"]
mod store_dead_slots;

/// The layout of this module is really three partitions (a guard on the
/// thread-name rule of `test_partitions`).
#[test]
fn tests_here_run_on_three_partitions() {
    let server = crate::support::RedisServer::start();
    assert_eq!(server.store().partition_count(), 3);
}
