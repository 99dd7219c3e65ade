//! Every admin subcommand of the `redis-tasks` binary against a real Redis,
//! as a user would type it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use jiff::Timestamp;
use redis_tasks::protocol::TaskStatus;
use redis_tasks::store::SlotInfo;
use serde_json::{Value, json};

use crate::support::{Cmd, RedisServer, admin_bin};

fn admin(server: &RedisServer) -> Cmd {
    Cmd::admin(&server.url())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not json ({e}): {text}"))
}

#[test]
fn enqueue_prints_the_id_alone_and_task_show_reads_it() {
    let server = RedisServer::start();
    let out = admin(&server)
        .args([
            "enqueue",
            "send_report",
            r#"[42, {"to": "x"}]"#,
            "--queue",
            "mail",
        ])
        .run();
    assert_eq!(out.stderr, "");
    let id = out.stdout.strip_suffix('\n').expect("one line");
    assert!(
        !id.contains(char::is_whitespace) && id.len() == 36,
        "{:?}",
        out.stdout
    );
    let rec = server.store().task(id).expect("stored");
    assert_eq!(
        (rec.task.as_str(), rec.queue.as_str()),
        ("send_report", "mail")
    );

    let shown = json_of(&admin(&server).args(["task", "show", id, "--json"]).stdout());
    let keys: Vec<&str> = shown
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "id",
        "task",
        "args",
        "status",
        "queue",
        "description",
        "error",
        "enqueued_at",
        "started_at",
        "ended_at",
        "meta",
        "aborted_runs",
        "timeout",
        "retry",
        "run_at",
        "attempts",
        "result",
        "unique",
        "expires_at",
    ];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(shown["id"], json!(id));
    assert_eq!(shown["task"], json!("send_report"));
    assert_eq!(shown["args"], json!([42, {"to": "x"}]));
    assert_eq!(shown["status"], json!("queued"));
    assert_eq!(shown["queue"], json!("mail"));
    assert_eq!(
        shown["description"],
        json!(r#"send_report(42, {"to":"x"})"#)
    );
    assert_eq!(shown["error"], Value::Null);
    assert_eq!(shown["started_at"], Value::Null);
    assert_eq!(shown["ended_at"], Value::Null);
    assert_eq!(shown["meta"], json!({}));
    assert_eq!(shown["aborted_runs"], json!([]));
    let enq = shown["enqueued_at"].as_str().expect("string");
    assert!(enq.ends_with('Z'));
    assert_eq!(enq.parse::<Timestamp>().expect("rfc 3339"), rec.enqueued_at);

    // Without ARGS_JSON and --queue: no arguments, queue `default`.
    let id2 = admin(&server).args(["enqueue", "cleanup"]).stdout();
    let rec = server.store().task(&id2).expect("stored");
    assert_eq!((rec.queue.as_str(), &rec.args), ("default", &json!([])));

    let human = admin(&server).args(["task", "show", &id2]).stdout();
    assert!(human.contains("task:         cleanup"), "{human}");
    assert!(human.contains("status:       queued"), "{human}");
}

#[test]
fn task_show_json_has_times_and_runs_of_an_ended_task() {
    let server = RedisServer::start();
    let store = server.store();
    let id = store
        .queue("default")
        .enqueue("t", &json!([1]))
        .expect("enqueue");
    let q = vec!["default".to_owned()];
    store
        .fetch("s", &q, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    let t1: Timestamp = "2026-02-03T04:05:06.789Z".parse().expect("time");
    store
        .requeue_interrupted("s", &id, "worker shutdown", t1)
        .expect("requeue");
    store
        .fetch("s", &q, Duration::ZERO)
        .expect("fetch")
        .expect("task");
    let t2: Timestamp = "2026-02-03T04:06:00Z".parse().expect("time");
    store
        .finish("s", &id, TaskStatus::Failed, Some("boom"), t2)
        .expect("finish");
    let shown = json_of(
        &admin(&server)
            .args(["task", "show", &id, "--json"])
            .stdout(),
    );
    assert_eq!(shown["status"], json!("failed"));
    assert_eq!(shown["error"], json!("boom"));
    assert_eq!(shown["ended_at"], json!("2026-02-03T04:06:00Z"));
    assert!(shown["started_at"].is_string());
    let runs = shown["aborted_runs"].as_array().expect("array");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["ended_at"], json!("2026-02-03T04:05:06.789Z"));
    assert_eq!(runs[0]["reason"], json!("worker shutdown"));
    assert!(runs[0]["started_at"].is_string());
}

