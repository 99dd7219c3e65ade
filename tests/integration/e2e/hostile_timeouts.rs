//! Build point 5 of "contain hostile tasks, round two": timeouts hold for
//! every profile under every supervisor. A supervisor that runs as a
//! non-root user with only CAP_SETUID and CAP_SETGID (the set
//! docs/security.md gave for `user` profiles) may switch a worker process
//! to another user but not signal it afterwards: its kill fails with
//! EPERM. Where it has a worker cgroup it kills through `cgroup.kill`;
//! where it has none it must refuse to start, naming CAP_KILL, instead of
//! leaving a slot blocked on a task that outlives its timeout.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use super::{Demo, Running, demo_bin_for_everyone, error_of, is_gone, root_or_skip};

const NOBODY: u32 = 65534;

/// Starts `worker` as `nobody` with CAP_SETUID and CAP_SETGID only
/// (inheritable, ambient and bounding set), serving `untrusted` whose
/// profile switches to a dynamic user. With `cgroup`, the supervisor is
/// moved into that (delegated) cgroup before it starts.
fn start_with_setuid_caps(demo: &Demo, cgroup: Option<&Path>) -> Running {
    let config = demo.path("settings.toml");
    fs::write(&config, "[queues.untrusted]\nuser = \"dynamic\"\n").expect("settings");
    fs::set_permissions(demo.dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = demo.path("supervisor.log");
    let file = fs::File::create(&log).expect("log file");
    let caps = "-all,+setuid,+setgid";
    let mut cmd = Command::new("setpriv");
    cmd.args([
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_owned(),
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set={caps}"),
    ])
    .arg(demo_bin_for_everyone())
    .args(["worker", "--concurrency", "1", "--config"])
    .arg(&config)
    .arg("untrusted")
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env("REDIS_URL", demo.redis.url())
    .env("RUST_LOG", "debug")
    .current_dir("/")
    .stdin(Stdio::null())
    .stdout(file.try_clone().expect("log file"))
    .stderr(file);
    if let Some(cgroup) = cgroup {
        let procs = cgroup.join("cgroup.procs");
        // SAFETY: writes this (forked, not yet executed) child's pid into
        // a cgroup file: open/write/close only, no allocation (the path
        // was made before the fork).
        let procs = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()).expect("path");
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
    }
    let child = cmd.spawn().expect("start the demo with setpriv");
    Running { child, log }
}

/// A cgroup delegated to `nobody` (as systemd's `Delegate=yes` would),
/// removed on drop.
struct Delegated(PathBuf);

impl Delegated {
    fn new() -> Option<Delegated> {
        let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mounts.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
        let dir = mount
            .join(own.trim_start_matches('/'))
            .join(format!("rt-delegated-{}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        for file in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            let path = if file.is_empty() {
                dir.clone()
            } else {
                dir.join(file)
            };
            std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).ok()?;
        }
        Some(Delegated(dir))
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        let _ = fs::write(self.0.join("cgroup.kill"), "1");
        // Children first; empty once their processes are reaped.
        for _ in 0..200 {
            let subdirs: Vec<PathBuf> = walk(&self.0);
            for dir in subdirs.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            if fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[test]
fn without_cap_kill_or_a_cgroup_a_user_profile_is_refused_at_start() {
    if !root_or_skip("to start the supervisor as nobody with chosen capabilities") {
        return;
    }
    let demo = Demo::new();
    let id = demo
        .store
        .queue("untrusted")
        .enqueue("quick_timeout", &json!({"secs": 60}))
        .expect("enqueue");
    let mut running = start_with_setuid_caps(&demo, None);
    let code = running.wait_exit(Duration::from_secs(60));
    assert_ne!(code, Some(0), "{}", running.log());
    let log = running.log();
    assert!(log.contains("CAP_KILL"), "{log}");
    assert!(log.contains("AmbientCapabilities="), "{log}");
    assert_eq!(demo.task(&id).status, TaskStatus::Queued, "{log}");
}

#[test]
fn with_a_delegated_cgroup_a_user_profile_task_dies_at_its_timeout() {
    if !root_or_skip("to start the supervisor as nobody with chosen capabilities") {
        return;
    }
    let Some(cgroup) = Delegated::new() else {
        eprintln!("skipped: cannot make a cgroup v2 to delegate here");
        return;
    };
    let demo = Demo::new();
    let mut running = start_with_setuid_caps(&demo, Some(&cgroup.0));
    let id = demo
        .store
        .queue("untrusted")
        .enqueue("quick_timeout", &json!({"secs": 60}))
        .expect("enqueue");
    // 1 s timeout; far more than enough, never a 60 s sleep.
    let t = demo.wait_ended(&id, Duration::from_secs(30));
    assert_eq!(error_of(&t), "timeout (1 s) reached", "{}", running.log());
    let pid = t.meta.get("pid").and_then(serde_json::Value::as_i64);
    if let Some(pid) = pid {
        assert!(is_gone(pid as i32));
    }
    running.stop();
}
