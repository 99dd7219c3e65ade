//! What the binaries write on stderr: errors with each cause once, log
//! lines without colour codes when stderr is not a terminal, and a
//! supervisor that keeps working when nobody reads its stderr any more.

use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::TaskStatus;
use serde_json::json;

use crate::e2e::{Demo, demo_bin};
use crate::support::{Cmd, admin_bin, free_port, wait_until};

/// How often `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn an_unreachable_redis_names_its_cause_once() {
    let port = free_port().expect("port");
    let url = format!("redis://127.0.0.1:{port}");
    for bin in [admin_bin(), demo_bin()] {
        let o = Cmd::new(&bin)
            .env("REDIS_URL", &url)
            .arg("info")
            .timeout(Duration::from_secs(30))
            .fails();
        assert!(
            o.stderr.starts_with(&format!(
                "error: cannot connect to redis at 127.0.0.1:{port}"
            )),
            "{}: {}",
            bin.display(),
            o.stderr
        );
        assert_eq!(
            count(&o.stderr, "Connection refused"),
            1,
            "{}: {}",
            bin.display(),
            o.stderr
        );
    }
}

#[test]
fn causes_added_at_the_edge_get_a_line_each() {
    let server = crate::support::RedisServer::start();
    let o = Cmd::admin(&server.url())
        .args(["enqueue", "t", "[1, 2"])
        .fails();
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", o.stderr);
    assert_eq!(
        lines[0], "error: ARGS_JSON is not valid JSON; nothing was enqueued",
        "{}",
        o.stderr
    );
    assert!(lines[1].starts_with("  caused by: "), "{}", o.stderr);
}

