//! `failed requeue` and `failed delete` on every task matching filters:
//! `--queue`, `--task`, `--error-contains`, `--since`, in any combination,
//! printing how many they moved.

use crate::cli_admin::fail_task;
use crate::support::{Cmd, RedisServer};

#[test]
fn filters_pick_the_failed_tasks_to_requeue_or_delete() {
    let server = RedisServer::start();
    let store = server.store();
    let url = server.url();
    let mut timeouts_on_a = Vec::new();
    for i in 0..30 {
        let (queue, task) = if i % 2 == 0 { ("a", "x") } else { ("b", "y") };
        let error = if i % 3 == 0 {
            "timeout talking to db"
        } else {
            "bad input"
        };
        let id = fail_task(&server, queue, task, error);
        if queue == "a" && error.starts_with("timeout") {
            timeouts_on_a.push(id);
        }
    }
    assert_eq!(timeouts_on_a.len(), 5);

    let out = Cmd::admin(&url)
        .args([
            "failed",
            "requeue",
            "--queue",
            "a",
            "--error-contains",
            "timeout",
            "--since",
            "1h",
        ])
        .stdout();
    assert_eq!(out, "requeued 5 tasks");
    assert_eq!(store.queue("a").ids(0, 100).expect("ids"), timeouts_on_a);
    assert_eq!(store.failed().count().expect("count"), 25);

    // Nothing failed within the next second's future: none matches.
    let out = Cmd::admin(&url)
        .args(["failed", "delete", "--task", "y", "--since", "0s"])
        .stdout();
    assert!(
        out == "deleted 0 tasks" || out == "deleted 15 tasks",
        "{out}"
    );
    let out = Cmd::admin(&url)
        .args(["failed", "delete", "--task", "y"])
        .stdout();
    assert!(out.starts_with("deleted "), "{out}");
    assert_eq!(store.failed().count().expect("count"), 10);
    let left = store.failed().ids(0, 100).expect("ids");
    assert!(
        left.iter()
            .all(|id| store.task(id).expect("record").task == "x"),
        "only x tasks are left"
    );
    let out = Cmd::admin(&url)
        .args(["failed", "requeue", "--task", "x", "--queue", "b"])
        .stdout();
    assert_eq!(out, "requeued 0 tasks");
    let out = Cmd::admin(&url)
        .args(["failed", "delete", "--all"])
        .stdout();
    assert_eq!(out, "deleted 10 tasks");
    assert_eq!(store.failed().count().expect("count"), 0);
}

#[test]
fn bad_filter_input_is_refused_with_nothing_changed() {
    let server = RedisServer::start();
    let store = server.store();
    let url = server.url();
    let id = fail_task(&server, "a", "x", "boom");
    for (args, says) in [
        (vec!["failed", "requeue"], "required"),
        (vec!["failed", "delete"], "required"),
        (vec!["failed", "requeue", "--since", "soon"], "--since"),
        (
            vec!["failed", "requeue", &id, "--queue", "a"],
            "cannot be used",
        ),
        (
            vec!["failed", "delete", "--all", "--task", "x"],
            "cannot be used",
        ),
    ] {
        let o = Cmd::admin(&url).args(&args).fails();
        assert!(o.stderr.contains(says), "{args:?}: {}", o.stderr);
    }
    assert_eq!(store.failed().ids(0, 10).expect("ids"), vec![id.clone()]);
    let o = Cmd::admin(&url)
        .args(["failed", "delete", "not-an-id", &id])
        .fails();
    assert!(o.stdout.contains("deleted 1 task"), "{}", o.stdout);
    assert!(o.stderr.contains("1 task not deleted"), "{}", o.stderr);
}
