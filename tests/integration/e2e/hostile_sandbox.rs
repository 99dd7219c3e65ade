//! Hostile tasks that try to leave their sandbox (issue "Contain hostile
//! tasks", points 3 and 5): mount over a host directory, create
//! namespaces, take SIGSYS away from the worker process, steal the
//! supervisor's descriptors, keep root's capabilities, reach Redis over its
//! Unix socket with the network off. Each must fail with a recorded
//! outcome; and the documented `strict` profile must still run an ordinary
//! task.
//!
//! Most attacks only mean something for a root supervisor (that is where a
//! worker process without `user` has capabilities to abuse); tests that
//! need root say so and skip.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis_tasks::protocol::{TaskRecord, TaskStatus};
use serde_json::{Value, json};

use super::{Demo, error_of};
use crate::support::{Output, wait_until};

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root (capabilities to abuse, switching user, namespaces)");
    false
}

/// Runs `worker --burst` on `queues` with `toml` as the settings file.
fn burst(demo: &Demo, toml: &str, queues: &[&str]) -> Output {
    let config = demo.path("settings.toml");
    fs::write(&config, toml).expect("write settings");
    let mut cmd = demo.cmd_with(super::demo_bin_for_everyone());
    cmd.args(["worker", "--burst", "--concurrency", "2", "--config"])
        .arg(&config)
        .args(queues)
        .timeout(Duration::from_secs(120));
    cmd.run()
}

fn enqueue(demo: &Demo, queue: &str, task: &str, args: Value) -> String {
    demo.store
        .queue(queue)
        .enqueue(task, &args)
        .expect("enqueue")
}

/// The error text, or `None` (and a note) when the profile could not be
/// applied because this machine lacks `restriction`.
fn unless_unsupported(t: &TaskRecord, restriction: &str) -> Option<String> {
    let text = error_of(t).to_owned();
    if text.starts_with(&format!("isolation not applied ({restriction}:")) {
        eprintln!("skipped: this machine cannot apply {restriction}: {text}");
        return None;
    }
    Some(text)
}

/// Runs one hostile task alone on a `seccomp = true` queue and returns its
/// recorded error (`None`: seccomp unavailable here).
fn under_seccomp(demo: &Demo, task: &str, args: Value) -> Option<String> {
    let id = enqueue(demo, "untrusted", task, args);
    burst(demo, "[queues.untrusted]\nseccomp = true\n", &["untrusted"]);
    let record = demo.task(&id);
    assert_eq!(
        record.status,
        TaskStatus::Failed,
        "the attack worked: {record:?}"
    );
    unless_unsupported(&record, "seccomp")
}

/// Whether `dir` is a mount point in this mount namespace.
fn is_mount_point(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.as_str()))
}

/// Detaches whatever a task mounted on `dir`, even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while is_mount_point(&self.0) {
            let status = Command::new("umount").arg("-l").arg(&self.0).status();
            if !status.is_ok_and(|s| s.success()) {
                break;
            }
        }
    }
}

#[test]
fn mounting_over_a_host_directory_with_the_new_mount_api_is_blocked() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    let target = demo.path("host-dir");
    fs::create_dir_all(&target).expect("mkdir");
    fs::write(target.join("canary"), "host").expect("canary");
    let _cleanup = Unmount(target.clone());
    let error = under_seccomp(&demo, "mount_over", json!({"path": target}));
    assert!(!is_mount_point(&target), "a task mounted over {target:?}");
    assert_eq!(
        fs::read_to_string(target.join("canary")).ok().as_deref(),
        Some("host")
    );
    assert!(!target.join("planted").exists());
    if let Some(error) = error {
        assert_eq!(error, "blocked system call fsopen");
    }
}

#[test]
fn clone_with_namespace_flags_is_blocked() {
    let demo = Demo::new();
    if let Some(error) = under_seccomp(&demo, "clone_namespaces", json!(null)) {
        assert_eq!(error, "blocked system call clone");
    }
}

#[test]
fn unshare_of_user_and_mount_namespaces_is_blocked() {
    let demo = Demo::new();
    if let Some(error) = under_seccomp(&demo, "unshare_namespaces", json!(null)) {
        assert_eq!(error, "blocked system call unshare");
    }
}

#[test]
fn a_task_cannot_install_its_own_sigsys_handler_to_survive_a_blocked_call() {
    let demo = Demo::new();
    if let Some(error) = under_seccomp(&demo, "own_sigsys_handler", json!({"how": "handler"})) {
        assert_eq!(error, "blocked system call rt_sigaction");
    }
}

#[test]
fn a_task_cannot_ignore_sigsys_to_survive_a_blocked_call() {
    let demo = Demo::new();
    if let Some(error) = under_seccomp(&demo, "own_sigsys_handler", json!({"how": "ignore"})) {
        assert_eq!(error, "blocked system call rt_sigaction");
    }
}