#[test]
fn a_raw_command_enqueue_shows_through_the_cli() {
    let server = RedisServer::start();
    let mut c = server.client();
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg("redis_tasks:task:raw-1")
        .arg(&[
            ("task", "resize"),
            ("args", r#"{"w": 10}"#),
            ("status", "queued"),
            ("queue", "images"),
            ("enqueued_at", "2026-11-25T08:17:26.123456Z"),
        ])
        .cmd("RPUSH")
        .arg("redis_tasks:queue:images")
        .arg("raw-1")
        .cmd("SADD")
        .arg("redis_tasks:queues")
        .arg("images")
        .exec(&mut c)
        .expect("raw enqueue");
    let shown = json_of(
        &admin(&server)
            .args(["task", "show", "raw-1", "--json"])
            .stdout(),
    );
    assert_eq!(shown["description"], json!("resize(w=10)"));
    assert_eq!(shown["enqueued_at"], json!("2026-11-25T08:17:26.123456Z"));
    assert_eq!(shown["args"], json!({"w": 10}));
    let info = json_of(&admin(&server).args(["info", "--json"]).stdout());
    assert_eq!(info["queues"], json!([{"name": "images", "count": 1}]));
}

fn register(server: &RedisServer, id: &str, queues: &[&str]) {
    register_of(server, id, "sup", queues);
}

fn register_of(server: &RedisServer, id: &str, supervisor: &str, queues: &[&str]) {
    server
        .store()
        .register_slot(&SlotInfo {
            id: id.to_owned(),
            description: format!("box.7/{id}"),
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            supervisor: supervisor.into(),
            host: "box".into(),
            pid: 7,
            started_at: Timestamp::now(),
        })
        .expect("register");
}

#[test]
fn info_json_has_the_documented_shape() {
    let server = RedisServer::start();
    let store = server.store();
    for _ in 0..3 {
        store.queue("default").enqueue("t", &()).expect("enqueue");
    }
    store.queue("high").enqueue("t", &()).expect("enqueue");
    register(&server, "s1", &["high", "default"]);
    register(&server, "s2", &["low"]);
    let busy = store
        .fetch("s1", &["high".to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    let info = json_of(&admin(&server).args(["info", "--json"]).stdout());
    assert_eq!(
        info,
        json!({
            "queues": [{"name": "default", "count": 3}, {"name": "high", "count": 0}],
            "workers": [
                {"id": "s1", "description": "box.7/s1", "state": "busy",
                 "queues": ["high", "default"], "current_task": busy.id},
                {"id": "s2", "description": "box.7/s2", "state": "idle",
                 "queues": ["low"], "current_task": null},
            ],
            "finished": 0,
            "failed": 0,
            "scheduled": 0,
            "canceled": 0,
            // Added with task expiry (a key added, none changed).
            "expired": 0,
            // Added with the canceled registry (`canceled` stays the
            // counter of every cancel).
            "canceled_registry": 0,
        })
    );
    // Only some queues: workers listening elsewhere are left out.
    let info = json_of(&admin(&server).args(["info", "low", "--json"]).stdout());
    assert_eq!(info["queues"], json!([{"name": "low", "count": 0}]));
    let ids: Vec<&Value> = info["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| &w["id"])
        .collect();
    assert_eq!(ids, vec![&json!("s2")]);
}

#[test]
fn info_human_output_has_bars_workers_and_no_colour_off_a_terminal() {
    let server = RedisServer::start();
    let store = server.store();
    for _ in 0..4 {
        store.queue("default").enqueue("t", &()).expect("enqueue");
    }
    store.queue("high").enqueue("t", &()).expect("enqueue");
    register(&server, "s1", &["high", "default"]);
    let out = admin(&server).arg("info").stdout();
    assert!(!out.contains('\x1b'), "colour off a terminal: {out:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("default      |{} 4", "█".repeat(50)));
    assert_eq!(lines[1], format!("high         |{} 1", "█".repeat(13)));
    assert_eq!(lines[2], "2 queues, 5 tasks total");
    assert!(
        lines.contains(&"box.7/s1 slot s1 idle: high, default"),
        "{out}"
    );
    assert!(lines.contains(&"1 worker, 2 queues"), "{out}");
    assert!(
        lines.contains(&"finished: 0, failed: 0, scheduled: 0"),
        "{out}"
    );
    // Canceled tasks are counted (the counter outlives the registry's
    // trimming).
    assert!(lines.contains(&"canceled: 0"), "{out}");
    let queued = store.queue("default").ids(0, 1).expect("ids")[0].clone();
    store.cancel(&queued).expect("cancel");
    let out = admin(&server).arg("info").stdout();
    assert!(out.lines().any(|l| l == "canceled: 1"), "{out}");

    let out = admin(&server).args(["info", "--by-queue"]).stdout();
    assert!(out.contains("default: box.7/s1 slot s1 (idle)"), "{out}");
    assert!(out.contains("high: box.7/s1 slot s1 (idle)"), "{out}");
    // A slot of a supervisor's own numbering shows its number.
    register_of(&server, "sup-3", "sup", &["high"]);
    let out = admin(&server).arg("info").stdout();
    assert!(out.contains("box.7/sup-3 slot 3 idle: high"), "{out}");
}

#[test]
fn info_interval_repeats_until_stopped() {
    let server = RedisServer::start();
    server
        .store()
        .queue("default")
        .enqueue("t", &())
        .expect("enqueue");
    let mut child = std::process::Command::new(admin_bin())
        .args([
            "--redis-url",
            &server.url(),
            "info",
            "--json",
            "--interval",
            "0.1",
        ])
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => seen.push(json_of(&line)),
            Err(e) => {
                let _ = child.kill();
                panic!("no refresh after {} lines: {e}", seen.len());
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .all(|v| v["queues"] == json!([{"name": "default", "count": 1}]))
    );
}

#[test]
fn task_cancel_cancels_a_queued_task() {
    let server = RedisServer::start();
    let store = server.store();
    let id = store.queue("default").enqueue("t", &()).expect("enqueue");
    let out = admin(&server).args(["task", "cancel", &id]).stdout();
    assert_eq!(out, format!("canceled task {id}"));
    assert_eq!(store.task(&id).expect("task").status, TaskStatus::Canceled);
    assert_eq!(store.queue("default").count().expect("count"), 0);
}

#[test]
fn empty_empties_named_or_all_queues_and_can_delete_them() {
    let server = RedisServer::start();
    let store = server.store();
    for q in ["a", "a", "b", "c"] {
        store.queue(q).enqueue("t", &()).expect("enqueue");
    }
    let out = admin(&server).args(["empty", "a"]).stdout();
    assert_eq!(out, "emptied queue a (2 tasks)");
    assert_eq!(store.queue("a").count().expect("count"), 0);
    assert_eq!(store.queue("b").count().expect("count"), 1);
    let out = admin(&server).args(["empty", "--all"]).stdout();
    assert_eq!(
        out,
        "emptied queue a (0 tasks)\nemptied queue b (1 task)\nemptied queue c (1 task)"
    );
    assert_eq!(store.queues().expect("queues"), vec!["a", "b", "c"]);
    let out = admin(&server).args(["empty", "b", "--delete"]).stdout();
    assert_eq!(out, "deleted queue b (0 tasks)");
    assert_eq!(store.queues().expect("queues"), vec!["a", "c"]);
    admin(&server).args(["empty", "--all", "--delete"]).run();
    assert!(store.queues().expect("queues").is_empty());
    let mut c = server.client();
    // Only the schema marker stays: the prefix remains ours.
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("keys");
    assert_eq!(left, ["redis_tasks:schema"]);
}

fn fail_one(server: &RedisServer, queue: &str, error: &str) -> String {
    fail_task(server, queue, "job", error)
}

/// Fails a call of `task` on `queue` with `error` (through the store, as
/// a slot would); returns its id.
pub(crate) fn fail_task(server: &RedisServer, queue: &str, task: &str, error: &str) -> String {
    let store = server.store();
    let id = store
        .queue(queue)
        .enqueue(task, &json!([1]))
        .expect("enqueue");
    store
        .fetch("s", &[queue.to_owned()], Duration::ZERO)
        .expect("fetch")
        .expect("task");
    store
        .finish("s", &id, TaskStatus::Failed, Some(error), Timestamp::now())
        .expect("finish");
    id
}

/// The ids of a `list --json` output, in its order.
fn ids_of(listed: &Value) -> Vec<&str> {
    listed
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect()
}

#[test]
fn canceled_list_shows_the_canceled_registry() {
    let server = RedisServer::start();
    let store = server.store();
    let q = store.queue("q1");
    let a = q.enqueue("job", &json!([1])).expect("enqueue");
    let b = q.enqueue("job", &json!([2])).expect("enqueue");
    let kept = q.enqueue("job", &json!([3])).expect("enqueue");
    store.cancel(&a).expect("cancel");
    store.cancel(&b).expect("cancel");
    let listed = json_of(&admin(&server).args(["canceled", "list", "--json"]).stdout());
    let ids = ids_of(&listed);
    assert_eq!(ids, vec![a.as_str(), b.as_str()]);
    assert_eq!(listed[0]["status"], json!("canceled"));
    let human = admin(&server).args(["canceled", "list"]).stdout();
    assert!(human.contains(&b) && !human.contains(&kept), "{human}");
    let info = json_of(&admin(&server).args(["info", "--json"]).stdout());
    assert_eq!(
        (info["canceled"].clone(), info["canceled_registry"].clone()),
        (json!(2), json!(2))
    );
}

#[test]
fn failed_list_and_requeue() {
    let server = RedisServer::start();
    let store = server.store();
    let a = fail_one(&server, "q1", "boom\nwith a trace");
    let b = fail_one(&server, "q2", "bang");
    let c = fail_one(&server, "q2", "crash");

    let listed = json_of(&admin(&server).args(["failed", "list", "--json"]).stdout());
    let ids = ids_of(&listed);
    assert_eq!(ids, vec![a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(listed[0]["error"], json!("boom\nwith a trace"));
    assert_eq!(listed[1]["status"], json!("failed"));

    let human = admin(&server).args(["failed", "list"]).stdout();
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), 4, "{human}");
    assert!(
        lines[0].starts_with(&a) && lines[0].ends_with("job(1)  boom"),
        "{human}"
    );
    assert_eq!(lines[3], "3 of 3 failed tasks");

    let out = admin(&server).args(["failed", "requeue", &b]).stdout();
    assert_eq!(out, "requeued 1 task");
    assert_eq!(store.queue("q2").ids(0, 10).expect("ids"), vec![b.clone()]);
    let out = admin(&server).args(["failed", "requeue", "--all"]).stdout();
    assert_eq!(out, "requeued 2 tasks");
    assert_eq!(store.failed().count().expect("count"), 0);
    assert_eq!(store.queue("q1").ids(0, 10).expect("ids"), vec![a]);
    assert_eq!(store.queue("q2").ids(0, 10).expect("ids"), vec![b, c]);
}

#[test]
fn settings_come_from_the_file_and_the_environment() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("settings.toml");
    std::fs::write(
        &path,
        format!(
            "redis_url = \"{}\"\nredis_prefix = \"fromfile\"\n",
            server.url()
        ),
    )
    .expect("write settings");
    let id = Cmd::new(admin_bin())
        .arg("--config")
        .arg(&path)
        .args(["enqueue", "t"])
        .stdout();
    let mut c = server.client();
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("fromfile:task:{id}"))
        .query(&mut c)
        .expect("exists");
    assert_eq!(exists, 1);
    // RT_SETTINGS names the file; RT_REDIS_PREFIX overrides it.
    let id = Cmd::new(admin_bin())
        .env("RT_SETTINGS", &path)
        .env("RT_REDIS_PREFIX", "fromenv")
        .args(["enqueue", "t"])
        .stdout();
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("fromenv:task:{id}"))
        .query(&mut c)
        .expect("exists");
    assert_eq!(exists, 1);
}

#[test]
fn version_and_help() {
    let out = Cmd::new(admin_bin()).arg("--version").stdout();
    assert_eq!(out, format!("redis-tasks {}", env!("CARGO_PKG_VERSION")));
    let help = Cmd::new(admin_bin()).arg("--help").stdout();
    for word in [
        "info",
        "empty",
        "enqueue",
        "task",
        "failed",
        "schedule",
        "--config",
        "--redis-url",
    ] {
        assert!(help.contains(word), "{word} missing from help:\n{help}");
    }
}

/// Writes, as a raw producer could, a failed task whose argument is 20 MB,
/// description 2 MB, error 2 MB and progress report 1 MB; returns its id.
pub(crate) fn huge_failed_task(c: &mut redis::Connection) -> String {
    let id = "huge-1".to_owned();
    let args = format!("\"{}\"", "a".repeat(20 * 1024 * 1024));
    let description = format!("report({})", "d".repeat(2 * 1024 * 1024));
    let error = format!("boom {}", "e".repeat(2 * 1024 * 1024));
    let progress = json!({"done": 1, "total": 2, "message": "p".repeat(1024 * 1024)}).to_string();
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(format!("redis_tasks:task:{id}"))
        .arg(&[
            ("task", "report"),
            ("args", args.as_str()),
            ("status", "failed"),
            ("queue", "default"),
            ("description", description.as_str()),
            ("error", error.as_str()),
            ("progress", progress.as_str()),
            ("enqueued_at", "2026-11-25T08:17:26.123456Z"),
            ("ended_at", "2026-11-25T08:17:27.123456Z"),
        ])
        .cmd("ZADD")
        .arg("redis_tasks:failed")
        .arg(1_764_058_647)
        .arg(&id)
        .exec(c)
        .expect("raw failed task");
    id
}

/// A producer's 20 MB argument in the failed registry: `failed list` and
/// `task show` print its first bytes and its size, not all of it; `task
/// show --full` prints everything.
#[test]
fn listings_and_task_show_cut_huge_fields() {
    let server = RedisServer::start();
    let id = huge_failed_task(&mut server.client());
    let list = admin(&server).args(["failed", "list"]).output();
    assert!(list.status.success(), "{}", list.stderr);
    assert!(list.stdout.len() < 64 * 1024, "{} bytes", list.stdout.len());
    assert!(list.stdout.contains(&id) && list.stdout.contains('…'));
    let json = admin(&server).args(["failed", "list", "--json"]).output();
    assert!(json.stdout.len() < 64 * 1024, "{} bytes", json.stdout.len());
    let rows = json_of(&json.stdout);
    assert_eq!(
        rows[0]["clipped"]["args"]["size"],
        json!(20 * 1024 * 1024 + 2)
    );
    let show = admin(&server).args(["task", "show", &id]).output();
    assert!(show.status.success(), "{}", show.stderr);
    assert!(
        show.stdout.len() < 1024 * 1024,
        "{} bytes",
        show.stdout.len()
    );
    assert!(
        show.stdout.contains("cut: 20971522 bytes in all"),
        "{}",
        &show.stdout[..2000.min(show.stdout.len())]
    );
    let full = admin(&server)
        .args(["task", "show", &id, "--full"])
        .output();
    assert!(
        full.stdout.len() > 20 * 1024 * 1024,
        "{} bytes",
        full.stdout.len()
    );
}
