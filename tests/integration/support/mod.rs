//! The test harness: a real Redis per test, a poller with a deadline, and a
//! runner for the CLI binary whose failures explain themselves.

#![allow(dead_code)]

pub mod cluster;
mod cmd;
pub mod http_sink;
mod names;
mod server;
pub mod topology;

use std::time::{Duration, Instant};

pub use cmd::{Cmd, Output, admin_bin};
pub use names::Names;
pub use server::{RedisServer, free_port, test_partitions};

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Registers slot `id` (supervisor `sup`, this process) listening on
/// `queues` in `store`, as a supervisor would, and returns it.
pub fn registered_slot(
    store: &redis_tasks::Store,
    id: &str,
    queues: &[&str],
) -> redis_tasks::store::SlotInfo {
    let info = redis_tasks::store::SlotInfo {
        id: id.to_owned(),
        description: "test".to_owned(),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        supervisor: "sup".to_owned(),
        host: "localhost".to_owned(),
        pid: std::process::id(),
        started_at: jiff::Timestamp::now(),
    };
    store.register_slot(&info).expect("register");
    info
}

/// Empties Redis's slow log and makes it keep only calls over a second,
/// so that [`slow_calls`] after a step witnesses whether hostile data held
/// the server (a thousand times a script's usual cost: not a timing test).
pub fn watch_slow_calls(conn: &mut ::redis::Connection) {
    ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(1_000_000)
        .query::<()>(conn)
        .expect("slowlog threshold");
    ::redis::cmd("SLOWLOG")
        .arg("RESET")
        .query::<()>(conn)
        .expect("slowlog reset");
}

/// How many calls took over a second since [`watch_slow_calls`].
pub fn slow_calls(conn: &mut ::redis::Connection) -> usize {
    ::redis::cmd("SLOWLOG")
        .arg("LEN")
        .query(conn)
        .expect("slowlog len")
}

/// Every key in the server with its type and a dump of its content, sorted:
/// compare two snapshots to prove an operation changed nothing.
///
/// On partitioned data the markers (`P:layout`, each partition's
/// `schema`) are left out: the store writes them on its first call to
/// each partition, which is bookkeeping, not a change of the data.
pub fn snapshot(conn: &mut ::redis::Connection) -> Vec<(String, String, String)> {
    let mut keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(conn).expect("KEYS");
    if server::test_partitions() > 1 {
        keys.retain(|k| !k.ends_with(":layout") && !k.ends_with(":schema"));
    }
    let mut out = Vec::new();
    for key in keys {
        let kind: String = ::redis::cmd("TYPE").arg(&key).query(conn).expect("TYPE");
        let content = match kind.as_str() {
            "string" => format!("{:?}", ::redis::cmd("GET").arg(&key).query::<String>(conn)),
            "list" => format!(
                "{:?}",
                ::redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query::<Vec<String>>(conn)
            ),
            "hash" => {
                let mut v: Vec<(String, String)> = ::redis::cmd("HGETALL")
                    .arg(&key)
                    .query(conn)
                    .expect("HGETALL");
                v.sort();
                format!("{v:?}")
            }
            "set" => {
                let mut v: Vec<String> = ::redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query(conn)
                    .expect("SMEMBERS");
                v.sort();
                format!("{v:?}")
            }
            "zset" => format!(
                "{:?}",
                ::redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query::<Vec<(String, String)>>(conn)
            ),
            other => other.to_owned(),
        };
        let ttl: i64 = ::redis::cmd("TTL").arg(&key).query(conn).expect("TTL");
        out.push((key, kind, format!("{content} ttl={}", ttl >= 0)));
    }
    out.sort();
    out
}
