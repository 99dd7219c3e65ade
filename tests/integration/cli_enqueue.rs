//! `enqueue` in an application binary (the demo): the task's argument
//! type is checked before anything is written, arguments come from the
//! command line, a file (`@path`) or standard input (`-`), `--unique`, and
//! the binary's own name and version.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::e2e::{Demo, demo_bin};
use crate::support::snapshot;

#[test]
fn wrong_argument_types_are_refused_at_enqueue_with_nothing_written() {
    let demo = Demo::new();
    let mut c = demo.redis.client();
    let before = snapshot(&mut c);
    let out = demo
        .cmd()
        .args(["enqueue", "sleep", r#"{"secs": "long"}"#])
        .fails();
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(r#"error: invalid arguments for task "sleep": invalid type: string "long", expected f64"#),
        "{err}"
    );
    let out = demo.cmd().args(["enqueue", "sleepy", "{}"]).fails();
    assert!(
        out.stderr.contains(r#"unknown task "sleepy""#),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&mut c), before, "nothing was written");
    // The right type goes through.
    let id = demo
        .cmd()
        .args(["enqueue", "sleep", r#"{"secs": 0.1}"#])
        .stdout();
    assert_eq!(demo.task(&id).args, json!({"secs": 0.1}));
    // The producer API check says the same.
    let app = redis_tasks::App::new("p").task(
        "sleep",
        |_: &redis_tasks::TaskContext, _: std::collections::HashMap<String, f64>| {
            Ok::<(), String>(())
        },
    );
    let err = app
        .check_call("sleep", &json!({"secs": "long"}))
        .expect_err("refused");
    assert!(
        err.to_string()
            .starts_with(r#"invalid arguments for task "sleep""#),
        "{err}"
    );
}

#[test]
fn arguments_come_from_a_file_or_standard_input_within_max_args_bytes() {
    let demo = Demo::new();
    let file = demo.path("args.json");
    std::fs::write(&file, r#"{"a": 20, "b": 22}"#).expect("write");
    let id = demo
        .cmd()
        .args(["enqueue", "add", &format!("@{}", file.display())])
        .stdout();
    assert_eq!(demo.task(&id).args, json!({"a": 20, "b": 22}));

    let mut child = Command::new(demo_bin())
        .args(["enqueue", "add", "-"])
        .env("REDIS_URL", demo.redis.url())
        .env_remove("RT_SETTINGS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"a": 1, "b": 2}"#)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(demo.task(&id).args, json!({"a": 1, "b": 2}));

    let big = demo.path("big.json");
    std::fs::write(
        &big,
        format!(r#"{{"a": 1, "b": 2, "pad": "{}"}}"#, "x".repeat(300)),
    )
    .expect("write");
    let out = demo
        .cmd()
        .env("RT_MAX_ARGS_BYTES", "100")
        .args(["enqueue", "add", &format!("@{}", big.display())])
        .fails();
    assert!(
        out.stderr.contains("over max_args_bytes (100 bytes)"),
        "{}",
        out.stderr
    );
    let out = demo
        .cmd()
        .args(["enqueue", "add", "@/nonexistent/args.json"])
        .fails();
    assert!(
        out.stderr
            .contains("cannot read arguments from /nonexistent/args.json"),
        "{}",
        out.stderr
    );
}

#[test]
fn unique_enqueue_from_the_command_line_prints_the_existing_id() {
    let demo = Demo::new();
    let first = demo
        .cmd()
        .args(["enqueue", "add", r#"{"a": 1, "b": 1}"#, "--unique", "sum:1"])
        .stdout();
    let out = demo
        .cmd()
        .args(["enqueue", "add", r#"{"a": 1, "b": 1}"#, "--unique", "sum:1"])
        .run();
    assert_eq!(out.stdout.trim(), first);
    assert!(
        out.stderr.contains("nothing was enqueued"),
        "{}",
        out.stderr
    );
    assert_eq!(demo.queue_ids("default"), vec![first]);
}

#[test]
fn help_and_version_show_the_application() {
    let demo = Demo::new();
    let version = demo.cmd().arg("--version").stdout();
    assert_eq!(
        version,
        format!("demo {v} (redis-tasks {v})", v = env!("CARGO_PKG_VERSION"))
    );
    let help = demo.cmd().arg("--help").stdout();
    assert!(help.starts_with("demo: "), "{help}");
}

#[test]
fn enqueue_help_lists_the_binarys_task_functions() {
    let out = crate::support::Cmd::new(demo_bin())
        .args(["enqueue", "--help"])
        .stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("Task functions of this binary: "))
        .unwrap_or_else(|| panic!("no task list in:\n{out}"));
    for task in ["noop", "sleep", "segfault"] {
        assert!(line.contains(task), "{task} missing: {line}");
    }
    assert!(!out.contains("keyword arguments"), "{out}");
}
