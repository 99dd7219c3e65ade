//! `user = "dynamic"`: every slot runs its isolated tasks as a uid of its
//! own, so a task cannot signal (`kill(-1)`) the task of another slot,
//! even where worker processes get no private PID namespace (with one,
//! `hostile_namespaces` shows that two slots sharing one account are safe
//! too).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, Running, demo_bin_for_everyone, error_of, root_or_skip};

/// A supervisor on `default` with two slots, under `profile`.
fn start(demo: &Demo, profile: &str) -> Running {
    let config = demo.path("settings.toml");
    fs::write(&config, format!("[queues.default]\n{profile}")).expect("settings");
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let log = demo.path("supervisor.log");
    let file = fs::File::create(&log).expect("log");
    let child = Command::new(demo_bin_for_everyone())
        .args(["worker", "--concurrency", "2", "--config"])
        .arg(&config)
        .env_remove("RT_SETTINGS")
        .env("REDIS_URL", demo.redis.url())
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("start the supervisor");
    Running { child, log }
}

/// Runs a task that waits for a gate on one slot and `kill_everyone` on the
/// other, then opens the gate; returns the waiting task's record once it
/// ended: finished if the attack missed it, failed if it was killed.
fn attack(demo: &Demo, sup: &Running) -> redis_tasks::TaskRecord {
    let gate = demo.path("gate");
    let victim = demo.enqueue("wait_for_file", json!({ "path": gate }));
    demo.wait_status(&victim, TaskStatus::Running, Duration::from_secs(60));
    let attacker = demo.enqueue("kill_everyone", json!(null));
    let t = demo.wait_ended(&attacker, Duration::from_secs(60));
    assert_eq!(
        t.status,
        TaskStatus::Finished,
        "{}\n{}",
        error_of(&t),
        sup.log()
    );
    fs::write(&gate, "").expect("gate");
    demo.wait_ended(&victim, Duration::from_secs(60))
}

#[test]
fn slots_with_dynamic_users_cannot_kill_each_others_tasks() {
    if !root_or_skip("switching users") {
        return;
    }
    let demo = Demo::new();
    let mut sup = start(&demo, "user = \"dynamic\"\n");
    let victim = attack(&demo, &sup);
    assert_eq!(victim.status, TaskStatus::Finished, "{}", sup.log());

    // Each slot had a uid of its own, from the default base.
    let a = demo.enqueue("whoami", json!(null));
    let t = demo.wait_ended(&a, Duration::from_secs(60));
    let uid = t.meta["uid"][0].as_str().unwrap_or_default().to_owned();
    assert!(["61184", "61185"].contains(&uid.as_str()), "{:?}", t.meta);
    sup.stop();
}