/// The kernel delivers a seccomp SIGSYS even when it is blocked (resetting
/// it to its default action), so masking it kills the process: the call
/// cannot be named then, but the task still ends.
#[test]
fn a_task_that_blocks_sigsys_still_dies_on_a_blocked_call() {
    let demo = Demo::new();
    if let Some(error) = under_seccomp(&demo, "own_sigsys_handler", json!({"how": "mask"})) {
        assert!(error.starts_with("blocked system call"), "{error}");
    }
}

#[test]
fn a_task_cannot_open_a_pidfd_of_the_supervisor_to_steal_its_descriptors() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    if let Some(error) = under_seccomp(&demo, "steal_parent_fd", json!(null)) {
        assert_eq!(error, "blocked system call pidfd_open");
    }
}

#[test]
fn an_isolated_worker_process_of_a_root_supervisor_has_no_capabilities() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    let id = enqueue(&demo, "untrusted", "capabilities", json!(null));
    let ordinary = demo.enqueue("capabilities", json!(null));
    burst(
        &demo,
        "[queues.untrusted]\nmemory_limit = \"1G\"\n",
        &["untrusted", "default"],
    );
    let record = demo.task(&id);
    assert_eq!(record.status, TaskStatus::Finished, "{record:?}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            record.meta[set].as_str(),
            Some("0000000000000000"),
            "{set}: {:?}",
            record.meta
        );
    }
    // Ordinary tasks are not isolated: they keep what the supervisor has.
    let ordinary = demo.task(&ordinary);
    assert_ne!(ordinary.meta["CapBnd"].as_str(), Some("0000000000000000"));
}

/// A `redis-server` listening only on a Unix socket in `dir`, killed on drop.
struct UnixRedis {
    child: Child,
    socket: PathBuf,
}

impl UnixRedis {
    fn start(dir: &Path) -> UnixRedis {
        let socket = dir.join("redis.sock");
        let bin = std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
        let child = Command::new(bin)
            .args(["--port", "0", "--save", "", "--unixsocketperm", "777"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = UnixRedis { child, socket };
        let answers = || {
            std::os::unix::net::UnixStream::connect(&server.socket).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok()
            })
        };
        wait_until(
            "redis-server answers on its Unix socket",
            Duration::from_secs(10),
            answers,
        );
        server
    }
}

impl Drop for UnixRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn network_off_also_keeps_a_task_off_redis_s_unix_socket() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let redis = UnixRedis::start(demo.dir.path());
    let args = json!({"path": redis.socket});
    let probe = enqueue(&demo, "untrusted", "unix_connect", args.clone());
    let ordinary = demo.enqueue("unix_connect", args);
    burst(
        &demo,
        "[queues.untrusted]\nnetwork = false\n",
        &["untrusted", "default"],
    );
    assert_eq!(demo.task(&ordinary).status, TaskStatus::Finished);
    let record = demo.task(&probe);
    assert_eq!(record.status, TaskStatus::Failed, "the task reached Redis");
    let Some(error) = unless_unsupported(&record, "network") else {
        return;
    };
    assert!(
        error.starts_with(&format!("cannot connect to {}", redis.socket.display())),
        "{error}"
    );
}

/// The `strict` preset of docs/security.md (its own block, with the test's
/// directory and `nobody`) runs ordinary tasks to the end.
#[test]
fn the_documented_strict_preset_runs_an_ordinary_task() {
    if !is_root() {
        return;
    }
    let demo = Demo::new();
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let work = demo.path("strict");
    fs::create_dir_all(&work).expect("mkdir");
    fs::set_permissions(&work, fs::Permissions::from_mode(0o777)).expect("chmod");
    let page = include_str!("../../../docs/security.md");
    let section = &page[page.find("## The `strict` preset").expect("strict section")..];
    let start = section.find("```toml\n").expect("toml block") + "```toml\n".len();
    let len = section[start..].find("```").expect("end of block");
    let toml = section[start..start + len]
        .replace("/var/lib/redis-tasks/strict", &work.display().to_string())
        // Debian's `nogroup` stands in for the preset's own group.
        .replace("\"rt-strict\"", "\"65534\"");
    let file = work.join("out.txt");
    let write = enqueue(
        &demo,
        "strict",
        "write_file",
        json!({"path": file, "text": "ok"}),
    );
    let spawn = enqueue(
        &demo,
        "strict",
        "spawn",
        json!({"children": 2, "secs": 0.1}),
    );
    let fine = enqueue(&demo, "strict", "noop", json!(null));
    burst(&demo, &toml, &["strict"]);
    for id in [&write, &spawn, &fine] {
        let record = demo.task(id);
        if record.status == TaskStatus::Failed
            && unless_unsupported(&record, "read_only_paths").is_none()
        {
            return;
        }
        assert_eq!(record.status, TaskStatus::Finished, "{record:?}");
    }
    // The group may write the working directory, so each slot has its own
    // below it, which the task saw at `working_dir`.
    let written: Vec<String> = fs::read_dir(&work)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("slot-"))
        })
        .filter_map(|dir| fs::read_to_string(dir.join("out.txt")).ok())
        .collect();
    assert_eq!(written, ["ok"], "no slot directory holds the file");
    assert!(!file.exists(), "written to the shared directory");
}
