//! Tasks of different slots share nothing (issue 20, point 4): with any
//! isolation profile each worker process runs in namespaces of its own
//! (user, PID, IPC, mount), so `kill(-1)` reaches only the task's own
//! processes, a SysV segment is the task's alone and dies with it, and
//! `/tmp` and the working directory are private per slot; whether the
//! supervisor runs as root or not. Each test ran the attack successfully
//! before the namespaces existed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, Running, demo_bin_for_everyone, error_of, root_or_skip};

const NOBODY: u32 = 65534;

/// A supervisor on `default` with two slots and `profile` as the default
/// queue's table; as `nobody` when `as_nobody`.
fn start(demo: &Demo, profile: &str, as_nobody: bool) -> Running {
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = demo.path("settings.toml");
    fs::write(&config, format!("[queues.default]\n{profile}")).expect("settings");
    let log = demo.path("supervisor.log");
    let file = fs::File::create(&log).expect("log");
    let mut cmd = Command::new(demo_bin_for_everyone());
    cmd.args(["worker", "--concurrency", "2", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("REDIS_URL", demo.redis.url())
        .env("RUST_LOG", "debug")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
    if as_nobody {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let child = cmd.spawn().expect("start the supervisor");
    Running { child, log }
}

/// Whether the supervisor said it has no user namespaces here; panics if it
/// said so on a host where `nobody` can create them (`unshare(1)`).
fn no_namespaces(sup: &Running) -> bool {
    let log = sup.log();
    let none = log.contains("no private namespaces for isolated worker processes");
    if none {
        let host_allows = Command::new("unshare")
            .args([
                "--user",
                "--map-current-user",
                "--pid",
                "--ipc",
                "--mount",
                "--fork",
                "true",
            ])
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(!host_allows, "the host allows user namespaces:\n{log}");
        eprintln!("skipped: this host allows no user namespaces");
    }
    none
}

/// Keeps one slot busy with `wait_for_file` while `attacker` runs on the
/// other; opens the gate and returns the victim's record.
fn kill_from_the_other_slot(demo: &Demo, sup: &Running) -> redis_tasks::TaskRecord {
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
fn slots_sharing_one_account_cannot_kill_each_others_tasks() {
    if !root_or_skip("switching users") {
        return;
    }
    let demo = Demo::new();
    let mut sup = start(&demo, "user = \"nobody\"\n", false);
    let victim = kill_from_the_other_slot(&demo, &sup);
    if no_namespaces(&sup) {
        return;
    }
    assert_eq!(victim.status, TaskStatus::Finished, "{}", sup.log());
    sup.stop();
}

#[test]
fn an_isolated_task_of_a_non_root_supervisor_cannot_kill_it_or_its_other_slot() {
    if !root_or_skip("to run the supervisor as another user") {
        return;
    }
    let demo = Demo::new();
    let mut sup = start(&demo, "memory_limit = \"1G\"\n", true);
    let victim = kill_from_the_other_slot(&demo, &sup);
    if no_namespaces(&sup) {
        return;
    }
    assert!(
        sup.child.try_wait().expect("try_wait").is_none(),
        "the task killed the supervisor:\n{}",
        sup.log()
    );
    assert_eq!(victim.status, TaskStatus::Finished, "{}", sup.log());
    sup.stop();
}

/// The SysV shared-memory segments the host's IPC namespace holds, by key.
fn host_segment(key: i32) -> Option<i32> {
    let table = fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    table.lines().skip(1).find_map(|l| {
        let mut cols = l.split_whitespace();
        let k: i32 = cols.next()?.parse().ok()?;
        let id: i32 = cols.next()?.parse().ok()?;
        (k == key).then_some(id)
    })
}

#[test]
fn a_sysv_segment_is_private_to_its_task_and_dies_with_it() {
    if !root_or_skip("a root supervisor") {
        return;
    }
    let demo = Demo::new();
    let mut sup = start(&demo, "memory_limit = \"1G\"\n", false);
    let key = 0x5254_0000 | (std::process::id() as i32 & 0xffff);
    let gate = demo.path("gate");
    let planter = demo.enqueue("shm_plant", json!({ "key": key, "gate": gate }));
    demo.wait_status(&planter, TaskStatus::Running, Duration::from_secs(60));
    wait_for_meta(&demo, &planter, "shmid");
    let finder = demo.enqueue("shm_find", json!({ "key": key }));
    let found = demo.wait_ended(&finder, Duration::from_secs(60));
    fs::write(&gate, "").expect("gate");
    let planted = demo.wait_ended(&planter, Duration::from_secs(60));
    let left = host_segment(key);
    if let Some(id) = left {
        // SAFETY: IPC_RMID on a segment id with no buffer.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
    if no_namespaces(&sup) {
        return;
    }
    assert_eq!(planted.status, TaskStatus::Finished, "{planted:?}");
    assert_eq!(
        found.status,
        TaskStatus::Failed,
        "the other slot found the segment"
    );
    assert!(
        error_of(&found).contains("No such file"),
        "{}",
        error_of(&found)
    );
    assert_eq!(left, None, "the segment outlived its task");
    sup.stop();
}

/// An isolated task runs under a monitor, with its PID namespace's init
/// and the worker process inside: those die at the task's end as well,
/// but they are not what the task left running. So a task that leaves
/// nothing is not said to have left anything (it was said of every
/// isolated task), and one that leaves a child still is.
#[test]
fn only_what_an_isolated_task_left_is_said_to_be_left_running() {
    if !root_or_skip("a root supervisor") {
        return;
    }
    let demo = Demo::new();
    let mut sup = start(&demo, "memory_limit = \"1G\"\n", false);
    let clean = demo.enqueue("sleep", json!({ "secs": 0.01 }));
    let clean = demo.wait_ended(&clean, Duration::from_secs(60));
    let leaver = demo.enqueue("print_late", json!({ "text": "late", "secs": 30 }));
    let leaver = demo.wait_ended(&leaver, Duration::from_secs(60));
    if no_namespaces(&sup) {
        return;
    }
    sup.stop();
    let log = sup.log();
    assert_eq!(clean.status, TaskStatus::Finished, "{log}");
    assert_eq!(leaver.status, TaskStatus::Finished, "{log}");
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the task left running"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(said[0].contains(&leaver.id), "{log}");
}

fn wait_for_meta(demo: &Demo, id: &str, key: &str) {
    crate::support::wait_until(
        &format!("task {id} to set {key}"),
        Duration::from_secs(60),
        || demo.task(id).meta.get(key).is_some(),
    );
}

#[test]
fn a_slot_never_sees_another_slots_working_directory_or_tmp() {
    if !root_or_skip("a root supervisor") {
        return;
    }
    let demo = Demo::new();
    let work = demo.path("work");
    fs::create_dir_all(&work).expect("mkdir");
    // The strict preset's directory: group-writable, no sticky bit.
    fs::set_permissions(&work, fs::Permissions::from_mode(0o2777)).expect("chmod");
    let profile = format!(
        "memory_limit = \"1G\"\nworking_dir = \"{}\"\n",
        work.display()
    );
    let mut sup = start(&demo, &profile, false);
    let in_tmp = format!("/tmp/rt-planted-{}", std::process::id());
    for path in ["secret.txt", in_tmp.as_str()] {
        let gate = demo.path(&format!("gate-{}", path.len()));
        let planter = demo.enqueue("plant", json!({ "path": path, "gate": gate }));
        demo.wait_status(&planter, TaskStatus::Running, Duration::from_secs(60));
        let peeker = demo.enqueue("peek", json!({ "path": path }));
        let peeked = demo.wait_ended(&peeker, Duration::from_secs(60));
        fs::write(&gate, "").expect("gate");
        let planted = demo.wait_ended(&planter, Duration::from_secs(60));
        let leftover = std::path::Path::new(&in_tmp).exists();
        let _ = fs::remove_file(&in_tmp);
        if no_namespaces(&sup) {
            return;
        }
        assert_eq!(planted.status, TaskStatus::Finished, "{planted:?}");
        assert_eq!(
            peeked.status,
            TaskStatus::Failed,
            "{path}: the other slot read it: {:?}",
            peeked.meta
        );
        assert!(!leftover, "{in_tmp} outlived its task in the host's /tmp");
        if path == "secret.txt" {
            // Its own slot's directory, where nothing was written yet.
            assert_eq!(peeked.meta["listing"], json!([]), "{:?}", peeked.meta);
        }
    }
    sup.stop();
}
