//! A private systemd for one test: PID 1 of its own PID, mount, network,
//! UTS, IPC and cgroup namespaces, driven from outside with
//! `nsenter -t <pid> -m -p systemctl ...`, killed (with everything it
//! started) on drop.
//!
//! What keeps the machine out of it:
//! - a cgroup of its own (a child of the test's cgroup in the cgroup2
//!   hierarchy), the root of its cgroup namespace, removed on drop;
//! - its own `/run`, `/tmp` and `/var/tmp`, read-only `/proc/sys` and
//!   `/sys`, its own loopback and hostname;
//! - a unit search path of its own (`SYSTEMD_UNIT_PATH`) holding a default
//!   target and empty stand-ins for `sysinit.target` and friends, and no
//!   generators, so none of the machine's units can start;
//! - `/etc/passwd` and `/etc/group` with a `redis-tasks` user bind-mounted
//!   over the machine's, inside its mount namespace only;
//! - its console on a pseudo-terminal (`script`), logged to `pid1.log`.
//!
//! A `redis-server` unit listens on the namespace's 127.0.0.1:6379 for the
//! supervisors, and on a unix socket in the test's temp dir for the test.
//! The unit under test is `systemd/redis-tasks@.service` as shipped, edited
//! the way its header tells a user to (see [`Systemd::install_unit`]).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis_tasks::Store;

use super::procs::{children_of, ns_pids, remove_cgroup_tree};
use super::setup::{
    BIN, HOST, Prereq, REQUIRE_VAR, boot_script_text, prerequisites, sh_quote, write,
    write_base_units, write_users,
};
use crate::e2e::demo_bin;
use crate::support::{Cmd, Output, wait_until};

pub use super::setup::REDIS_UNIT;

/// The shipped template unit, relative to the workspace root.
const TEMPLATE: &str = "systemd/redis-tasks@.service";

/// One booted private systemd.
pub struct Systemd {
    /// Host side of [`HOST`]: units, settings, logs, the Redis socket.
    dir: tempfile::TempDir,
    /// Host path of the namespace's root cgroup.
    cgroup: PathBuf,
    /// `script`, whose descendants are `unshare` and PID 1.
    script: Child,
    /// Host pid of the namespace's PID 1.
    pid1: i32,
    /// The test's connection to the namespace's Redis.
    store: Option<Store>,
}

/// Boots a private systemd, or prints why this machine cannot and returns
/// `None` (a failure instead when `REDIS_TASKS_REQUIRE_SYSTEMD_TEST=1`).
pub fn boot() -> Option<Systemd> {
    match prerequisites() {
        Ok(prereq) => Some(Systemd::boot(prereq)),
        Err(why) => {
            let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1");
            assert!(!required, "{REQUIRE_VAR}=1 but: {why}");
            // Straight to stderr: the test harness would swallow eprintln!
            // of a passing test.
            let _ = writeln!(std::io::stderr(), "SKIPPED (real-systemd test): {why}");
            None
        }
    }
}

