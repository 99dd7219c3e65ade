//! Bad input to the admin binary: each gets one `error: ...` line on
//! stderr (and a `caused by:` line per cause), a non-zero exit, and leaves
//! Redis as it was.

use std::time::Duration;

use serde_json::json;

use crate::support::{Cmd, Output, RedisServer, admin_bin, free_port, snapshot};

/// Asserts a failure reported as one `error: ...` line, followed only by
/// `  caused by: ...` lines (one per cause a binary added), with `needle`
/// somewhere in the report.
fn one_line_error(o: &Output, needle: &str) {
    assert!(!o.status.success());
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(!lines.is_empty(), "nothing on stderr");
    assert!(lines[0].starts_with("error: "), "{:?}", o.stderr);
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  caused by: ")),
        "one error line, then causes: {:?}",
        o.stderr
    );
    assert!(
        o.stderr.contains(needle),
        "{needle:?} not in {:?}",
        o.stderr
    );
    assert_eq!(o.stdout, "", "nothing on stdout");
}

fn admin(server: &RedisServer) -> Cmd {
    Cmd::admin(&server.url())
}

#[test]
fn unknown_ids_are_reported() {
    let server = RedisServer::start();
    let mut c = server.client();
    server
        .store()
        .queue("default")
        .enqueue("t", &())
        .expect("enqueue");
    let before = snapshot(&mut c);
    let o = admin(&server).args(["task", "show", "nope"]).fails();
    one_line_error(&o, "task nope not found");
    let o = admin(&server).args(["task", "cancel", "nope"]).fails();
    one_line_error(&o, "task nope not found");
    let o = admin(&server).args(["failed", "requeue", "nope"]).output();
    assert!(!o.status.success());
    assert!(
        o.stderr.contains("nope (not in the failed registry)"),
        "{}",
        o.stderr
    );
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn corrupt_records_and_wrong_key_types_are_named() {
    let server = RedisServer::start();
    let mut c = server.client();
    redis::cmd("HSET")
        .arg("redis_tasks:task:half")
        .arg(&[("task", "t"), ("status", "queued")])
        .exec(&mut c)
        .expect("hset");
    redis::cmd("SET")
        .arg("redis_tasks:task:str")
        .arg("x")
        .exec(&mut c)
        .expect("set");
    redis::cmd("SET")
        .arg("redis_tasks:queues")
        .arg("x")
        .exec(&mut c)
        .expect("set");
    let before = snapshot(&mut c);
    let o = admin(&server)
        .args(["task", "show", "half", "--json"])
        .fails();
    one_line_error(
        &o,
        "task half has a corrupt record: field \"args\": missing",
    );
    let o = admin(&server).args(["task", "show", "str"]).fails();
    one_line_error(&o, "redis key redis_tasks:task:str holds a string");
    let o = admin(&server).args(["info"]).fails();
    one_line_error(
        &o,
        "redis key redis_tasks:queues holds a string, but redis-tasks keeps a set there",
    );
    let o = admin(&server).args(["enqueue", "t"]).fails();
    one_line_error(&o, "redis_tasks:queues");
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn invalid_args_json_is_refused_and_nothing_is_written() {
    let server = RedisServer::start();
    let mut c = server.client();
    let before = snapshot(&mut c);
    let o = admin(&server).args(["enqueue", "t", "[1, 2"]).fails();
    one_line_error(
        &o,
        "error: ARGS_JSON is not valid JSON; nothing was enqueued\n  caused by: ",
    );
    let o = admin(&server).args(["enqueue", "t", "{\"a\": }"]).fails();
    one_line_error(&o, "; nothing was enqueued");
    // A bare word gets the hint to quote it.
    let o = admin(&server).args(["enqueue", "t", "hello"]).fails();
    one_line_error(&o, "a string must be quoted as JSON: '\"hello\"'");
    let o = admin(&server).args(["enqueue", "bad name", "[]"]).fails();
    one_line_error(&o, "invalid task name");
    let o = admin(&server)
        .args(["enqueue", "t", &json!(["x".repeat(200)]).to_string()])
        .env("RT_MAX_ARGS_BYTES", "100")
        .fails();
    one_line_error(&o, "over the limit of 100 bytes");
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn cancel_of_a_task_that_has_ended_changes_nothing() {
    let server = RedisServer::start();
    let store = server.store();
    let mut c = server.client();
    let id = store.queue("default").enqueue("t", &()).expect("enqueue");
    store
        .fetch("s", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    store
        .finish(
            "s",
            &id,
            redis_tasks::TaskStatus::Finished,
            None,
            jiff::Timestamp::now(),
        )
        .expect("finish");
    let before = snapshot(&mut c);
    let o = admin(&server).args(["task", "cancel", &id]).fails();
    one_line_error(
        &o,
        &format!("task {id} has already ended (finished); nothing changed"),
    );
    assert_eq!(snapshot(&mut c), before);
}

/// A running task whose supervisor does not answer (none runs here): the
/// request is recorded and the command says it is pending, without waiting
/// when asked not to.
#[test]
fn cancel_of_a_running_task_without_its_supervisor_stays_a_request() {
    let server = RedisServer::start();
    let store = server.store();
    let id = store.queue("default").enqueue("t", &()).expect("enqueue");
    store
        .fetch("s", &["default".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    let o = admin(&server)
        .args(["task", "cancel", &id, "--wait", "0"])
        .run();
    assert_eq!(
        o.stdout,
        format!("cancel of running task {id} requested; its supervisor has not stopped it yet\n")
    );
    assert_eq!(
        store.cancel_requests().expect("requests"),
        [(id.clone(), "s".to_owned())]
    );
    assert_eq!(
        store.task(&id).expect("record").status,
        redis_tasks::TaskStatus::Running
    );
}

#[test]
fn an_unreachable_redis_fails_fast_with_one_line() {
    let port = free_port().expect("port");
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    for args in [
        &["info"][..],
        &["enqueue", "t"][..],
        &["task", "show", "x"][..],
    ] {
        // The URL with its password comes from the environment: on the
        // command line it would be refused before any connection.
        let o = Cmd::new(admin_bin())
            .args(args)
            .env("REDIS_URL", &url)
            .timeout(Duration::from_secs(30))
            .fails();
        one_line_error(&o, &format!("cannot connect to redis at 127.0.0.1:{port}"));
        assert!(!o.stderr.contains("hunter2"), "{}", o.stderr);
        assert!(
            o.elapsed < Duration::from_secs(10),
            "{args:?} took {:?}",
            o.elapsed
        );
    }
}

#[test]
fn usage_errors_are_one_line_too() {
    for args in [
        &["empty"][..],
        &["failed", "requeue"][..],
        &["empty", "a", "--all"][..],
        &["frobnicate"][..],
        &["info", "--interval", "0"][..],
    ] {
        let o = Cmd::new(admin_bin()).args(args).fails();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        one_line_error(&o, "");
    }
}

#[test]
fn bad_settings_are_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, "redis_prefx = \"x\"\n").expect("write");
    let o = Cmd::new(admin_bin())
        .arg("--config")
        .arg(&path)
        .arg("info")
        .fails();
    one_line_error(&o, "redis_prefx");
    let o = Cmd::new(admin_bin())
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .arg("info")
        .fails();
    one_line_error(&o, "missing.toml");
    let o = Cmd::new(admin_bin())
        .args(["--redis-url", "nope://x", "info"])
        .fails();
    one_line_error(&o, "--redis-url: expected a redis URL such as");
    assert!(!o.stderr.contains("InvalidClientConfig"), "{}", o.stderr);
}
