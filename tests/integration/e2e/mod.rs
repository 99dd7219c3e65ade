//! End-to-end tests of the supervisor: the demo binary (`examples/demo`,
//! built as the `redis-tasks-demo` bin target) as a real supervisor with real worker processes against a real Redis.
//!
//! - `async_tasks`: async task functions end exactly like synchronous ones.
//! - `flow_control`: concurrency and rate limits shared by supervisors,
//!   pause and resume, the `queue` admin verbs, limits seeded by settings.
//! - `history`: the per-minute history of endings, written by a real
//!   supervisor's endings.
//! - `outcomes`: every abnormal ending a task can cause itself (docs/architecture.md).
//! - `shutdown`: graceful and immediate shutdown, the postpone guard.
//! - `recovery`: kill -9 of a supervisor, recovery by restart and by
//!   another supervisor's maintenance.
//! - `recovery_identity`: start-up recovery despite a reused pid or a
//!   zombie of the previous incarnation.
//! - `chaos`: the soak: thousands of tasks while supervisors, worker
//!   processes and Redis are killed; nothing lost, nothing run twice.
//! - `hostile_producer`: raw records that lie about their queue, ask for a
//!   timeout without end, or carry a 100 MB argument.
//! - `hostile_rates`: raw progress and meta frames past the rate limit.
//! - `hostile_tree`, `hostile_ipc`: tasks that attack containment (escaping
//!   the process tree, hiding a crash, flooding or forging frames).
//! - `hostile_reuse`: a process the task started outside its worker
//!   process's tree (`clone(CLONE_PARENT)`) answering for the next task.
//! - `hostile_timeouts`: timeouts of `user` profiles under a supervisor
//!   with only CAP_SETUID and CAP_SETGID.
//! - `hostile_identity`: a root supervisor's isolated task is never root.
//! - `hostile_namespaces`: slots share nothing (signals, SysV IPC, `/tmp`,
//!   working directory), under a root and a non-root supervisor.
//! - `isolation`: what a worker process inherits (environment, descriptors,
//!   process group) and reuse of worker processes.
//! - `isolation_limits`: untrusted tasks under `[queues.NAME]` profiles:
//!   limits, user, environment, network, Landlock, seccomp, refusals.
//! - `outage`: Redis down and back, Redis losing its data.
//! - `retries_delays`: retries with backoff (attempts recorded, a crash on
//!   the last attempt), delayed tasks raced by three supervisors (one
//!   SIGKILLed), cancel of a running task and its children, the CLI's
//!   `--in`, `--at`, `--timeout`, `--retries`, unknown hash fields.
//! - `results`: task results, waiting for them, `max_result_bytes`.
//! - `task_output`: a task's own stdout and stderr kept with it (`task
//!   logs`), in the supervisor's log, bounded against floods, garbage and
//!   a leftover child that writes after its task ended.
//! - `setup_hook`: the per-process setup hook, its state, its failures.
//! - `signals`: the signal table (scaling, reload, quiet, dump, drain).
//! - `worker_cgroups`: a cgroup (v2) per worker process; leftovers of a
//!   dead supervisor killed at start.
//! - `startup`: refusing to start (middleware check, worker that cannot
//!   start) and a worker process that fails to start mid-run.

mod async_tasks;
mod chaos;
mod children;
mod dynamic_users;
mod expiry;
mod flow_control;
mod history;
mod hostile_identity;
mod hostile_ipc;
mod hostile_namespaces;
mod hostile_producer;
mod hostile_rates;
mod hostile_reuse;
mod hostile_sandbox;
mod hostile_supervisor;
mod hostile_timeouts;
mod hostile_tree;
mod isolation;
mod isolation_limits;
mod mended_data;
mod outage;
mod outcomes;
mod read_ahead;
mod recovery;
mod recovery_identity;
mod results;
mod retries_delays;
mod sentry;
mod setup_hook;
mod shutdown;
mod signals;
mod startup;
mod supervisor_control;
mod task_output;
mod traces;
mod unanswered_redis;
mod worker_cgroups;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use redis_tasks::{Store, TaskRecord, TaskStatus};
use serde_json::Value;

