//! Untrusted tasks under isolation profiles (issue 5): hostile demo tasks
//! on queues configured with `[queues.NAME]` tables are contained, each
//! with a clear recorded outcome, while ordinary tasks keep flowing.
//!
//! Needs root (switching user, network namespaces); tests print why they
//! skip when the machine lacks something.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use redis_tasks::protocol::{TaskRecord, TaskStatus};
use serde_json::{Value, json};

use super::{Demo, error_of, is_gone};
use crate::support::{Output, wait_until};

/// Whether this test process can switch users and create namespaces.
fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root (switching user, network namespaces)");
    false
}

/// Writes `toml` as the test's settings file; returns its path.
fn settings(demo: &Demo, toml: &str) -> String {
    let path = demo.path("settings.toml");
    fs::write(&path, toml).expect("write settings");
    path.display().to_string()
}

/// Enqueues on `queue`.
fn enqueue(demo: &Demo, queue: &str, task: &str, args: Value) -> String {
    demo.store
        .queue(queue)
        .enqueue(task, &args)
        .expect("enqueue")
}

/// Runs `worker --burst --config <toml>` on `queues` to the end.
fn burst(demo: &Demo, toml: &str, queues: &[&str], env: &[(&str, &str)]) -> Output {
    let config = settings(demo, toml);
    // Worker processes may run as another user: give them a binary they can reach.
    let mut cmd = demo.cmd_with(super::demo_bin_for_everyone());
    cmd.args([
        "worker",
        "--burst",
        "--concurrency",
        "2",
        "--config",
        &config,
    ])
    .args(queues)
    .timeout(Duration::from_secs(120));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.run()
}

/// A directory in the test's temp dir that user `nobody` can write to.
fn shared_dir(demo: &Demo, name: &str) -> std::path::PathBuf {
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = demo.path(name);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// The file `name` one task wrote in `dir`, a working directory the task
/// could write: each slot has its own `slot-<N>` below such a directory,
/// which the task saw at `dir` itself (docs/security.md).
fn from_a_slot(dir: &std::path::Path, name: &str) -> String {
    let found: Vec<String> = fs::read_dir(dir)
        .expect("list the working directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("slot-"))
        .filter_map(|e| fs::read_to_string(e.path().join(name)).ok())
        .collect();
    assert_eq!(found.len(), 1, "{name} in {} slot directories", found.len());
    found.into_iter().next().unwrap_or_default()
}

/// The error text, or a skip when the profile could not be applied because
/// the kernel lacks `restriction`.
fn unless_unsupported(t: &TaskRecord, restriction: &str) -> Option<String> {
    let text = error_of(t).to_owned();
    if text.starts_with(&format!("isolation not applied ({restriction}:")) {
        eprintln!("skipped: this kernel cannot apply {restriction}: {text}");
        return None;
    }
    Some(text)
}

#[test]
fn a_memory_hog_fails_with_the_limit_and_the_slot_carries_on() {
    let demo = Demo::new();
    let hog = enqueue(&demo, "untrusted", "alloc", json!({"mb": 1024}));
    let next = enqueue(&demo, "untrusted", "alloc", json!({"mb": 16}));
    let ordinary = demo.enqueue("alloc", json!({"mb": 200}));
    let toml = "[queues.untrusted]\nmemory_limit = \"128M\"\n";
    let config = settings(&demo, toml);
    let mut cmd = demo.cmd();
    cmd.args([
        "worker",
        "--burst",
        "--concurrency",
        "1",
        "--config",
        &config,
    ])
    .args(["untrusted", "default"])
    .timeout(Duration::from_secs(120));
    cmd.run();
    let text = error_of(&demo.task(&hog)).to_owned();
    assert!(
        text.starts_with("memory limit (128 MiB) exceeded: worker process killed by signal"),
        "{text}"
    );
    assert_eq!(demo.task(&next).status, TaskStatus::Finished);
    assert_eq!(demo.task(&ordinary).status, TaskStatus::Finished);
}

#[test]
fn a_task_option_limit_wins_over_an_unrestricted_queue() {
    let demo = Demo::new();
    let hog = demo.enqueue("capped_alloc", json!({"mb": 512}));
    let small = demo.enqueue("capped_alloc", json!({"mb": 8}));
    assert!(demo.burst(&["--concurrency", "1"]).status.success());
    let text = error_of(&demo.task(&hog)).to_owned();
    assert!(text.starts_with("memory limit (64 MiB) exceeded"), "{text}");
    assert_eq!(demo.task(&small).status, TaskStatus::Finished);
}

#[test]
fn a_cpu_hog_fails_with_the_cpu_limit_while_other_queues_flow() {
    let demo = Demo::new();
    let hog = enqueue(&demo, "untrusted", "spin", json!({"secs": 60}));
    let ordinary: Vec<String> = (0..5).map(|_| demo.enqueue("noop", json!(null))).collect();
    let toml = "[queues.untrusted]\ncpu_time_limit = 1\n";
    burst(&demo, toml, &["untrusted", "default"], &[]);
    assert_eq!(error_of(&demo.task(&hog)), "CPU time limit (1 s) exceeded");
    for id in ordinary {
        assert_eq!(demo.task(&id).status, TaskStatus::Finished);
    }
}

/// Live `sleep` processes of user `uid`.
fn sleeps_of(uid_wanted: u32) -> usize {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u32>().ok());
            status.starts_with("Name:\tsleep")
                && uid == Some(uid_wanted)
                && !status.contains("State:\tZ")
        })
        .count()
}

