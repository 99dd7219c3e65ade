//! The same application against other Redis deployments, by settings
//! alone: TLS (CA file, mutual TLS, insecure switch, wrong CA), a
//! restricted ACL user with a password file, and Sentinel failover with and
//! without the durable `WAIT` mode.
//!
//! Redis Cluster (three masters, three replicas, `support::cluster`):
//! `cluster_harness` tests the harness itself, `cluster` the application on
//! it, `async_cluster` the async producer on it.
//!
//! [`AppEnv`] is one deployment's settings as environment variables; it
//! runs every kind of program against it: a producer (the library, in this
//! process), the admin CLI, and the demo binary's supervisor with its
//! scheduler (`worker --scheduler`).

mod acl;
mod async_cluster;
mod cluster;
mod cluster_harness;
mod lost_reply;
mod sentinel;
mod tls;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::config::Settings;
use redis_tasks::protocol::TaskStatus;
use redis_tasks::{Store, TaskRecord};
use serde_json::json;

use crate::e2e::{Running, demo_bin};
use crate::support::{Cmd, admin_bin, wait_until};

pub const WAIT: Duration = Duration::from_secs(60);

/// One deployment's settings, as environment variables, and a temp dir.
pub struct AppEnv {
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl AppEnv {
    pub fn new(env: &[(&str, String)]) -> AppEnv {
        AppEnv {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The settings a program started with this environment loads.
    pub fn settings(&self) -> Settings {
        Settings::load_with_env(None, &|name| {
            self.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("settings load")
    }

    /// A store opened from those settings, as a producer opens one.
    pub fn store(&self) -> Store {
        Store::from_settings(&self.settings()).expect("store from settings")
    }

    /// The admin CLI with this environment.
    pub fn admin(&self, args: &[&str]) -> Cmd {
        let mut cmd = Cmd::new(admin_bin());
        cmd.args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the demo binary with `args` in the background, with this
    /// environment, fast timers and the settings file `toml`.
    pub fn start(&self, args: &[&str], toml: &str, extra: &[(&str, &str)]) -> Running {
        let settings = self.path(&format!("settings-{}.toml", unique()));
        fs::write(&settings, toml).expect("settings file");
        let log = self.path(&format!("demo-{}.log", unique()));
        let file = fs::File::create(&log).expect("log file");
        let child = Command::new(demo_bin())
            .args(args)
            .env_remove("REDIS_URL")
            .env("RT_SETTINGS", &settings)
            .env("DEMO_OUTCOME_LOG", self.path("outcomes.jsonl"))
            .env("RT_WORKER_HEARTBEAT_FREQ", "1")
            .env("RT_WORKER_HEARTBEAT_TIMEOUT", "3")
            .env("RT_MAINTENANCE_FREQ", "1")
            .env("RUST_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start the demo binary");
        Running { child, log }
    }

    /// Every program against this deployment: a producer and the admin
    /// CLI enqueue, a supervisor with its scheduler runs those tasks and
    /// the scheduled ones, the admin CLI reads the results.
    pub fn exercise_every_program(&self) {
        let store = self.store();
        let by_producer = store
            .queue("default")
            .enqueue("noop", &json!(null))
            .expect("producer enqueue");
        let by_cli = self.admin(&["enqueue", "noop"]).stdout();
        let toml = "[schedule.tick]\ntask = \"noop\"\nevery = \"1s\"\nsingleton = false\n";
        let mut sup = self.start(&["worker", "--scheduler", "-c", "2"], toml, &[]);
        for id in [&by_producer, &by_cli] {
            wait_status(&store, id, TaskStatus::Finished);
        }
        let mut scheduled = String::new();
        wait_until("a scheduled run", WAIT, || {
            let log = sup.log();
            scheduled = log
                .lines()
                .find(|l| l.contains("scheduler: enqueued"))
                .and_then(|l| l.split("task_id=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
                .unwrap_or_default();
            !scheduled.is_empty()
        });
        wait_status(&store, &scheduled, TaskStatus::Finished);
        let shown = self.admin(&["task", "show", &by_cli, "--json"]).stdout();
        assert!(shown.contains("\"finished\""), "{shown}");
        let info = self.admin(&["info"]).stdout();
        assert!(info.contains("default"), "{info}");
        sup.stop();
    }
}

/// Waits until task `id` has `status`.
pub fn wait_status(store: &Store, id: &str, status: TaskStatus) -> TaskRecord {
    wait_until(&format!("task {id} to be {status}"), WAIT, || {
        store.task(id).is_ok_and(|t| t.status == status)
    });
    store.task(id).expect("task")
}

pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// What a failover under load cost, counted by the Sentinel and Cluster
/// chaos tests (each fills in what it measures; the rest stays 0).
#[derive(Debug, Default)]
pub struct Losses {
    /// Enqueues the producer got an id back for.
    pub acked: usize,
    /// Of those, enqueued before the master was killed.
    pub acked_before_kill: usize,
    /// Acknowledged enqueues whose task does not exist at the end.
    pub lost_enqueues: usize,
    /// Tasks that ran (the outcome log says so) but whose record did not
    /// end finished: a recorded outcome (or the start) was lost.
    pub lost_outcomes: usize,
    /// Tasks whose outcome log shows more than one run.
    pub ran_twice: usize,
    /// Non-reentrant tasks whose side effect happened more than once.
    pub nonreentrant_ran_twice: usize,
    /// Acknowledged tasks not finished at the end (lost, failed or stuck).
    pub unfinished: usize,
    /// Enqueue errors the producer saw (and retried) during the failover.
    pub producer_errors: u64,
}