#[test]
fn a_log_file_gets_no_colour_codes() {
    let demo = Demo::new();
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    let ok = demo.enqueue("noop", json!(null));
    let bad = demo.enqueue("fail", json!({"message": "on purpose"}));
    demo.wait_status(&ok, TaskStatus::Finished, Duration::from_secs(60));
    demo.wait_status(&bad, TaskStatus::Failed, Duration::from_secs(60));
    sup.stop();
    let log = std::fs::read(&sup.log).expect("read the log");
    assert!(!log.is_empty(), "the supervisor logged nothing");
    assert!(
        !log.contains(&0x1b),
        "escape codes in a log file:\n{}",
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn a_stderr_nobody_reads_does_not_stop_the_supervisor() {
    let demo = Demo::new();
    // Debug level: every task writes several lines to the closed pipe.
    let child = Command::new(demo_bin())
        .args(["worker", "--concurrency", "2"])
        .env_remove("RT_SETTINGS")
        .env("REDIS_URL", demo.redis.url())
        .env("RT_WORKER_HEARTBEAT_FREQ", "1")
        .env("RT_MAINTENANCE_FREQ", "1")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo supervisor");
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    // The reader goes away at once: every later write gets EPIPE.
    drop(child.stderr.take());
    let ids: Vec<String> = (0..20)
        .map(|i| {
            if i % 5 == 4 {
                demo.enqueue("panic", json!({"message": "loud"}))
            } else {
                demo.enqueue("noop", json!(null))
            }
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 5 == 4 {
            TaskStatus::Failed
        } else {
            TaskStatus::Finished
        };
        wait_until(
            &format!("task {id} to be {want}"),
            Duration::from_secs(60),
            || {
                demo.store.task(id).is_ok_and(|t| t.status == want)
                    || child.try_wait().ok().flatten().is_some()
            },
        );
        assert_eq!(
            child.try_wait().expect("try_wait"),
            None,
            "the supervisor died while task {id} ran"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let mut status = None;
    wait_until("the supervisor to exit", Duration::from_secs(60), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

/// A child process killed and reaped when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The JSON log lines of a burst run, each parsed.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{stderr}"))
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_with_task_start_and_end() {
    let demo = Demo::new();
    let ok = demo.enqueue("noop", json!(null));
    let bad = demo.enqueue("fail", json!({"message": "on purpose"}));
    let o = demo
        .cmd()
        .env("RUST_LOG", "info")
        .args([
            "--log-format",
            "json",
            "worker",
            "--burst",
            "--concurrency",
            "1",
        ])
        .timeout(Duration::from_secs(120))
        .run();
    let lines = json_lines(&o.stderr);
    let find = |id: &str, outcome: &str| {
        lines
            .iter()
            .find(|l| l["task"] == id && l["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} line for {id}:\n{}", o.stderr))
            .clone()
    };
    for (id, outcome, name) in [(&ok, "finished", "noop"), (&bad, "failed", "fail")] {
        let end = find(id, outcome);
        assert_eq!(end["level"], "INFO", "{end}");
        assert_eq!(end["name"], name, "{end}");
        assert_eq!(end["queue"], "default", "{end}");
        assert!(end["slot"].as_str().is_some_and(|s| !s.is_empty()), "{end}");
        assert!(
            end["duration_s"].as_f64().is_some_and(|d| d >= 0.0),
            "{end}"
        );
        assert!(
            end["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{end}"
        );
        assert!(end["timestamp"].as_str().is_some(), "{end}");
        let start = lines
            .iter()
            .find(|l| l["task"] == id.as_str() && l["message"] == "task started")
            .unwrap_or_else(|| panic!("no start line for {id}:\n{}", o.stderr));
        assert_eq!(start["level"], "INFO", "{start}");
        assert_eq!(start["queue"], "default", "{start}");
    }
    assert!(!o.stderr.contains('\u{1b}'), "escape codes:\n{}", o.stderr);
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let o = Cmd::new(demo_bin())
        .args(["--log-format", "xml", "info"])
        .fails();
    assert_eq!(o.status.code(), Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("xml"), "{}", o.stderr);
}

/// A raw producer's `description` and a task's error message with a
/// newline and a made-up log line after it: the supervisor's log gets one
/// escaped line, not a forged one, in both formats; and the end line names
/// the task without its arguments unless `log_task_args` asks for them.
#[test]
fn text_from_redis_cannot_forge_a_log_line_and_arguments_stay_out() {
    for (format, with_args) in [("text", false), ("json", false), ("text", true)] {
        let demo = Demo::new();
        let mut sup = demo.start(
            &["--concurrency", "1"],
            &[
                ("RT_LOG_FORMAT", format),
                ("RT_LOG_TASK_ARGS", if with_args { "true" } else { "false" }),
            ],
        );
        let mut conn = demo.redis.client();
        let id = "raw-forger";
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(format!("redis_tasks:task:{id}"))
            .arg(&[
                "task",
                "noop",
                "args",
                "null",
                "status",
                "queued",
                "queue",
                "default",
                "description",
                "report\n ERROR FORGED line finished in 0.002 s\r\u{1b}[2K",
            ])
            .arg(&["enqueued_at", "2026-01-01T00:00:00Z"])
            .cmd("RPUSH")
            .arg("redis_tasks:queue:default")
            .arg(id)
            .query::<()>(&mut conn)
            .expect("raw enqueue");
        let failing = demo.enqueue(
            "fail",
            json!({"message": "no\n ERROR FORGED line from an error\r"}),
        );
        let secret = demo.enqueue("noop", json!({"password": "hunter2-in-args"}));
        demo.wait_status(id, TaskStatus::Finished, Duration::from_secs(60));
        demo.wait_status(&failing, TaskStatus::Failed, Duration::from_secs(60));
        demo.wait_status(&secret, TaskStatus::Finished, Duration::from_secs(60));
        sup.stop();
        let log = sup.log();
        let what = format!("{format}, log_task_args={with_args}");
        for line in log.lines() {
            assert!(
                !line.trim_start().starts_with("ERROR FORGED"),
                "{what}: a forged line:\n{log}"
            );
            assert!(
                !line.contains('\r') && !line.contains('\u{1b}'),
                "{what}:\n{log}"
            );
        }
        assert!(log.contains("FORGED line from an error"), "{what}:\n{log}");
        if with_args {
            assert!(log.contains("hunter2-in-args"), "{what}:\n{log}");
            assert!(log.contains("FORGED line finished"), "{what}:\n{log}");
        } else {
            assert!(
                !log.contains("hunter2-in-args"),
                "{what}: arguments in the log:\n{log}"
            );
            assert!(log.contains("noop finished in"), "{what}:\n{log}");
        }
    }
}