#[test]
fn a_fork_bomb_is_contained_by_the_process_limit() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    let bomb = enqueue(
        &demo,
        "untrusted",
        "spawn",
        json!({"children": 64, "secs": 60}),
    );
    // The limit counts every process of the task's user on the host, so
    // the task gets a uid of its own (a dynamic user from a base no other
    // test uses: `nobody` is shared with tests running at the same time),
    // and room for the monitor and init of its private namespaces.
    const BOMB_UID: u32 = 63_712;
    let toml = format!(
        "dynamic_user_base = {BOMB_UID}\n[queues.untrusted]\nuser = \"dynamic\"\nprocess_limit = 24\n"
    );
    let toml = toml.as_str();
    burst(&demo, toml, &["untrusted"], &[]);
    let text = error_of(&demo.task(&bomb)).to_owned();
    assert!(
        text.starts_with("process limit (24) reached: cannot start sleep"),
        "{text}"
    );
    // The children it did start died with its process group.
    wait_until(
        "the bomb's children to die",
        Duration::from_secs(60),
        || sleeps_of(BOMB_UID) == 0,
    );
}

#[test]
fn an_environment_snoop_sees_only_the_allow_list() {
    let demo = Demo::new();
    // Under root the task runs as a dynamic user (docs/security.md).
    let path = shared_dir(&demo, "out").join("env.txt");
    let id = enqueue(&demo, "untrusted", "env", json!({"path": path}));
    let toml = "[queues.untrusted]\nenv = [\"LANG\", \"DEMO_VISIBLE\"]\nopen_files_limit = 64\n";
    let env = [
        ("REDIS_PASSWORD", "hunter2"),
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("WATCHDOG_USEC", "1000000"),
        ("LANG", "C.UTF-8"),
        ("DEMO_VISIBLE", "yes"),
    ];
    burst(&demo, toml, &["untrusted"], &env);
    assert_eq!(demo.task(&id).status, TaskStatus::Finished);
    let seen = fs::read_to_string(&path).expect("env file");
    let mut lines: Vec<&str> = seen.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["DEMO_VISIBLE=yes", "LANG=C.UTF-8"], "{seen}");
}

#[test]
fn a_network_probe_cannot_reach_redis_from_a_network_off_queue() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    let addr = format!("127.0.0.1:{}", demo.redis.port());
    let sealed = enqueue(&demo, "sealed", "connect", json!({"addr": addr}));
    let open = demo.enqueue("connect", json!({"addr": addr}));
    let toml = "[queues.sealed]\nnetwork = false\n";
    burst(&demo, toml, &["sealed", "default"], &[]);
    assert_eq!(demo.task(&open).status, TaskStatus::Finished);
    let Some(text) = unless_unsupported(&demo.task(&sealed), "network") else {
        return;
    };
    assert!(
        text.starts_with(&format!("cannot connect to {addr}")),
        "{text}"
    );
}

