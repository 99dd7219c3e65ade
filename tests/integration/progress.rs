//! Progress reports: a task in a real worker process calls
//! `TaskContext::progress`; the supervisor stores the report in the task's
//! record, `task show` prints it, the dashboard shows it and the
//! `redis_tasks_task_progress_ratio` metric follows it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis_tasks::TaskStatus;
use redis_tasks::protocol::Progress;
use serde_json::json;

use crate::e2e::Demo;
use crate::support::{admin_bin, free_port, wait_until};

fn get(port: u16, path: &str) -> String {
    get_as(port, path, "")
}

/// `GET path` with one more header line (`extra`, or none when empty).
fn get_as(port: u16, path: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("{extra}\r\n")
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    reply
}

#[test]
fn a_running_tasks_progress_reaches_task_show_the_dashboard_and_the_metric() {
    let demo = Demo::new();
    let metrics_port = free_port().expect("port");
    let mut sup = demo.start(
        &[
            "--concurrency",
            "1",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ],
        &[],
    );
    let go = demo.path("go");
    let id = demo.enqueue(
        "report_progress",
        json!({"done": 3, "total": 10, "message": "importing rows", "path": go}),
    );
    let expected = Progress::new(3, Some(10), "importing rows");
    wait_until(
        "the progress report in Redis",
        Duration::from_secs(60),
        || demo.store.progress(&id).expect("progress") == Some(expected.clone()),
    );
    assert_eq!(demo.task(&id).status, TaskStatus::Running);

    let shown = demo.cmd().args(["task", "show", &id]).stdout();
    assert!(
        shown.contains("progress:     3/10 (30%) importing rows"),
        "{shown}"
    );

    let page = get(metrics_port, "/metrics");
    assert!(
        page.contains("redis_tasks_task_progress_ratio{slot=\"0\"} 0.3"),
        "{page}"
    );

    let dashboard_port = free_port().expect("port");
    let mut dashboard = Command::new(admin_bin())
        .args([
            "dashboard",
            "--bind",
            &format!("127.0.0.1:{dashboard_port}"),
        ])
        .env_remove("RT_SETTINGS")
        .env("REDIS_URL", demo.redis.url())
        .env("RT_DASHBOARD_TOKEN", "progress-test-token-0123")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the dashboard");
    wait_until("the dashboard to listen", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", dashboard_port)).is_ok()
    });
    let bearer = "Authorization: Bearer progress-test-token-0123";
    let task_page = get_as(dashboard_port, &format!("/tasks/{id}"), bearer);
    let overview = get_as(dashboard_port, "/", bearer);
    let _ = dashboard.kill();
    let _ = dashboard.wait();
    assert!(
        task_page.contains(r#"<progress value="3" max="10""#)
            && task_page.contains("3/10 (30%) importing rows"),
        "{task_page}"
    );
    assert!(overview.contains("3/10 (30%) importing rows"), "{overview}");

    std::fs::write(&go, b"").expect("let the task end");
    demo.wait_status(&id, TaskStatus::Finished, Duration::from_secs(60));
    assert_eq!(
        demo.store.progress(&id).expect("progress"),
        Some(Progress::new(10, Some(10), "done")),
        "the last report always goes through"
    );
    wait_until("the gauge back to 0", Duration::from_secs(60), || {
        get(metrics_port, "/metrics").contains("redis_tasks_task_progress_ratio{slot=\"0\"} 0.0")
    });
    sup.stop();
}