use crate::support::{Cmd, Output, RedisServer, wait_until};

/// The demo binary (`examples/demo`, the `redis-tasks-demo` bin target),
/// built by cargo together with this test binary: the `demo` feature that
/// the bin requires is on for tests through the package's dev-dependency
/// on itself, so cargo sets `CARGO_BIN_EXE_redis-tasks-demo`.
/// `REDIS_TASKS_DEMO_BIN` names another build of it (several checkouts
/// sharing one target directory overwrite each other's link there).
/// Isolated worker processes run it as other users: in a checkout they
/// cannot reach (a `mktemp -d` directory is 0700) the tests run
/// [`demo_bin_for_everyone`]'s copy instead.
pub fn demo_bin() -> PathBuf {
    let built = built_demo_bin();
    if reachable_by_everyone(&built) {
        built
    } else {
        demo_bin_for_everyone()
    }
}

/// The demo binary as built (or as `REDIS_TASKS_DEMO_BIN` names it).
fn built_demo_bin() -> PathBuf {
    std::env::var_os("REDIS_TASKS_DEMO_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_redis-tasks-demo")),
        PathBuf::from,
    )
}

/// Whether every user may run `bin`: it and each directory above it allow
/// others to execute (search) them.
fn reachable_by_everyone(bin: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    bin.ancestors().all(|p| {
        p.as_os_str().is_empty()
            || fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// Where tests keep files that worker processes must see: `/var/tmp`, not
/// `/tmp`, since an isolated worker process gets a private `/tmp` (and
/// keeps the host's when its binary or directories are below it).
pub fn shared_temp_dir() -> PathBuf {
    let var_tmp = Path::new("/var/tmp");
    if var_tmp.is_dir() {
        var_tmp.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The demo binary where every user can run it. Isolation tests run worker
/// processes as `nobody`, which cannot enter a checkout kept in a private
/// (0700) directory, such as one made by `mktemp -d`; so they run a copy in
/// a directory of its own under [`shared_temp_dir`] (made once per run).
pub fn demo_bin_for_everyone() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Copies left by earlier runs whose process is gone are removed.
        if let Ok(entries) = fs::read_dir(shared_temp_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let pid = name
                    .strip_prefix("redis-tasks-demo-")
                    .and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = shared_temp_dir().join(format!("redis-tasks-demo-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("make the demo copy's directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let bin = dir.join("redis-tasks-demo");
        fs::copy(built_demo_bin(), &bin).expect("copy the demo binary");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    })
    .clone()
}

/// A Redis, a temp dir and the demo binary pointed at both.
pub struct Demo {
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub store: Store,
}

/// A supervisor running in the background; killed on drop, its log printed
/// if the test fails.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    /// The supervisor's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the supervisor.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// Waits for the supervisor to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut status = None;
        wait_until("supervisor to exit", timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.and_then(|s| s.code())
    }

    /// Sends SIGTERM and checks the supervisor exits with status 0.
    pub fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{}", self.log());
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- supervisor log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

impl Demo {
    pub fn new() -> Demo {
        Demo::with_redis(RedisServer::start())
    }

    /// A demo against this Redis.
    pub fn with_redis(redis: RedisServer) -> Demo {
        let store = redis.store();
        Demo {
            redis,
            dir: tempfile::Builder::new()
                .prefix("redis-tasks-test-")
                .tempdir_in(shared_temp_dir())
                .expect("temp dir"),
            store,
        }
    }

    /// A path in the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The outcome log the demo's middleware writes.
    pub fn outcome_log(&self) -> PathBuf {
        self.path("outcomes.jsonl")
    }

    /// The outcome log's lines, parsed.
    pub fn outcomes(&self) -> Vec<Value> {
        fs::read_to_string(self.outcome_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("outcome line is JSON"))
            .collect()
    }

    /// The outcome-log lines for task `id`.
    pub fn outcomes_of(&self, id: &str) -> Vec<Value> {
        self.outcomes()
            .into_iter()
            .filter(|o| o["id"] == id)
            .collect()
    }

    /// Enqueues on `default`.
    pub fn enqueue(&self, task: &str, args: Value) -> String {
        self.store
            .queue("default")
            .enqueue(task, &args)
            .expect("enqueue")
    }

    /// The demo binary with this test's Redis, outcome log and fast timers.
    pub fn cmd(&self) -> Cmd {
        self.cmd_with(demo_bin())
    }

    /// Like [`Demo::cmd`], running the demo binary at `bin`.
    pub fn cmd_with(&self, bin: PathBuf) -> Cmd {
        let mut cmd = Cmd::new(bin);
        self.configure(&mut cmd);
        cmd
    }

    fn configure(&self, cmd: &mut Cmd) {
        cmd.env("REDIS_URL", self.redis.url())
            .env("DEMO_OUTCOME_LOG", self.outcome_log())
            .env("RT_WORKER_HEARTBEAT_FREQ", "1")
            .env("RT_WORKER_HEARTBEAT_TIMEOUT", "3")
            .env("RT_MAINTENANCE_FREQ", "1")
            // Interrupt at once on SIGTERM (the tests of draining say otherwise).
            .env("RT_DRAIN_TIMEOUT", "0")
            .env("RUST_LOG", "debug");
    }

    /// Runs `worker --burst` with `args` to the end and checks it succeeded.
    pub fn burst(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.args(["worker", "--burst"])
            .args(args)
            .timeout(Duration::from_secs(120));
        cmd.run()
    }

    /// Starts `worker` with `args` in the background, with extra environment.
    pub fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let log = self.path(&format!("supervisor-{}.log", unique()));
        let file = fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(demo_bin());
        cmd.arg("worker")
            .args(args)
            .env_remove("RT_SETTINGS")
            .env("REDIS_URL", self.redis.url())
            .env("DEMO_OUTCOME_LOG", self.outcome_log())
            .env("RT_WORKER_HEARTBEAT_FREQ", "1")
            .env("RT_WORKER_HEARTBEAT_TIMEOUT", "3")
            .env("RT_MAINTENANCE_FREQ", "1")
            .env("RT_DRAIN_TIMEOUT", "0")
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let child = cmd.spawn().expect("start the demo supervisor");
        Running { child, log }
    }

    /// The task record.
    pub fn task(&self, id: &str) -> TaskRecord {
        self.store.task(id).expect("task record")
    }

    /// Waits until task `id` has `status`; returns its record.
    pub fn wait_status(&self, id: &str, status: TaskStatus, timeout: Duration) -> TaskRecord {
        wait_until(&format!("task {id} to be {status}"), timeout, || {
            self.store.task(id).is_ok_and(|t| t.status == status)
        });
        self.task(id)
    }

    /// Waits until task `id` has ended (finished or failed).
    pub fn wait_ended(&self, id: &str, timeout: Duration) -> TaskRecord {
        wait_until(&format!("task {id} to end"), timeout, || {
            self.store
                .task(id)
                .is_ok_and(|t| matches!(t.status, TaskStatus::Finished | TaskStatus::Failed))
        });
        self.task(id)
    }

    /// The ids waiting in `queue`, front first.
    pub fn queue_ids(&self, queue: &str) -> Vec<String> {
        self.store.queue(queue).ids(0, 1000).expect("queue ids")
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// The error text of a failed task (panics with the record otherwise).
pub fn error_of(t: &TaskRecord) -> &str {
    assert_eq!(t.status, TaskStatus::Failed, "expected a failure: {t:#?}");
    t.error.as_deref().unwrap_or("")
}

/// The command name of the anchor, the init of the worker processes' PID
/// namespace: a child of the supervisor that is no worker process.
const ANCHOR_NAME: &str = "rt-pidns-anchor";

/// The worker processes (direct children, the anchor aside) of the
/// process `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out.retain(|child| {
        fs::read_to_string(format!("/proc/{child}/comm")).map_or(true, |c| c.trim() != ANCHOR_NAME)
    });
    out.sort_unstable();
    out
}

/// Whether this test process is root; otherwise prints that the test is
/// skipped and `why` it needs root.
pub fn root_or_skip(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root ({why})");
    false
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
pub fn is_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}