#[test]
fn a_task_running_as_nobody_cannot_write_a_root_owned_file() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    let dir = shared_dir(&demo, "shared");
    let owned = dir.join("root-owned.txt");
    fs::write(&owned, "original").expect("write");
    fs::set_permissions(&owned, fs::Permissions::from_mode(0o644)).expect("chmod");
    let write = enqueue(
        &demo,
        "untrusted",
        "write_file",
        json!({"path": owned, "text": "tampered"}),
    );
    let who = enqueue(&demo, "untrusted", "whoami", json!(null));
    let toml = "[queues.untrusted]\nuser = \"nobody\"\n";
    burst(&demo, toml, &["untrusted"], &[]);
    let text = error_of(&demo.task(&write)).to_owned();
    assert!(text.contains("Permission denied"), "{text}");
    assert_eq!(fs::read_to_string(&owned).expect("read"), "original");
    let meta = demo.task(&who).meta;
    assert_eq!(meta["uid"], json!(["65534", "65534", "65534", "65534"]));
    assert_eq!(meta["groups"], json!([]), "supplementary groups dropped");
    assert_eq!(meta["no_new_privs"], json!(["1"]));
}

#[test]
fn a_descriptor_probe_sees_only_stdio_and_its_socket() {
    let demo = Demo::new();
    let path = shared_dir(&demo, "out").join("fds.txt");
    let id = enqueue(&demo, "untrusted", "fds", json!({"path": path}));
    let toml = "[queues.untrusted]\nmemory_limit = \"1G\"\nseccomp = true\n";
    burst(&demo, toml, &["untrusted"], &[]);
    assert_eq!(demo.task(&id).status, TaskStatus::Finished);
    let listing = fs::read_to_string(&path).expect("fds file");
    for line in listing.lines() {
        let (fd, target) = line.split_once(' ').expect("fd line");
        let fd: u32 = fd.parse().expect("fd number");
        assert!(
            fd <= 2 || target.starts_with("socket:") || target.contains("/fd"),
            "unexpected descriptor {line}\n{listing}"
        );
    }
}

#[test]
fn grandchildren_die_with_a_timed_out_isolated_task() {
    let demo = Demo::new();
    let id = enqueue(
        &demo,
        "untrusted",
        "spawn",
        json!({"children": 2, "secs": 120}),
    );
    let toml = "[queues.untrusted]\nopen_files_limit = 128\n";
    burst(
        &demo,
        toml,
        &["untrusted"],
        &[("RT_DEFAULT_TASK_TIMEOUT", "2")],
    );
    let t = demo.task(&id);
    assert_eq!(error_of(&t), "timeout (2 s) reached");
    let children: Vec<i32> = serde_json::from_value(t.meta["children"].clone()).expect("pids");
    assert_eq!(children.len(), 2);
    for pid in children {
        wait_until(
            &format!("grandchild {pid} to die"),
            Duration::from_secs(60),
            || is_gone(pid),
        );
    }
}

#[test]
fn a_blocked_system_call_is_named() {
    let demo = Demo::new();
    let ptrace = enqueue(&demo, "untrusted", "ptrace", json!(null));
    let fine = enqueue(&demo, "untrusted", "noop", json!(null));
    let toml = "[queues.untrusted]\nseccomp = true\n";
    burst(&demo, toml, &["untrusted"], &[]);
    let Some(text) = unless_unsupported(&demo.task(&ptrace), "seccomp") else {
        return;
    };
    assert_eq!(text, "blocked system call ptrace");
    assert_eq!(demo.task(&fine).status, TaskStatus::Finished);
}

#[test]
fn landlock_allows_only_the_listed_paths() {
    let demo = Demo::new();
    // Both directories writable for the task's (dynamic) user: only
    // Landlock keeps it out of the second.
    let rw = shared_dir(&demo, "rw");
    let open = shared_dir(&demo, "open");
    let inside = enqueue(
        &demo,
        "untrusted",
        "write_file",
        json!({"path": rw.join("ok.txt"), "text": "x"}),
    );
    let outside_path = open.join("outside.txt");
    let outside = enqueue(
        &demo,
        "untrusted",
        "write_file",
        json!({"path": outside_path, "text": "x"}),
    );
    let toml = format!(
        "[queues.untrusted]\nread_only_paths = [\"/\"]\nread_write_paths = [{:?}]\n",
        rw.display().to_string()
    );
    burst(&demo, &toml, &["untrusted"], &[]);
    let Some(text) = unless_unsupported(&demo.task(&outside), "read_write_paths") else {
        return;
    };
    assert!(text.contains("Permission denied"), "{text}");
    assert!(!outside_path.exists());
    assert_eq!(demo.task(&inside).status, TaskStatus::Finished);
}