impl Systemd {
    fn boot(prereq: Prereq) -> Systemd {
        let dir = tempfile::tempdir().expect("temp dir");
        // The service user must read settings through the bind mount.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let demo = demo_bin();
        let bin_dir = demo.parent().expect("demo binary's directory");
        write_base_units(dir.path(), &prereq.redis_server);
        write_users(dir.path());
        fs::create_dir_all(dir.path().join("none")).expect("empty generator dir");
        fs::create_dir_all(dir.path().join("log")).expect("log dir");
        let boot_script = dir.path().join("boot.sh");
        write(
            &boot_script,
            &boot_script_text(dir.path(), bin_dir, prereq.systemd),
        );

        let cgroup = prereq.parent_cgroup.join(format!(
            "redis-tasks-test-{}-{}",
            std::process::id(),
            unique()
        ));
        fs::create_dir(&cgroup)
            .unwrap_or_else(|e| panic!("create cgroup {}: {e}", cgroup.display()));
        let inner = format!(
            "unshare --pid --fork --mount --mount-proc --net --uts --ipc --cgroup \
             --propagation private sh {}",
            sh_quote(&boot_script.to_string_lossy())
        );
        let log = fs::File::create(dir.path().join("pid1.log")).expect("pid1 log");
        // Join the new cgroup first: it becomes the cgroup namespace's root.
        let script = Command::new("sh")
            .args([
                "-c",
                r#"echo $$ > "$1/cgroup.procs" && exec script -qfec "$2" /dev/null"#,
                "sh",
            ])
            .arg(&cgroup)
            .arg(&inner)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("pid1 log"))
            .stderr(log)
            .spawn()
            .expect("start script/unshare/systemd");
        let mut sd = Systemd {
            dir,
            cgroup,
            script,
            pid1: 0,
            store: None,
        };
        sd.pid1 = sd.find_pid1();
        let mut state = String::new();
        wait_until(
            "the private systemd to finish booting",
            Duration::from_secs(60),
            || {
                state = sd
                    .systemctl_output(&["is-system-running"])
                    .stdout
                    .trim()
                    .to_owned();
                // "offline" (no bus yet) and "starting" mean: not yet.
                match state.as_str() {
                    "running" => true,
                    "degraded" | "maintenance" | "stopping" => {
                        panic!("the private systemd is {state}:\n{}", sd.status_all())
                    }
                    _ => false,
                }
            },
        );
        let url = format!("unix://{}", sd.dir.path().join("redis.sock").display());
        let store = Store::open(&url, "redis_tasks").expect("open the namespace's redis");
        wait_until(
            "the namespace's redis to answer",
            Duration::from_secs(30),
            || store.ping().is_ok(),
        );
        sd.store = Some(store);
        sd
    }

    /// Waits for `script`'s descendant that is PID 1 of a new PID namespace
    /// and runs systemd.
    fn find_pid1(&mut self) -> i32 {
        let mut found = 0;
        wait_until("systemd to start as PID 1", Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.script.try_wait() {
                panic!("script/unshare exited with {status}:\n{}", self.pid1_log());
            }
            let mut todo = vec![self.script.id() as i32];
            while let Some(pid) = todo.pop() {
                let is_init = ns_pids(pid).is_some_and(|p| p.len() > 1 && p.last() == Some(&1));
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if is_init && comm.trim() == "systemd" {
                    found = pid;
                    return true;
                }
                todo.extend(children_of(pid));
            }
            false
        });
        found
    }

    /// The test's Redis store (same server as the supervisors').
    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("store")
    }

    /// `systemctl args` run inside the namespace.
    fn systemctl_cmd(&self, args: &[&str]) -> Cmd {
        let pid = self.pid1.to_string();
        let mut cmd = Cmd::new("nsenter");
        // A stop may take its whole TimeoutStopSec (90 s).
        cmd.args(["-t", pid.as_str(), "-m", "-p", "systemctl", "--no-pager"])
            .args(args)
            .timeout(Duration::from_secs(150));
        cmd
    }

    /// Runs `systemctl args` inside; whatever its status.
    pub fn systemctl_output(&self, args: &[&str]) -> Output {
        self.systemctl_cmd(args).output()
    }

    /// Runs `systemctl args` inside and asserts success.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.systemctl_cmd(args).run()
    }

    /// One property of `unit` (`systemctl show -p NAME --value`).
    pub fn show(&self, unit: &str, property: &str) -> String {
        self.systemctl(&["show", "-p", property, "--value", unit])
            .stdout
            .trim_end_matches('\n')
            .to_owned()
    }

    /// Waits until `unit`'s `ActiveState` is `state`.
    pub fn wait_state(&self, unit: &str, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.show(unit, "ActiveState");
            if last == state {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{unit} is {last}, not {state}, after {timeout:?}:\n{}",
                    self.status(unit)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `systemctl status unit` as a person would read it.
    pub fn status(&self, unit: &str) -> String {
        let o = self.systemctl_output(&["status", "--lines=0", unit]);
        format!("{}{}", o.stdout, o.stderr)
    }

    fn status_all(&self) -> String {
        self.status("*")
    }

    /// Installs the shipped template, edited as its header says: the demo
    /// binary for `/usr/local/bin/my-app` and the test's settings directory
    /// for `/etc/redis-tasks/`. Adds a drop-in that sends the supervisor's
    /// output to `log/<instance>.log` (there is no journal here) with
    /// `RUST_LOG=debug`.
    pub fn install_unit(&self) {
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join(TEMPLATE);
        let text = fs::read_to_string(&template).expect("read the unit template");
        let mut edited = String::new();
        let mut exec_starts = 0;
        for line in text.lines() {
            if line.starts_with("ExecStart=") {
                exec_starts += 1;
                assert!(line.contains("/usr/local/bin/my-app"), "{line}");
                assert!(line.contains("/etc/redis-tasks/%i.toml"), "{line}");
                edited.push_str(
                    &line
                        .replace("/usr/local/bin/my-app", &format!("{BIN}/{}", demo_name()))
                        .replace("/etc/redis-tasks/", &format!("{HOST}/etc/")),
                );
            } else {
                edited.push_str(line);
            }
            edited.push('\n');
        }
        assert_eq!(exec_starts, 1, "the template should have one ExecStart");
        let units = self.dir.path().join("units");
        write(&units.join("redis-tasks@.service"), &edited);
        write(
            &units.join("redis-tasks@.service.d/test-log.conf"),
            &format!(
                "[Service]\nStandardOutput=append:{HOST}/log/%i.log\nStandardError=inherit\n\
                 Environment=RUST_LOG=debug\n"
            ),
        );
        self.systemctl(&["daemon-reload"]);
    }

    /// Writes the settings file of `instance` (this namespace's Redis,
    /// `concurrency` slots, fast heartbeats) and, if given, a drop-in for
    /// that instance only; returns the unit's name.
    pub fn add_instance(
        &self,
        instance: &str,
        concurrency: usize,
        drop_in: Option<&str>,
    ) -> String {
        write(
            &self.dir.path().join("etc").join(format!("{instance}.toml")),
            &format!(
                "redis_url = \"redis://127.0.0.1:6379\"\nworker_concurrency = {concurrency}\n\
                 worker_heartbeat_freq = 1\nworker_heartbeat_timeout = 3\nmaintenance_freq = 1\n"
            ),
        );
        let unit = format!("redis-tasks@{instance}.service");
        if let Some(text) = drop_in {
            write(
                &self
                    .dir
                    .path()
                    .join("units")
                    .join(format!("{unit}.d"))
                    .join("test.conf"),
                text,
            );
            self.systemctl(&["daemon-reload"]);
        }
        unit
    }

    /// The settings file of `instance` (see [`Systemd::add_instance`]).
    pub fn settings_path(&self, instance: &str) -> PathBuf {
        self.dir.path().join("etc").join(format!("{instance}.toml"))
    }

    /// The supervisor's log of `instance` so far.
    pub fn supervisor_log(&self, instance: &str) -> String {
        fs::read_to_string(self.dir.path().join("log").join(format!("{instance}.log")))
            .unwrap_or_default()
    }

    /// PID 1's log so far (debug level: every state change of every unit),
    /// with the terminal's line ends made plain.
    pub fn pid1_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pid1.log"))
            .unwrap_or_default()
            .replace("\r\n", "\n")
    }

    /// PID 1's log from byte `mark` (an earlier `pid1_log().len()`) on.
    pub fn pid1_log_since(&self, mark: usize) -> String {
        self.pid1_log().get(mark..).unwrap_or_default().to_owned()
    }

    /// The notifications PID 1 accepted from `unit` after `mark`, in order,
    /// each as the comma-separated assignments it logged (`READY=1`,
    /// `RELOADING=1, MONOTONIC_USEC=...`).
    pub fn notifications(&self, unit: &str, mark: usize) -> Vec<String> {
        let prefix = format!("{unit}: Got notification message from PID ");
        self.pid1_log_since(mark)
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(&prefix)?;
                let (_, message) = rest.split_once(" (")?;
                Some(message.strip_suffix(')').unwrap_or(message).to_owned())
            })
            .collect()
    }

    /// The host path of `unit`'s cgroup, if it runs.
    pub fn unit_cgroup(&self, unit: &str) -> Option<PathBuf> {
        let group = self.show(unit, "ControlGroup");
        (!group.is_empty()).then(|| self.cgroup.join(group.trim_start_matches('/')))
    }

    /// The host pids of every process in `unit`'s cgroup and the cgroups
    /// below it (the supervisor's delegated worker cgroups).
    pub fn unit_pids(&self, unit: &str) -> Vec<i32> {
        fn walk(dir: &Path, out: &mut Vec<i32>) {
            out.extend(
                fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
        }
        let mut pids = Vec::new();
        if let Some(dir) = self.unit_cgroup(unit) {
            walk(&dir, &mut pids);
        }
        pids
    }

    /// The host pid of `unit`'s main process, if it runs.
    pub fn main_pid(&self, unit: &str) -> Option<i32> {
        let inside: i32 = self.show(unit, "MainPID").parse().ok()?;
        if inside == 0 {
            return None;
        }
        self.unit_pids(unit)
            .into_iter()
            .find(|&pid| ns_pids(pid).and_then(|p| p.last().copied()) == Some(inside))
    }

    /// The host pids of `unit`'s worker processes, sorted.
    pub fn worker_pids(&self, unit: &str) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .unit_pids(unit)
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    c.split(|&b| b == 0)
                        .any(|arg| arg.starts_with(b"--redis-tasks-worker-fd"))
                })
            })
            .collect();
        // A process moved between cgroups while the walk read them is
        // listed twice.
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn diagnostics(&self) -> String {
        let mut out = String::new();
        out.push_str("--- systemctl status (private systemd) ---\n");
        out.push_str(&self.status_all());
        let pid1 = self.pid1_log();
        let lines: Vec<&str> = pid1
            .lines()
            .filter(|l| !l.starts_with("Sent message") && !l.starts_with("Got message"))
            .filter(|l| l.contains("redis-tasks") || l.contains("Failed") || l.contains("failed"))
            .collect();
        let tail = &lines[lines.len().saturating_sub(150)..];
        out.push_str("--- PID 1 log, unit lines, last 150 ---\n");
        out.push_str(&tail.join("\n"));
        if let Ok(logs) = fs::read_dir(self.dir.path().join("log")) {
            for entry in logs.flatten() {
                let text = fs::read_to_string(entry.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(150)..];
                out.push_str(&format!(
                    "\n--- supervisor log {}, last 150 lines ---\n{}",
                    entry.path().display(),
                    tail.join("\n")
                ));
            }
        }
        let redis = fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        out.push_str(&format!("\n--- redis log ---\n{redis}\n--- end ---\n"));
        out
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if std::thread::panicking() && self.pid1 > 0 {
            eprintln!("{}", self.diagnostics());
        }
        // Killing PID 1 kills every process of its PID namespace.
        if self.pid1 > 0 {
            let _ = kill(Pid::from_raw(self.pid1), Signal::SIGKILL);
        }
        let _ = fs::write(self.cgroup.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.script.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.script.kill();
                    let _ = self.script.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        remove_cgroup_tree(&self.cgroup, deadline);
    }
}

/// The demo binary's file name (in [`BIN`] inside the namespace).
fn demo_name() -> String {
    demo_bin()
        .file_name()
        .expect("demo binary file name")
        .to_string_lossy()
        .into_owned()
}

/// Whether `pid` is still a live process (not gone, not a zombie).
pub fn is_alive(pid: i32) -> bool {
    !crate::e2e::is_gone(pid)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}
