//! An unreachable Redis is a clear error within seconds, and a dropped
//! connection is reopened by the next call.

use std::time::{Duration, Instant};

use redis_tasks::{Store, StoreError};

use crate::support::{RedisServer, free_port};

#[test]
fn an_unreachable_redis_is_a_clear_error_quickly() {
    let port = free_port().expect("port");
    let store = Store::open(&format!("redis://:s3cret@127.0.0.1:{port}"), "rt").expect("open");
    let start = Instant::now();
    let err = store
        .queue("default")
        .enqueue("t", &())
        .expect_err("no server");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(err.is_connection_error());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to redis at 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn a_server_that_never_answers_times_out() {
    // A listener that accepts but never replies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let store = Store::open(&format!("redis://127.0.0.1:{port}"), "rt")
        .expect("open")
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(1));
    let start = Instant::now();
    let err = store.ping().expect_err("silent server");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(err.is_connection_error(), "{err}");
    drop(listener);
}

#[test]
fn a_dropped_connection_is_reopened() {
    let server = RedisServer::start();
    let store = server.store();
    store.ping().expect("ping");
    let mut c = server.client();
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .exec(&mut c)
        .expect("client kill");
    // The first call may see the dead connection; the next one reconnects.
    let _ = store.ping();
    store.ping().expect("reconnected");
    store
        .queue("default")
        .enqueue("t", &())
        .expect("works again");
}

#[test]
fn a_redis_that_went_away_gives_connection_errors() {
    let mut server = RedisServer::start();
    let store = server.store();
    store.ping().expect("ping");
    server.kill();
    let err = store.ping().expect_err("down");
    assert!(err.is_connection_error(), "{err}");
    let err = store.ping().expect_err("still down");
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
}
