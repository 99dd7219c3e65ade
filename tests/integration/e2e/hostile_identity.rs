//! A root supervisor's isolated task must not be root (issue 20, point 3).
//! Capabilities are dropped for every isolation profile, but a uid-0
//! process still passes every file permission check meant for root: it
//! could read a 0600 `redis_password_file` or `/etc/shadow`, write
//! root-owned files, and open the supervisor's `cgroup.kill`. A profile
//! with any isolation key and no `user` therefore runs as a dynamic user
//! under a root supervisor. Each attack below worked before that.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use redis_tasks::protocol::TaskStatus;
use serde_json::{Value, json};

use super::{Demo, error_of, root_or_skip};

/// A profile with one isolation key and no `user`.
const PROFILE: &str = "[queues.untrusted]\nmemory_limit = \"1G\"\n";

/// Runs the tasks queued on `untrusted` with `worker --burst`.
fn burst(demo: &Demo) {
    let config = demo.path("settings.toml");
    fs::write(&config, PROFILE).expect("settings");
    let mut cmd = demo.cmd_with(super::demo_bin_for_everyone());
    cmd.args(["worker", "--burst", "--concurrency", "1", "--config"])
        .arg(&config)
        .arg("untrusted")
        .timeout(Duration::from_secs(120));
    cmd.run();
}

fn enqueue(demo: &Demo, task: &str, args: Value) -> String {
    demo.store
        .queue("untrusted")
        .enqueue(task, &args)
        .expect("enqueue")
}

/// A demo whose directory every user may enter.
fn open_demo() -> Demo {
    let demo = Demo::new();
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    demo
}

#[test]
fn an_isolated_task_of_a_root_supervisor_cannot_read_a_root_only_file() {
    if !root_or_skip("a root supervisor") {
        return;
    }
    let demo = open_demo();
    let secret = demo.path("redis-password");
    fs::write(&secret, "hunter2").expect("secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    let id = enqueue(&demo, "read_secret", json!({ "path": secret }));
    burst(&demo);
    let t = demo.task(&id);
    assert_eq!(
        t.status,
        TaskStatus::Failed,
        "read the secret: {:?}",
        t.meta
    );
    assert!(
        error_of(&t).contains("Permission denied"),
        "{}",
        error_of(&t)
    );
}

#[test]
fn an_isolated_task_of_a_root_supervisor_cannot_write_a_root_owned_file() {
    if !root_or_skip("a root supervisor") {
        return;
    }
    let demo = open_demo();
    let owned = demo.path("root-owned");
    fs::write(&owned, "root's").expect("file");
    fs::set_permissions(&owned, fs::Permissions::from_mode(0o644)).expect("chmod");
    let id = enqueue(&demo, "open_for_writing", json!({ "path": owned }));
    burst(&demo);
    let t = demo.task(&id);
    assert_eq!(
        t.status,
        TaskStatus::Failed,
        "opened a root-owned file for writing"
    );
    assert!(
        error_of(&t).contains("Permission denied"),
        "{}",
        error_of(&t)
    );
}

#[test]
fn an_isolated_task_of_a_root_supervisor_cannot_open_the_supervisors_cgroup_kill() {
    if !root_or_skip("a root supervisor") {
        return;
    }
    let demo = open_demo();
    let id = enqueue(&demo, "open_cgroup_kill", json!(null));
    burst(&demo);
    let t = demo.task(&id);
    assert_eq!(
        t.status,
        TaskStatus::Failed,
        "opened {:?}",
        t.meta["target"]
    );
    let error = error_of(&t);
    if error.contains("no cgroup of its own") {
        eprintln!("skipped: worker processes have no cgroups here");
        return;
    }
    assert!(error.contains("Permission denied"), "{error}");
}

#[test]
fn an_isolated_profile_without_user_runs_as_a_dynamic_user_under_root() {
    if !root_or_skip("a root supervisor") {
        return;
    }
    let demo = open_demo();
    let id = enqueue(&demo, "whoami", json!(null));
    burst(&demo);
    let t = demo.task(&id);
    assert_eq!(t.status, TaskStatus::Finished, "{t:?}");
    // Slot 0 of the default range (`dynamic_user_base` 61184).
    assert_eq!(t.meta["uid"][0], "61184", "{:?}", t.meta);
}