#[test]
fn a_restriction_that_cannot_be_applied_fails_the_task_without_running_it() {
    let demo = Demo::new();
    let marker = demo.path("ran.txt");
    let ids: Vec<String> = (0..2)
        .map(|_| {
            enqueue(
                &demo,
                "broken",
                "write_file",
                json!({"path": marker, "text": "ran\n"}),
            )
        })
        .collect();
    let missing = enqueue(&demo, "nopath", "noop", json!(null));
    let ordinary = demo.enqueue("noop", json!(null));
    let toml = "[queues.broken]\nuser = \"no-such-user-rt\"\n\n\
                [queues.nopath]\nread_only_paths = [\"/no/such/path/rt\"]\n";
    let out = burst(&demo, toml, &["broken", "nopath", "default"], &[]);
    for id in &ids {
        assert_eq!(
            error_of(&demo.task(id)),
            "isolation not applied (user: no user named \"no-such-user-rt\"); the task was not run"
        );
    }
    assert!(!marker.exists(), "the task ran unconfined");
    let text = error_of(&demo.task(&missing)).to_owned();
    assert!(
        text.starts_with("isolation not applied (read_only_paths: cannot open /no/such/path/rt"),
        "{text}"
    );
    assert_eq!(demo.task(&ordinary).status, TaskStatus::Finished);
    let log = format!("{}{}", out.stdout, out.stderr);
    let logged = log
        .matches("isolation profile of queue \"broken\" cannot be applied here")
        .count();
    assert_eq!(logged, 1, "logged once at start-up:\n{log}");
}

/// The "untrusted" queue of docs/security.md (its directory moved to the
/// test's temp dir, its CPU limit shortened) against every hostile demo
/// task at once, while ordinary tasks flow on `default`.
#[test]
fn the_documented_untrusted_queue_contains_every_hostile_task() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    let work = shared_dir(&demo, "untrusted");
    let page = include_str!("../../../docs/security.md");
    let start = page.find("```toml\n").expect("toml block") + "```toml\n".len();
    let len = page[start..].find("```").expect("end of block");
    let toml = page[start..start + len]
        .replace(
            "/var/lib/redis-tasks/untrusted",
            &work.display().to_string(),
        )
        .replace("cpu_time_limit = \"10s\"", "cpu_time_limit = \"2s\"");
    let redis = format!("127.0.0.1:{}", demo.redis.port());
    let hostile = |task: &str, args: Value| enqueue(&demo, "untrusted", task, args);
    let memory = hostile("alloc", json!({"mb": 1024}));
    let cpu = hostile("spin", json!({"secs": 120}));
    let snoop = hostile("env", json!({"path": work.join("env.txt")}));
    let probe = hostile("connect", json!({"addr": redis}));
    let fds = hostile("fds", json!({"path": work.join("fds.txt")}));
    let ptrace = hostile("ptrace", json!(null));
    // Last: the process limit counts every process of the profile's user,
    // so a task starting beside a fork bomb of the same user could not
    // start its worker process (docs/security.md says so).
    let bomb = hostile("spawn", json!({"children": 64, "secs": 60}));
    let ordinary: Vec<String> = (0..10).map(|_| demo.enqueue("noop", json!(null))).collect();
    burst(
        &demo,
        &toml,
        &["untrusted", "default"],
        &[("REDIS_PASSWORD", "hunter2")],
    );

    let error = |id: &str| error_of(&demo.task(id)).to_owned();
    assert!(
        error(&memory).starts_with("memory limit (256 MiB) exceeded"),
        "{}",
        error(&memory)
    );
    assert_eq!(error(&cpu), "CPU time limit (2 s) exceeded");
    assert!(
        error(&bomb).starts_with("process limit (32) reached"),
        "{}",
        error(&bomb)
    );
    assert!(
        error(&probe).starts_with("cannot connect to"),
        "{}",
        error(&probe)
    );
    assert_eq!(error(&ptrace), "blocked system call ptrace");
    assert_eq!(demo.task(&snoop).status, TaskStatus::Finished);
    let env = from_a_slot(&work, "env.txt");
    assert!(
        env.lines()
            .all(|l| ["PATH=", "LANG=", "TZ="].iter().any(|p| l.starts_with(p))),
        "{env}"
    );
    assert_eq!(demo.task(&fds).status, TaskStatus::Finished);
    for id in ordinary {
        assert_eq!(demo.task(&id).status, TaskStatus::Finished);
    }
}
