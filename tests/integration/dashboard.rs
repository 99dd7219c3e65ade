//! The web dashboard: the admin binary's `dashboard` against a real Redis,
//! driven by a real headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it) over the DevTools protocol, and by plain HTTP for what a
//! browser would not do (forged POSTs, foreign hosts, missing tokens).
//!
//! Every dashboard asks for a token, loopback too: [`Dashboard::start`]
//! signs in with the login URL the dashboard prints (or the token it was
//! given) and [`http`] sends that session's cookie; [`anonymous`] is a
//! local client that never signed in.
//!
//! With `DASHBOARD_SCREENSHOTS=<dir>` the browser test also writes the
//! screenshots of docs/dashboard.md there
//! (`DASHBOARD_SCREENSHOTS=docs/images cargo test --test integration dashboard`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use jiff::Timestamp;
use redis_tasks::store::SlotInfo;
use redis_tasks::{EnqueueOptions, Jitter, RetryPolicy, TaskStatus};
use serde_json::json;

use crate::e2e::Demo;
use crate::support::{Cmd, admin_bin, free_port, wait_until};

/// A running `redis-tasks dashboard`, stopped on drop.
struct Dashboard {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Dashboard {
    fn start(demo: &Demo, args: &[&str], env: &[(&str, &str)]) -> Dashboard {
        let port = free_port().expect("port");
        let log = demo.path(&format!("dashboard-{port}.log"));
        let file = fs::File::create(&log).expect("log file");
        let child = Command::new(admin_bin())
            .args(["dashboard", "--bind", &format!("127.0.0.1:{port}")])
            .args(args)
            .env_remove("RT_SETTINGS")
            .env_remove("RT_DASHBOARD_TOKEN")
            .env("REDIS_URL", demo.redis.url())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start the dashboard");
        let mut dashboard = Dashboard { child, port, log };
        wait_until("the dashboard to listen", Duration::from_secs(60), || {
            if let Ok(Some(status)) = dashboard.child.try_wait() {
                panic!("the dashboard exited ({status}):\n{}", dashboard.log());
            }
            TcpStream::connect(("127.0.0.1", dashboard.port)).is_ok()
        });
        // Sign in the way a user would, and keep the session for `http`.
        let given = env.iter().find(|(k, _)| *k == "RT_DASHBOARD_TOKEN");
        let signed_in = if let Some((_, token)) = given {
            Some(anonymous(
                port,
                "POST",
                "/login",
                &[],
                &format!("token={token}"),
            ))
        } else if args.contains(&"--no-auth") {
            None
        } else {
            let url = dashboard.login_url();
            let path = url.trim_start_matches(&format!("http://127.0.0.1:{port}"));
            Some(anonymous(port, "GET", path, &[], ""))
        };
        if let Some(answer) = signed_in {
            let cookie = session_cookie(&answer)
                .unwrap_or_else(|| panic!("no session after signing in: {}", answer.headers));
            jar().insert(port, cookie);
        }
        dashboard
    }

    /// The login URL the dashboard printed at start.
    fn login_url(&self) -> String {
        let mut url = None;
        wait_until("the login URL", Duration::from_secs(30), || {
            let log = self.log();
            url = log
                .split_whitespace()
                .find(|w| w.starts_with("http://") && w.contains("/login?token="))
                .map(str::to_owned);
            url.is_some()
        });
        url.expect("login URL")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status code, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// The session cookie of each dashboard's port (see [`Dashboard::start`]).
fn jar() -> std::sync::MutexGuard<'static, BTreeMap<u16, String>> {
    static JAR: Mutex<BTreeMap<u16, String>> = Mutex::new(BTreeMap::new());
    JAR.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `name=value` of the session cookie an answer sets, if it does.
fn session_cookie(answer: &Answer) -> Option<String> {
    answer.headers.lines().find_map(|l| {
        let value = l.strip_prefix("set-cookie: ")?;
        let pair = value.split(';').next()?;
        pair.starts_with("rt_dashboard_session=")
            .then(|| pair.to_owned())
    })
}

/// [`anonymous`] with the session of the dashboard on `port` (unless
/// `headers` bring their own credential); a session the answer starts
/// (`--no-auth`) is kept.
fn http(port: u16, method: &str, path: &str, headers: &[&str], body: &str) -> Answer {
    let own = headers.iter().any(|h| {
        let h = h.to_lowercase();
        h.starts_with("cookie:") || h.starts_with("authorization:")
    });
    let cookie = jar().get(&port).cloned().filter(|_| !own);
    let cookie_line = cookie.map(|c| format!("Cookie: {c}"));
    let mut all: Vec<&str> = headers.to_vec();
    all.extend(cookie_line.as_deref());
    let answer = anonymous(port, method, path, &all, body);
    if let Some(new) = session_cookie(&answer).filter(|_| !own) {
        jar().insert(port, new);
    }
    answer
}

/// One HTTP/1.1 request with `headers` (full lines) and a form `body`, and
/// no credential but what `headers` carry.
fn anonymous(port: u16, method: &str, path: &str, headers: &[&str], body: &str) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|h| h.to_lowercase().starts_with("host:"))
    {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        headers: head.to_lowercase(),
        body: body.to_owned(),
    }
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in:\n{page}"))
        + r#"name="csrf" value=""#.len();
    page[start..].chars().take_while(|c| *c != '"').collect()
}

/// A failed task (and, for the overview, a finished one and one waiting).
fn demo_with_a_failed_task() -> (Demo, String) {
    let demo = Demo::new();
    demo.enqueue("noop", json!(null));
    let failed = demo.enqueue("fail", json!({"message": "the report server said no"}));
    demo.burst(&["--concurrency", "1"]);
    assert_eq!(demo.task(&failed).status, TaskStatus::Failed);
    demo.store
        .queue("reports")
        .enqueue("noop", &json!({"user": 7}))
        .expect("enqueue");
    (demo, failed)
}

fn browser(profile: &Path, size: (u32, u32)) -> Browser {
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .into_iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from("/usr/bin/chromium")))
        .headless(true)
        .sandbox(false)
        .user_data_dir(Some(profile.to_path_buf()))
        .window_size(Some(size))
        .args(args)
        .idle_browser_timeout(Duration::from_secs(300))
        .build()
        .expect("launch options");
    Browser::new(options).expect(
        "start chromium (install Debian's chromium package; .ci/run does) with --no-sandbox",
    )
}

fn open(tab: &Arc<Tab>, url: &str) {
    tab.navigate_to(url)
        .and_then(|t| t.wait_until_navigated())
        .unwrap_or_else(|e| panic!("cannot load {url}: {e}"));
}

fn click(tab: &Arc<Tab>, selector: &str) {
    tab.wait_for_element(selector)
        .and_then(|e| e.click().map(|_| ()))
        .unwrap_or_else(|e| panic!("cannot click {selector} on {}: {e}", tab.get_url()));
}

fn text(tab: &Arc<Tab>, selector: &str) -> String {
    tab.wait_for_element(selector)
        .and_then(|e| e.get_inner_text())
        .unwrap_or_else(|e| {
            panic!(
                "no {selector} on {}: {e}\n{}",
                tab.get_url(),
                tab.get_content().unwrap_or_default()
            )
        })
}

/// Takes a screenshot, checks it is a PNG, and keeps it where
/// `DASHBOARD_SCREENSHOTS` says.
fn screenshot(tab: &Arc<Tab>, name: &str, tmp: &Path) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n"), "{name} is not a PNG");
    assert!(png.len() > 5_000, "{name} is nearly empty");
    let dir = std::env::var_os("DASHBOARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf());
    fs::create_dir_all(&dir).expect("screenshot dir");
    fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

#[test]
fn a_browser_opens_a_failed_task_and_requeues_it() {
    let (demo, failed) = demo_with_a_failed_task();
    // A supervisor busy with a long task on another queue, for the workers
    // table (it does not listen on `default`, where the requeue goes).
    let mut sup = demo.start(&["--concurrency", "2", "slow"], &[]);
    let busy = demo
        .store
        .queue("slow")
        .enqueue("sleep", &json!({"secs": 120}))
        .expect("enqueue");
    demo.wait_status(&busy, TaskStatus::Running, Duration::from_secs(60));
    // A task due tomorrow, for the delayed page.
    let tomorrow = demo
        .store
        .queue("reports")
        .enqueue_with(
            "noop",
            &json!({"user": 8}),
            &EnqueueOptions::new().delay(Duration::from_secs(86_400)),
        )
        .expect("enqueue");
    let dashboard = Dashboard::start(&demo, &["--refresh", "0"], &[]);
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = browser(profile.path(), (1280, 900));
    let tab = browser.new_tab().expect("tab");
    tab.set_default_timeout(Duration::from_secs(60));

    // Signed out, the browser is sent to the login form; the login URL the
    // dashboard printed signs it in and lands on the overview.
    open(&tab, &dashboard.url("/failed"));
    assert!(tab.get_url().contains("/login"), "{}", tab.get_url());
    open(&tab, &dashboard.login_url());

    // The overview counts the failed task and lists the queues.
    open(&tab, &dashboard.url("/"));
    assert_eq!(text(&tab, "#failed-count"), "1");
    assert!(text(&tab, "#queues").contains("reports"));
    assert!(text(&tab, "#workers").contains("sleep(secs=120)"));
    assert_eq!(text(&tab, "#scheduled-count"), "1");
    screenshot(&tab, "dashboard-overview", profile.path());

    // The running tasks of the fleet, and a queue's page with its history.
    click(&tab, "header a[href='/running']");
    tab.wait_until_navigated().expect("running list");
    assert!(text(&tab, "#matching").contains("1 running"));
    assert!(text(&tab, "table.tasks").contains("sleep(secs=120)"));
    screenshot(&tab, "dashboard-running", profile.path());
    open(&tab, &dashboard.url("/queues/reports"));
    assert!(text(&tab, "h1").contains("Queue reports"));
    screenshot(&tab, "dashboard-queue", profile.path());

    // Overview -> the delayed page, by clicking.
    click(&tab, "header a[href='/delayed']");
    tab.wait_until_navigated().expect("delayed list");
    assert!(text(&tab, "#delayed").contains(&tomorrow));
    screenshot(&tab, "dashboard-delayed", profile.path());
    open(&tab, &dashboard.url("/"));

    // Overview -> failed list -> the task, by clicking.
    click(&tab, "a[href='/failed']");
    tab.wait_until_navigated().expect("failed list");
    let link = format!("a[href='/tasks/{failed}']");
    assert!(text(&tab, "table.tasks").contains("the report server said no"));
    screenshot(&tab, "dashboard-failed", profile.path());
    click(&tab, &link);
    tab.wait_until_navigated().expect("task page");
    assert_eq!(text(&tab, "#task-id"), failed);
    assert_eq!(text(&tab, "#task-status"), "failed");
    assert!(text(&tab, "#task-error").contains("the report server said no"));
    screenshot(&tab, "dashboard-task", profile.path());

    // Requeue with a click; the page says so, and Redis agrees.
    click(&tab, "button.primary");
    tab.wait_until_navigated().expect("after requeue");
    assert!(text(&tab, "#flash").contains("Requeued"));
    assert_eq!(text(&tab, "#task-status"), "queued");
    let record = demo.task(&failed);
    assert_eq!(record.status, TaskStatus::Queued, "{}", dashboard.log());
    assert!(demo.queue_ids("default").contains(&failed));
    assert!(
        !demo
            .store
            .failed()
            .ids(0, 100)
            .expect("failed ids")
            .contains(&failed)
    );

    // The supervisors page, by clicking: the busy slot, then Scale and
    // Quiet with the page's own forms; the supervisor obeys through Redis.
    let id = demo.store.supervisors().expect("supervisors")[0].id.clone();
    open(&tab, &dashboard.url("/"));
    click(&tab, "header a[href='/supervisors']");
    tab.wait_until_navigated().expect("supervisors page");
    let section = format!("#supervisor-{id}");
    assert!(text(&tab, &section).contains("sleep(secs=120)"));
    screenshot(&tab, "dashboard-supervisors", profile.path());
    tab.evaluate(
        "document.querySelector(\"input[name=slots]\").value = '3'",
        false,
    )
    .expect("set the slot count");
    click(&tab, "form[action$='/scale'] button");
    tab.wait_until_navigated().expect("after scale");
    assert!(text(&tab, "#flash").contains("Scale sent"));
    wait_until("three slots", Duration::from_secs(60), || {
        demo.store
            .worker_infos()
            .is_ok_and(|w| w.iter().filter(|w| w.supervisor == id).count() == 3)
    });
    click(&tab, "form[action$='/quiet'] button");
    tab.wait_until_navigated().expect("after quiet");
    assert!(text(&tab, "#flash").contains("Quiet sent"));
    wait_until(
        "the supervisor to be quiet",
        Duration::from_secs(60),
        || {
            demo.store
                .supervisors()
                .is_ok_and(|all| all.iter().any(|s| s.id == id && s.mode == "quiet"))
        },
    );

    // The same overview on a phone-sized window.
    let phone = browser.new_tab().expect("tab");
    phone
        .set_bounds(headless_chrome::types::Bounds::Normal {
            left: None,
            top: None,
            width: Some(390.0),
            height: Some(844.0),
        })
        .expect("phone size");
    open(&phone, &dashboard.url("/"));
    assert_eq!(text(&phone, "#failed-count"), "0");
    screenshot(&phone, "dashboard-phone", profile.path());
    sup.stop();
}

#[test]
fn forged_and_foreign_requests_change_nothing() {
    let (demo, failed) = demo_with_a_failed_task();
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let page = http(port, "GET", &format!("/tasks/{failed}"), &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.headers.contains("content-security-policy"));
    let csrf = csrf_of(&page.body);
    let path = format!("/tasks/{failed}/requeue");

    // No token, a wrong token, another site's origin, another host name.
    for (headers, body) in [
        (vec![], String::new()),
        (vec![], "csrf=0123".to_owned()),
        (vec!["Origin: http://evil.example"], format!("csrf={csrf}")),
        (vec!["Host: evil.example"], format!("csrf={csrf}")),
    ] {
        let answer = http(port, "POST", &path, &headers, &body);
        assert!(
            answer.status == 403 || answer.status == 421,
            "{headers:?} {body}: {} {}",
            answer.status,
            answer.body
        );
        assert_eq!(demo.task(&failed).status, TaskStatus::Failed);
    }
    let foreign = http(port, "GET", "/", &["Host: evil.example:80"], "");
    assert_eq!(foreign.status, 421, "DNS rebinding: {}", foreign.body);

    // The real form works, and a second try says why it cannot.
    let answer = http(port, "POST", &path, &[], &format!("csrf={csrf}"));
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(demo.task(&failed).status, TaskStatus::Queued);
    let again = http(port, "POST", &path, &[], &format!("csrf={csrf}"));
    assert_eq!(again.status, 409, "{}", again.body);
}

/// Another local process (a task whose profile keeps the network, another
/// user) that never signed in: it can read no task's arguments, learn no
/// CSRF token, and delete nothing, with or without a session of its own.
#[test]
fn a_local_client_without_the_token_can_neither_read_nor_delete() {
    let (demo, failed) = demo_with_a_failed_task();
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let page = http(port, "GET", &format!("/tasks/{failed}"), &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("the report server said no"),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);

    for path in [
        format!("/tasks/{failed}"),
        "/failed".to_owned(),
        "/".to_owned(),
    ] {
        let answer = anonymous(port, "GET", &path, &[], "");
        assert_eq!(answer.status, 303, "{path}: {}", answer.body);
        assert!(answer.headers.contains("location: /login"), "{path}");
        assert!(!answer.body.contains("the report server said no"), "{path}");
        assert!(!answer.body.contains("name=\"csrf\""), "{path}");
    }
    // Even with the signed-in browser's CSRF token (leaked somehow), a
    // request without its session cookie deletes nothing.
    for headers in [
        vec![],
        vec!["Cookie: rt_dashboard_session=0123456789abcdef0123456789abcdef"],
    ] {
        let answer = anonymous(
            port,
            "POST",
            &format!("/tasks/{failed}/delete"),
            &headers,
            &format!("csrf={csrf}"),
        );
        assert!(
            answer.status == 303 && answer.headers.contains("location: /login"),
            "{headers:?}: {} {}",
            answer.status,
            answer.body
        );
        assert_eq!(demo.task(&failed).status, TaskStatus::Failed);
    }
    // A second session (a second browser) has a CSRF token of its own.
    let other = anonymous(
        port,
        "GET",
        dashboard
            .login_url()
            .trim_start_matches(&format!("http://127.0.0.1:{port}")),
        &[],
        "",
    );
    let other = format!("Cookie: {}", session_cookie(&other).expect("session"));
    let other_page = anonymous(port, "GET", &format!("/tasks/{failed}"), &[&other], "");
    assert_ne!(csrf_of(&other_page.body), csrf);
    let crossed = anonymous(
        port,
        "POST",
        &format!("/tasks/{failed}/delete"),
        &[&other],
        &format!("csrf={csrf}"),
    );
    assert_eq!(crossed.status, 403, "{}", crossed.body);
    assert_eq!(demo.task(&failed).status, TaskStatus::Failed);
}

/// `--no-auth` is for loopback only, and says so loudly.
#[test]
fn no_auth_is_refused_off_loopback() {
    let demo = Demo::new();
    let o = Cmd::new(admin_bin())
        .env("REDIS_URL", demo.redis.url())
        .args(["dashboard", "--no-auth", "--bind", "0.0.0.0:0"])
        .fails();
    assert!(o.stderr.contains("refusing --no-auth"), "{}", o.stderr);
    let (demo, failed) = demo_with_a_failed_task();
    let dashboard = Dashboard::start(&demo, &["--no-auth"], &[]);
    // The warning may reach the log just after the port answers.
    crate::support::wait_until("the --no-auth warning", Duration::from_secs(30), || {
        dashboard.log().contains("WITHOUT authentication")
    });
    let page = http(dashboard.port, "GET", &format!("/tasks/{failed}"), &[], "");
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    // The page's token only works with the cookie that came with it.
    let bare = anonymous(
        dashboard.port,
        "POST",
        &format!("/tasks/{failed}/delete"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(bare.status, 403, "{}", bare.body);
    let answer = http(
        dashboard.port,
        "POST",
        &format!("/tasks/{failed}/delete"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
}

/// A producer's 20 MB argument (2 MB description and error) in the failed
/// registry: the failed list and the task page stay small and quick, and
/// the whole argument is a download of its own.
#[test]
fn a_huge_record_makes_small_pages() {
    let (demo, _) = demo_with_a_failed_task();
    let id = crate::cli_admin::huge_failed_task(&mut demo.redis.client());
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    for path in ["/failed".to_owned(), format!("/tasks/{id}"), "/".to_owned()] {
        let started = std::time::Instant::now();
        let page = http(port, "GET", &path, &[], "");
        let took = started.elapsed();
        assert_eq!(
            page.status,
            200,
            "{path}: {}",
            &page.body[..page.body.len().min(2000)]
        );
        assert!(
            page.body.len() < 1024 * 1024,
            "{path}: {} bytes",
            page.body.len()
        );
        assert!(took < Duration::from_secs(10), "{path}: {took:?}");
    }
    let task = http(port, "GET", &format!("/tasks/{id}"), &[], "");
    assert!(
        task.body.contains("20971522 bytes in all"),
        "{}",
        &task.body[..4000.min(task.body.len())]
    );
    assert!(task.body.contains(&format!("/tasks/{id}/raw/args")));
    let raw = http(port, "GET", &format!("/tasks/{id}/raw/args"), &[], "");
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body.len(), 20 * 1024 * 1024 + 2);
    assert!(raw.headers.contains("content-disposition: attachment"));
    assert_eq!(
        http(port, "GET", &format!("/tasks/{id}/raw/status"), &[], "").status,
        404
    );
    assert_eq!(
        anonymous(port, "GET", &format!("/tasks/{id}/raw/args"), &[], "").status,
        303
    );
}

/// Lists are paged: the second page of the failed registry shows the older
/// tasks.
#[test]
fn the_failed_list_is_paged() {
    let demo = Demo::new();
    let mut c = demo.redis.client();
    let mut pipe = redis::pipe();
    for i in 0..150 {
        let id = format!("old-{i:03}");
        pipe.cmd("HSET")
            .arg(format!("redis_tasks:task:{id}"))
            .arg(&[
                ("task", "report"),
                ("args", "null"),
                ("status", "failed"),
                ("queue", "default"),
                ("enqueued_at", "2026-11-25T08:17:26Z"),
            ])
            .ignore()
            .cmd("ZADD")
            .arg("redis_tasks:failed")
            .arg(1_764_000_000 + i)
            .arg(&id)
            .ignore();
    }
    pipe.exec(&mut c).expect("failed tasks");
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let first = http(dashboard.port, "GET", "/failed", &[], "");
    assert!(first.body.contains("old-149") && !first.body.contains("old-049"));
    assert!(first.body.contains("page 1 of 2"), "{}", first.body);
    let second = http(dashboard.port, "GET", "/failed?page=1", &[], "");
    assert!(second.body.contains("old-049") && !second.body.contains("old-050\""));
    assert!(second.body.contains("old-000"));
}

#[test]
fn the_delayed_list_is_paged() {
    let demo = Demo::new();
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    for i in 0..150 {
        let options =
            redis_tasks::EnqueueOptions::new().at(soon + jiff::SignedDuration::from_secs(i));
        demo.store
            .queue("default")
            .enqueue_with("noop", &json!({ "n": format!("later-{i:03}") }), &options)
            .expect("delayed enqueue");
    }
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let first = http(dashboard.port, "GET", "/delayed", &[], "");
    assert!(first.body.contains("later-000") && !first.body.contains("later-100"));
    let second = http(dashboard.port, "GET", &next_link(&first.body), &[], "");
    assert!(second.body.contains("later-100") && second.body.contains("later-149"));
    assert!(!second.body.contains("later-099"), "{}", second.body);
    assert!(
        !second.body.contains("id=\"next\""),
        "the end of the set: {}",
        element(&second.body, "pager")
    );
}

/// The link of a page's `#next` (next page or continue search), unescaped.
fn next_link(page: &str) -> String {
    let from = page
        .find("id=\"next\" href=\"")
        .unwrap_or_else(|| panic!("no next link: {page}"))
        + "id=\"next\" href=\"".len();
    let end = page[from..].find('"').expect("end of the link") + from;
    page[from..end].replace("&amp;", "&")
}

#[test]
fn delete_removes_a_failed_task_and_cancel_a_queued_one() {
    let (demo, failed) = demo_with_a_failed_task();
    let waiting = demo.store.queue("reports").ids(0, 10).expect("ids")[0].clone();
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let csrf = csrf_of(&http(port, "GET", "/failed", &[], "").body);
    let answer = http(
        port,
        "POST",
        &format!("/tasks/{waiting}/cancel"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(demo.task(&waiting).status, TaskStatus::Canceled);
    let answer = http(
        port,
        "POST",
        &format!("/tasks/{failed}/delete"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(demo.store.task(&failed).is_err(), "the record is gone");
    assert_eq!(demo.store.failed().count().expect("count"), 0);
    let missing = http(port, "GET", &format!("/tasks/{failed}"), &[], "");
    assert_eq!(missing.status, 404);
}

#[test]
fn read_only_shows_no_action_and_refuses_posts() {
    let (demo, failed) = demo_with_a_failed_task();
    let dashboard = Dashboard::start(&demo, &["--read-only"], &[]);
    let page = http(dashboard.port, "GET", &format!("/tasks/{failed}"), &[], "");
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("<form method=\"post\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("name=\"csrf\""), "{}", page.body);
    let answer = http(
        dashboard.port,
        "POST",
        &format!("/tasks/{failed}/requeue"),
        &[],
        "csrf=x",
    );
    assert_eq!(answer.status, 403);
    assert_eq!(demo.task(&failed).status, TaskStatus::Failed);
}

#[test]
fn a_token_is_required_off_loopback_and_then_asked_for() {
    let demo = Demo::new();
    let o = Cmd::new(admin_bin())
        .env("REDIS_URL", demo.redis.url())
        .args(["dashboard", "--bind", "0.0.0.0:0"])
        .fails();
    assert!(o.stderr.contains("without a token"), "{}", o.stderr);
    let o = Cmd::new(admin_bin())
        .env("REDIS_URL", demo.redis.url())
        .env("RT_DASHBOARD_TOKEN", "short")
        .args(["dashboard", "--bind", "127.0.0.1:0"])
        .fails();
    assert!(o.stderr.contains("at least 16"), "{}", o.stderr);

    let token = "correct-horse-battery-staple";
    let dashboard = Dashboard::start(&demo, &[], &[("RT_DASHBOARD_TOKEN", token)]);
    let port = dashboard.port;
    let signed_out = anonymous(port, "GET", "/", &[], "");
    assert_eq!(signed_out.status, 303);
    assert!(signed_out.headers.contains("location: /login"));
    let wrong = anonymous(port, "POST", "/login", &[], "token=guess-guess-guess-1");
    assert!(wrong.headers.contains("location: /login?error"));
    let login = anonymous(port, "POST", "/login", &[], &format!("token={token}"));
    let session = session_cookie(&login).unwrap_or_else(|| panic!("{}", login.headers));
    assert!(login.headers.contains("httponly"));
    assert!(
        !login.headers.contains(token),
        "the token itself is not a cookie: {}",
        login.headers
    );
    let cookie = format!("Cookie: {session}");
    assert_eq!(anonymous(port, "GET", "/", &[&cookie], "").status, 200);
    let made_up = "Cookie: rt_dashboard_session=0123456789abcdef0123456789abcdef";
    assert_eq!(anonymous(port, "GET", "/", &[made_up], "").status, 303);
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(
        anonymous(port, "GET", "/failed", &[&bearer], "").status,
        200
    );
}

#[test]
fn the_schedule_and_graph_pages_show_entries_and_nodes() {
    let demo = Demo::new();
    let settings = demo.path("settings.toml");
    fs::write(
        &settings,
        "[schedule.nightly-report]\ntask = \"noop\"\ncron = \"0 3 * * *\"\nqueue = \"reports\"\n",
    )
    .expect("settings");
    demo.store
        .mark_graph_middleware(Duration::from_secs(60))
        .expect("mark");
    let graph = redis_tasks::Graph::new()
        .node("fetch", "noop", ())
        .node("render", "noop", ())
        .chain(["fetch", "render"])
        .enqueue(&demo.store)
        .expect("enqueue the graph");
    let settings_env = settings.to_string_lossy().into_owned();
    let dashboard = Dashboard::start(&demo, &[], &[("RT_SETTINGS", &settings_env)]);
    let port = dashboard.port;

    let schedule = http(port, "GET", "/schedule", &[], "");
    assert_eq!(schedule.status, 200, "{}", schedule.body);
    for expected in ["nightly-report", "reports", "0 3 * * *", "in "] {
        assert!(
            schedule.body.contains(expected),
            "{expected}:\n{}",
            schedule.body
        );
    }

    // The next five runs, in the settings' time zone.
    let table = &schedule.body[schedule.body.find("id=\"schedule\"").expect("table")..];
    assert_eq!(table.matches(" 03:00:00").count(), 5, "{table}");

    // Pause, run now and resume, as POST forms with the session's CSRF token.
    let csrf = csrf_of(&schedule.body);
    let forged = http(
        port,
        "POST",
        "/schedule/nightly-report/pause",
        &[],
        "csrf=0123",
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(
        !demo
            .store
            .schedule_control("nightly-report")
            .expect("control")
            .paused
    );
    let body = format!("csrf={csrf}");
    let paused = http(port, "POST", "/schedule/nightly-report/pause", &[], &body);
    assert_eq!(paused.status, 303, "{}", paused.body);
    assert!(
        demo.store
            .schedule_control("nightly-report")
            .expect("control")
            .paused
    );
    let page = http(port, "GET", "/schedule?done=paused", &[], "");
    assert!(
        page.body.contains("s-paused") && page.body.contains("/schedule/nightly-report/resume")
    );
    assert!(
        page.body.contains("Paused: the scheduler skips"),
        "{}",
        page.body
    );
    let run = http(port, "POST", "/schedule/nightly-report/run", &[], &body);
    assert_eq!(run.status, 303, "{}", run.body);
    assert_eq!(
        demo.store
            .schedule_control("nightly-report")
            .expect("control")
            .run_requests,
        1
    );
    let resumed = http(port, "POST", "/schedule/nightly-report/resume", &[], &body);
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    assert!(
        !demo
            .store
            .schedule_control("nightly-report")
            .expect("control")
            .paused
    );
    let unknown = http(port, "POST", "/schedule/nope/pause", &[], &body);
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    let page = http(port, "GET", &format!("/graphs/{}", graph.id), &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("fetch") && page.body.contains("render"));
    assert!(page.body.contains("s-waiting") && page.body.contains("s-queued"));
    let lookup = http(port, "GET", &format!("/graphs?id={}", graph.id), &[], "");
    assert_eq!(lookup.status, 303);
    assert_eq!(http(port, "GET", "/graphs/nope", &[], "").status, 404);
}

/// The text between `<tag id="id"` and the end of that element's line of
/// markup (maud writes no newlines: up to the next `</`).
fn element<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in:\n{page}"));
    let rest = &page[start..];
    let end = rest.find("</").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_delayed_page_lists_scheduled_tasks_and_cancels_one() {
    let demo = Demo::new();
    let options = EnqueueOptions::new()
        .delay(Duration::from_secs(3600))
        .timeout(Duration::from_secs(45))
        .retry(RetryPolicy::new(3))
        .unique("report-7");
    let later = demo
        .store
        .queue("reports")
        .enqueue_with("noop", &json!({"user": 7}), &options)
        .expect("enqueue");
    let other = demo
        .store
        .queue("reports")
        .enqueue_with(
            "noop",
            &json!(null),
            &EnqueueOptions::new().delay(Duration::from_secs(7200)),
        )
        .expect("enqueue");
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;

    let overview = http(port, "GET", "/", &[], "");
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(
        element(&overview.body, "scheduled-count").ends_with(">2"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("href=\"/delayed\""));

    let list = http(port, "GET", "/delayed", &[], "");
    assert_eq!(list.status, 200, "{}", list.body);
    let (first, second) = (
        list.body.find(&later).expect("listed"),
        list.body.find(&other).expect("listed"),
    );
    assert!(first < second, "soonest due first:\n{}", list.body);
    for expected in ["in 59 min", "in 119 min", "s-scheduled", "reports"] {
        assert!(list.body.contains(expected), "{expected}:\n{}", list.body);
    }
    assert!(
        list.body
            .contains(&format!("action=\"/tasks/{later}/cancel\""))
    );

    let task = http(port, "GET", &format!("/tasks/{later}"), &[], "");
    assert_eq!(task.status, 200, "{}", task.body);
    assert!(element(&task.body, "task-timeout").contains("45 s"));
    assert!(element(&task.body, "task-retry").contains("up to 3 retries"));
    assert!(task.body.contains("report-7"), "{}", task.body);
    assert!(element(&task.body, "task-run-at").contains("in 59 min"));
    assert!(task.body.contains("not been retried"), "{}", task.body);

    // Read-only: no button, and the POST is refused.
    let csrf = csrf_of(&list.body);
    let read_only = Dashboard::start(&demo, &["--read-only"], &[]);
    let page = http(read_only.port, "GET", "/delayed", &[], "");
    assert!(page.body.contains(&later) && !page.body.contains("/cancel\""));
    let refused = http(
        read_only.port,
        "POST",
        &format!("/tasks/{later}/cancel"),
        &[],
        "csrf=x",
    );
    assert_eq!(refused.status, 403);
    // A forged form is refused too.
    let forged = http(port, "POST", &format!("/tasks/{later}/cancel"), &[], "");
    assert_eq!(forged.status, 403);
    assert_eq!(demo.task(&later).status, TaskStatus::Scheduled);

    let answer = http(
        port,
        "POST",
        &format!("/tasks/{later}/cancel"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(
        answer.headers.contains("done=canceled"),
        "{}",
        answer.headers
    );
    assert_eq!(demo.task(&later).status, TaskStatus::Canceled);
    assert_eq!(demo.store.scheduled_count().expect("count"), 1);
    let list = http(port, "GET", "/delayed", &[], "");
    assert!(!list.body.contains(&later), "{}", list.body);
    let again = http(
        port,
        "POST",
        &format!("/tasks/{later}/cancel"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(again.status, 409, "{}", again.body);
}

#[test]
fn the_task_page_shows_attempts_and_result_and_cancels_a_running_task() {
    let demo = Demo::new();
    let retried = demo
        .store
        .queue("default")
        .enqueue_with(
            "fail",
            &json!({"message": "the mail server said no"}),
            &EnqueueOptions::new().retry(
                RetryPolicy::new(2)
                    .base(Duration::from_secs(3600))
                    .cap(Duration::from_secs(3600))
                    .jitter(Jitter::None),
            ),
        )
        .expect("enqueue");
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&retried, TaskStatus::Scheduled, Duration::from_secs(60));
    let running = demo.enqueue("sleep", json!({"secs": 60}));
    demo.wait_status(&running, TaskStatus::Running, Duration::from_secs(60));
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;

    let page = http(port, "GET", &format!("/tasks/{retried}"), &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let start = page.body.find("id=\"task-attempts\"").expect("attempts");
    let attempts = &page.body[start..];
    for expected in ["s-failed", "the mail server said no", "in 59 min"] {
        assert!(attempts.contains(expected), "{expected}:\n{attempts}");
    }
    assert!(element(&page.body, "task-retry").contains("up to 2 retries"));

    // The running page lists it, and filters it in or out.
    let list = http(port, "GET", "/running?task=sleep&since=1h", &[], "");
    assert!(
        element(&list.body, "matching").contains("1 matching"),
        "{}",
        list.body
    );
    assert!(list.body.contains(&format!("href=\"/tasks/{running}\"")));
    let none = http(port, "GET", "/running?task=sleep&before=1h", &[], "");
    assert!(element(&none.body, "matching").contains("0 matching"));

    // Cancel a running task: the supervisor kills it.
    let page = http(port, "GET", &format!("/tasks/{running}"), &[], "");
    assert!(page.body.contains("id=\"cancel-note\""), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let answer = http(
        port,
        "POST",
        &format!("/tasks/{running}/cancel"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(
        answer.headers.contains("done=cancel-requested"),
        "{}",
        answer.headers
    );
    demo.wait_status(&running, TaskStatus::Canceled, Duration::from_secs(60));
    let page = http(
        port,
        "GET",
        &format!("/tasks/{running}?done=cancel-requested"),
        &[],
        "",
    );
    assert!(page.body.contains("Cancel requested"), "{}", page.body);
    assert!(page.body.contains("s-canceled"), "{}", page.body);
    sup.stop();

    // A result, as a task's return value is stored (through the store's
    // own calls, since the demo's tasks return nothing).
    let done = demo.enqueue("noop", json!(null));
    let slot = SlotInfo {
        id: "dashboard-test-slot".to_owned(),
        description: "test".to_owned(),
        queues: vec!["default".to_owned()],
        supervisor: "dashboard-test".to_owned(),
        host: "localhost".to_owned(),
        pid: std::process::id(),
        started_at: Timestamp::now(),
    };
    demo.store.register_slot(&slot).expect("register");
    let fetched = demo
        .store
        .fetch(&slot.id, &slot.queues, Duration::ZERO)
        .expect("fetch")
        .expect("a task");
    assert_eq!(fetched.id, done);
    assert!(
        demo.store
            .finish_with_result(
                &slot.id,
                &done,
                TaskStatus::Finished,
                None,
                Some(r#"{"sent": 12, "note": "<b>bold</b>"}"#),
                Timestamp::now(),
            )
            .expect("finish")
    );
    let page = http(port, "GET", &format!("/tasks/{done}"), &[], "");
    let result = element(&page.body, "task-result");
    assert!(result.contains("&quot;sent&quot;: 12"), "{result}");
    assert!(result.contains("&lt;b&gt;bold"), "escaped: {result}");
}

#[test]
fn the_supervisors_page_shows_slots_and_quiets_scales_and_stops_one() {
    let demo = Demo::new();
    let running = demo.enqueue("sleep", serde_json::json!({"secs": 30}));
    let mut sup = demo.start(&["--concurrency", "1"], &[]);
    demo.wait_status(&running, TaskStatus::Running, Duration::from_secs(60));
    let mut id = String::new();
    wait_until(
        "the supervisor's report",
        Duration::from_secs(60),
        || match demo.store.supervisors().ok().as_deref() {
            Some([one]) => {
                id = one.id.clone();
                true
            }
            _ => false,
        },
    );
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let page = http(port, "GET", "/supervisors", &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    for expected in [id.as_str(), "serving", "sleep(", "redis-tasks", "MiB"] {
        assert!(page.body.contains(expected), "{expected}:\n{}", page.body);
    }
    let csrf = csrf_of(&page.body);
    let path = |verb: &str| format!("/supervisors/{id}/{verb}");

    let forged = http(port, "POST", &path("stop"), &[], "csrf=0123");
    assert_eq!(forged.status, 403, "{}", forged.body);
    let bad = http(
        port,
        "POST",
        &path("scale"),
        &[],
        &format!("csrf={csrf}&slots=0"),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let unknown = http(
        port,
        "POST",
        "/supervisors/nope/quiet",
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    let scaled = http(
        port,
        "POST",
        &path("scale"),
        &[],
        &format!("csrf={csrf}&slots=2"),
    );
    assert_eq!(scaled.status, 303, "{}", scaled.body);
    wait_until("two slots", Duration::from_secs(60), || {
        demo.store.worker_infos().map_or(0, |w| w.len()) == 2
    });
    let quiet = http(port, "POST", &path("quiet"), &[], &format!("csrf={csrf}"));
    assert_eq!(quiet.status, 303, "{}", quiet.body);
    wait_until("the page to say quiet", Duration::from_secs(60), || {
        http(port, "GET", "/supervisors", &[], "")
            .body
            .contains("s-quiet")
    });
    let stop = http(port, "POST", &path("stop"), &[], &format!("csrf={csrf}"));
    assert_eq!(stop.status, 303, "{}", stop.body);
    assert_eq!(
        sup.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        sup.log()
    );
    assert!(sup.log().contains("command from Redis: stop"));
    let after = http(port, "GET", "/supervisors", &[], "");
    assert!(
        after.body.contains("No supervisor is running"),
        "{}",
        after.body
    );
}

#[test]
fn the_queue_page_shows_flow_control_and_pauses_and_resumes() {
    let (demo, _) = demo_with_a_failed_task();
    demo.store
        .limit_queue("reports", redis_tasks::store::Limit::Concurrency(3))
        .expect("limit");
    demo.store
        .limit_queue(
            "reports",
            redis_tasks::store::Limit::Rate("50/1s".parse().expect("rate")),
        )
        .expect("limit");
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let page = http(port, "GET", "/queues/reports", &[], "");
    assert_eq!(page.status, 200);
    assert!(
        element(&page.body, "flow-state").contains("serving"),
        "{}",
        page.body
    );
    assert!(
        element(&page.body, "flow-running").contains("at most 3"),
        "{}",
        page.body
    );
    assert!(
        element(&page.body, "flow-rate").contains("50/1s"),
        "{}",
        page.body
    );
    // Without the token: refused, nothing changed.
    let forged = http(port, "POST", "/queues/reports/pause", &[], "csrf=0123");
    assert_eq!(forged.status, 403);
    assert!(!demo.store.queue_flow("reports").expect("flow").paused);
    let csrf = csrf_of(&page.body);
    let answer = http(
        port,
        "POST",
        "/queues/reports/pause",
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(demo.store.queue_flow("reports").expect("flow").paused);
    let page = http(port, "GET", "/queues/reports?done=paused", &[], "");
    assert!(
        element(&page.body, "flow-state").contains("paused"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Resume"), "{}", page.body);
    let answer = http(
        port,
        "POST",
        "/queues/reports/resume",
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(!demo.store.queue_flow("reports").expect("flow").paused);
    let unknown = http(
        port,
        "POST",
        "/queues/reports/drop",
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(unknown.status, 404);
}

#[test]
fn the_task_page_shows_the_tasks_own_output_escaped() {
    let demo = Demo::new();
    let printed = demo.enqueue(
        "print",
        json!({"text": "<script>alert(1)</script> \u{1b}[31mred & done"}),
    );
    let silent = demo.enqueue("noop", json!(null));
    demo.burst(&["--concurrency", "1"]);
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;

    let page = http(port, "GET", &format!("/tasks/{printed}"), &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let output = element(&page.body, "task-output");
    assert_eq!(
        output.matches("&lt;script&gt;alert(1)").count(),
        2,
        "{output}"
    );
    assert!(output.contains("\\u{1b}[31mred &amp; done"), "{output}");
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains('\u{1b}'));

    let page = http(port, "GET", &format!("/tasks/{silent}"), &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(element(&page.body, "task-output-none").contains("None kept"));
}

#[test]
fn expired_tasks_are_listed_and_counted() {
    let demo = Demo::new();
    let mut c = demo.redis.client();
    let id = demo
        .store
        .queue("default")
        .enqueue_with(
            "noop",
            &json!({"n": "stale-report"}),
            &redis_tasks::EnqueueOptions::new().expires_in(std::time::Duration::from_secs(3600)),
        )
        .expect("enqueue");
    // Its expiry passes before any supervisor fetches it.
    let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)).to_string();
    redis::cmd("HSET")
        .arg(format!("redis_tasks:task:{id}"))
        .arg("expires_at")
        .arg(&past)
        .query::<()>(&mut c)
        .expect("hset");
    demo.burst(&[]);
    let rec = demo.task(&id);
    assert_eq!(rec.status, redis_tasks::TaskStatus::Expired);
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let list = http(dashboard.port, "GET", "/expired", &[], "");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("Expired tasks"), "{}", list.body);
    assert!(list.body.contains(&id), "{}", list.body);
    let overview = http(dashboard.port, "GET", "/", &[], "");
    assert!(
        overview.body.contains(r#"id="expired-count">1<"#),
        "{}",
        overview.body
    );
    let page = http(dashboard.port, "GET", &format!("/tasks/{id}"), &[], "");
    assert!(page.body.contains("task-expires-at"), "{}", page.body);
}

/// Puts failed tasks in the registry the way a raw writer would: `(id,
/// queue, error)` each, ended a second apart in the given order.
fn failed_raw(demo: &Demo, tasks: &[(String, &str, &str)]) {
    let mut c = demo.redis.client();
    let mut pipe = redis::pipe();
    let now = Timestamp::now().as_second();
    let count = i64::try_from(tasks.len()).expect("count");
    for (i, (id, queue, error)) in (0_i64..).zip(tasks) {
        pipe.cmd("HSET")
            .arg(format!("redis_tasks:task:{id}"))
            .arg(&[
                ("task", "report"),
                ("args", "null"),
                ("status", "failed"),
                ("queue", queue),
                ("error", error),
                ("enqueued_at", "2026-11-25T08:17:26Z"),
            ])
            .ignore()
            .cmd("ZADD")
            .arg("redis_tasks:failed")
            .arg(now - count + i)
            .arg(id)
            .ignore();
    }
    pipe.exec(&mut c).expect("failed tasks");
}

/// The `Location` of a redirect.
fn location(answer: &Answer) -> String {
    answer
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("no location: {} {}", answer.status, answer.body))
        .to_owned()
}

/// The filter of the failed page: `queue` and text in the error, with the
/// count, paged 100 a page with the filter kept in the links.
#[test]
fn the_failed_page_filters_by_queue_and_error_and_pages_the_matches() {
    let demo = Demo::new();
    let mut tasks = Vec::new();
    for i in 0..130 {
        tasks.push((
            format!("mail-timeout-{i:03}"),
            "mail",
            "smtp timeout after 30 s",
        ));
    }
    for i in 0..20 {
        tasks.push((format!("mail-refused-{i:03}"), "mail", "connection refused"));
    }
    for i in 0..20 {
        tasks.push((format!("report-timeout-{i:03}"), "reports", "timeout"));
    }
    failed_raw(&demo, &tasks);
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;

    let first = http(port, "GET", "/failed?queue=mail&error=timeout", &[], "");
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        element(&first.body, "matching").contains("130 matching"),
        "{}",
        element(&first.body, "matching")
    );
    assert!(first.body.contains("mail-timeout-129"));
    assert!(!first.body.contains("mail-timeout-029\""));
    assert!(!first.body.contains("mail-refused-") && !first.body.contains("report-timeout-"));
    let next = next_link(&first.body);
    assert!(
        next.starts_with("/failed?queue=mail&error=timeout&cursor="),
        "the next page keeps the filter: {next}"
    );
    assert!(first.body.contains("Requeue all 130 matching"));
    // The form shows the filter it applied.
    assert!(
        first
            .body
            .contains("name=\"queue\" size=\"10\" maxlength=\"200\" value=\"mail\"")
    );

    let second = http(port, "GET", &next, &[], "");
    assert!(
        element(&second.body, "matching").contains("30 matching")
            && second.body.contains("matching</strong> from this page on"),
        "{}",
        element(&second.body, "matching")
    );
    assert!(!second.body.contains("id=\"next\""), "the last page");
    assert!(second.body.contains("mail-timeout-029") && second.body.contains("mail-timeout-000"));
    assert!(!second.body.contains("mail-timeout-030\"") && !second.body.contains("mail-refused-"));

    // Other registries take the same filter; a bad duration is refused.
    let finished = http(port, "GET", "/finished?queue=mail", &[], "");
    assert!(element(&finished.body, "matching").contains("0 matching"));
    let recent = http(port, "GET", "/failed?queue=reports&since=1h", &[], "");
    assert!(element(&recent.body, "matching").contains("20 matching"));
    let text = http(port, "GET", "/failed?text=refused", &[], "");
    assert!(element(&text.body, "matching").contains("20 matching"));
    let bad = http(port, "GET", "/failed?since=soon", &[], "");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let bad = http(port, "GET", "/failed?queue=mail&cursor=x%3Cb%3E", &[], "");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(!bad.body.contains("<b>"));
    // A cursor past the last partition is the end: nothing more.
    let past = http(port, "GET", "/failed?queue=mail&cursor=7.5", &[], "");
    assert!(element(&past.body, "matching").contains("0 matching"));
}

/// "Requeue all N matching": a confirmation stating the count first (and
/// nothing moves until it is confirmed), then exactly the matching tasks
/// go back to their queue; a POST without the session's CSRF token
/// changes nothing; reloading the result does not act again.
#[test]
fn bulk_requeue_of_all_matching_goes_through_a_confirmation() {
    let demo = Demo::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.push((format!("m-to-{i}"), "mail", "smtp timeout"));
    }
    for i in 0..2 {
        tasks.push((format!("m-no-{i}"), "mail", "refused"));
        tasks.push((format!("r-to-{i}"), "reports", "timeout"));
    }
    failed_raw(&demo, &tasks);
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let csrf = csrf_of(&http(port, "GET", "/failed?queue=mail&error=timeout", &[], "").body);
    let form = format!("csrf={csrf}&scope=matching&verb=requeue&queue=mail&error=timeout");

    let confirm = http(port, "POST", "/bulk", &[], &form);
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        element(&confirm.body, "confirm")
            .contains("Requeue 3 failed tasks matching queue=mail, error contains 'timeout'?"),
        "{}",
        confirm.body
    );
    assert_eq!(
        demo.store.failed().count().expect("count"),
        7,
        "nothing moved yet"
    );

    // Forged: no token, another token, another site.
    for (headers, body) in [
        (
            vec![],
            "scope=matching&verb=requeue&queue=mail&error=timeout".to_owned(),
        ),
        (vec![], form.replace(&csrf, "0123")),
        (vec!["Origin: http://evil.example"], form.clone()),
    ] {
        let answer = http(port, "POST", "/bulk/run", &headers, &body);
        assert_eq!(answer.status, 403, "{headers:?} {body}: {}", answer.body);
        assert_eq!(demo.store.failed().count().expect("count"), 7);
    }
    let bare = anonymous(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(location(&bare), "/login", "no session: sent to sign in");
    assert_eq!(demo.store.failed().count().expect("count"), 7);

    // The confirmation gives the job its id; without one, nothing runs.
    let no_job = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(no_job.status, 400, "{}", no_job.body);
    let form = format!("{form}&job={}", hidden_value(&confirm.body, "job"));
    let run = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(run.status, 303, "{}", run.body);
    let result = location(&run);
    assert!(result.starts_with("/bulk/jobs/"), "{result}");
    assert!(job_result(port, &result).contains("Requeued 3 failed tasks"));
    let mut queued = demo.store.queue("mail").ids(0, 10).expect("ids");
    queued.sort();
    assert_eq!(queued, ["m-to-0", "m-to-1", "m-to-2"]);
    assert_eq!(demo.store.failed().count().expect("count"), 4);
    assert!(
        demo.store
            .queue("reports")
            .ids(0, 10)
            .expect("ids")
            .is_empty()
    );
    // Reloading the result, or posting the same confirmed form again,
    // shows the same job and does nothing more.
    let again = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(location(&again), result);
    for _ in 0..2 {
        let done = http(port, "GET", &result, &[], "");
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(
            element(&done.body, "result").contains("Requeued 3 failed tasks"),
            "{}",
            done.body
        );
        assert!(
            !done.body.contains("http-equiv=\"refresh\""),
            "a done job stops reloading"
        );
        assert!(
            done.body
                .contains("href=\"/failed?queue=mail&amp;error=timeout\"")
        );
    }
    assert_eq!(demo.store.queue("mail").ids(0, 10).expect("ids").len(), 3);
    assert_eq!(demo.store.failed().count().expect("count"), 4);
    let unknown = http(port, "GET", "/bulk/jobs/nosuchjob", &[], "");
    assert_eq!(unknown.status, 404);
}

/// The value of the hidden field `name` of a page.
fn hidden_value(page: &str, name: &str) -> String {
    let at = format!("name=\"{name}\" value=\"");
    let from = page
        .find(&at)
        .unwrap_or_else(|| panic!("no field {name}: {page}"))
        + at.len();
    let end = page[from..].find('"').expect("end of the value") + from;
    page[from..end].to_owned()
}

/// Checkboxes: the selected failed tasks are deleted after confirmation;
/// deleting them again moves none and says so.
#[test]
fn bulk_delete_of_selected_failed_tasks() {
    let demo = Demo::new();
    let tasks: Vec<(String, &str, &str)> = (0..4)
        .map(|i| (format!("del-{i}"), "mail", "boom"))
        .collect();
    failed_raw(&demo, &tasks);
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let page = http(port, "GET", "/failed", &[], "");
    assert!(
        page.body
            .contains("type=\"checkbox\" name=\"id\" value=\"del-3\" form=\"bulk\""),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let form = format!("csrf={csrf}&verb=delete&id=del-1&id=del-2");
    let confirm = http(port, "POST", "/bulk", &[], &form);
    assert!(
        element(&confirm.body, "confirm").contains("Delete 2 selected failed tasks?"),
        "{}",
        confirm.body
    );
    assert_eq!(demo.store.failed().count().expect("count"), 4);
    let run = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(run.status, 303, "{}", run.body);
    let done = http(port, "GET", &location(&run), &[], "");
    assert!(
        element(&done.body, "result").contains("Deleted 2 failed tasks"),
        "{}",
        done.body
    );
    assert_eq!(
        demo.store.failed().ids(0, 10).expect("ids"),
        ["del-0", "del-3"]
    );
    assert!(demo.store.task("del-1").is_err(), "the record is gone");
    let again = http(port, "POST", "/bulk/run", &[], &form);
    let done = http(port, "GET", &location(&again), &[], "");
    assert!(
        element(&done.body, "result").contains("Deleted 0 failed tasks")
            && element(&done.body, "result").contains("2 were not"),
        "{}",
        done.body
    );
    assert_eq!(demo.store.failed().count().expect("count"), 2);
}

/// The search box: an exact id opens its task, a prefix lists the ids
/// that start with it (at most 100, and says it stopped), and anything
/// that is not an id is refused, escaped.
#[test]
fn the_search_finds_tasks_by_id_and_prefix_and_refuses_the_rest() {
    let demo = Demo::new();
    let mut tasks: Vec<(String, &str, &str)> = (0..3)
        .map(|i| (format!("abcd-{i}"), "mail", "boom"))
        .collect();
    tasks.extend((0..150).map(|i| (format!("many-{i:03}"), "mail", "boom")));
    failed_raw(&demo, &tasks);
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    assert!(
        http(port, "GET", "/", &[], "")
            .body
            .contains("<form class=\"search\" method=\"get\" action=\"/search\"")
    );

    let exact = http(port, "GET", "/search?q=abcd-1", &[], "");
    assert_eq!(exact.status, 303, "{}", exact.body);
    assert_eq!(location(&exact), "/tasks/abcd-1");

    let prefix = http(port, "GET", "/search?q=abcd", &[], "");
    assert_eq!(prefix.status, 200, "{}", prefix.body);
    let results = prefix
        .body
        .split_once("id=\"search-results\"")
        .map_or("", |(_, rest)| rest);
    for i in 0..3 {
        assert!(
            results.contains(&format!("href=\"/tasks/abcd-{i}\"")),
            "{results}"
        );
    }
    assert!(!results.contains("many-"));
    assert!(!prefix.body.contains("id=\"search-capped\""));

    let capped = http(port, "GET", "/search?q=many", &[], "");
    assert!(
        element(&capped.body, "search-count").contains("100 task ids"),
        "{}",
        capped.body
    );
    assert!(
        capped.body.contains("id=\"search-capped\""),
        "{}",
        capped.body
    );

    let none = http(port, "GET", "/search?q=zzzz", &[], "");
    assert!(element(&none.body, "search-count").contains("0 task ids"));

    for hostile in [
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "abc",
        "many*",
        "a%22b%27cdef",
    ] {
        let answer = http(port, "GET", &format!("/search?q={hostile}"), &[], "");
        assert_eq!(answer.status, 400, "{hostile}: {}", answer.body);
        assert!(!answer.body.contains("<script>"), "{}", answer.body);
        assert!(!answer.body.contains("search-results"));
    }
    let script = http(port, "GET", "/search?q=%3Cscript%3E", &[], "");
    assert!(
        script.body.contains("value=\"&lt;script&gt;\""),
        "{}",
        script.body
    );
}

/// "Cancel selected" on a queue's page: confirmed, then the selected
/// tasks leave the queue, canceled; the others wait on.
#[test]
fn cancel_selected_on_a_queue_page() {
    let demo = Demo::new();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            demo.store
                .queue("reports")
                .enqueue("noop", &json!({ "n": i }))
                .expect("enqueue")
        })
        .collect();
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let page = http(port, "GET", "/queues/reports", &[], "");
    assert!(page.body.contains("Cancel selected"), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let form = format!(
        "csrf={csrf}&verb=cancel&from_queue=reports&id={}&id={}",
        ids[0], ids[2]
    );
    let confirm = http(port, "POST", "/bulk", &[], &form);
    assert!(
        element(&confirm.body, "confirm").contains("Cancel 2 selected tasks of queue reports?"),
        "{}",
        confirm.body
    );
    assert_eq!(demo.store.queue("reports").count().expect("count"), 3);
    let forged = http(port, "POST", "/bulk/run", &[], &form.replace(&csrf, "nope"));
    assert_eq!(forged.status, 403);
    assert_eq!(demo.store.queue("reports").count().expect("count"), 3);
    let run = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(run.status, 303, "{}", run.body);
    let done = http(port, "GET", &location(&run), &[], "");
    assert!(
        element(&done.body, "result").contains("Canceled 2 tasks"),
        "{}",
        done.body
    );
    assert!(done.body.contains("href=\"/queues/reports\""));
    assert_eq!(demo.task(&ids[0]).status, TaskStatus::Canceled);
    assert_eq!(demo.task(&ids[2]).status, TaskStatus::Canceled);
    assert_eq!(
        demo.store.queue("reports").ids(0, 10).expect("ids"),
        [ids[1].clone()]
    );
}

/// Clicks `selector` and waits until the tab's address contains `to` and
/// the page has loaded (a click starts the navigation, it does not wait
/// for it).
fn click_to(tab: &Arc<Tab>, selector: &str, to: &str) {
    click(tab, selector);
    wait_until(
        &format!("{selector} to lead to {to}"),
        Duration::from_secs(60),
        || tab.get_url().contains(to),
    );
    tab.wait_until_navigated()
        .unwrap_or_else(|e| panic!("{to} did not load: {e}"));
}

/// Types `value` into the text field `selector`, as a user would.
fn type_in(tab: &Arc<Tab>, selector: &str, value: &str) {
    tab.wait_for_element(selector)
        .and_then(|e| e.click().and_then(|e| e.type_into(value)).map(|_| ()))
        .unwrap_or_else(|e| panic!("cannot type into {selector} on {}: {e}", tab.get_url()));
}

/// The ids of the checkboxes of a task list (one a row).
fn listed_ids(tab: &Arc<Tab>) -> Vec<String> {
    let ids = tab
        .evaluate(
            "Array.from(document.querySelectorAll('table.tasks tbody tr')).map(r => \
             (r.querySelector('input[type=checkbox]') || {}).value || '').join(' ')",
            false,
        )
        .expect("the listed ids");
    let ids = ids.value.and_then(|v| v.as_str().map(str::to_owned));
    ids.unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// What an operator does with a pile of failed tasks, in the browser: finds
/// one by the first characters of its id, narrows the failed list with the
/// filter form, ticks two rows and requeues them, then requeues the rest of
/// what the filter matches, each time through the confirmation; then, with
/// a real scheduler running, pauses a schedule entry (the scheduler hears of
/// it), runs it now and resumes it. Redis is checked after each step.
/// (Quiet with the supervisors page's button is in the test above.)
#[test]
fn a_browser_searches_filters_and_requeues_in_bulk_and_pauses_a_schedule_entry() {
    let demo = Demo::new();
    let timeouts = ["5e1d0a01", "5e1d0a02", "5e1d0a03", "5e1d0a04"];
    let mut tasks: Vec<(String, &str, &str)> = timeouts
        .iter()
        .map(|id| ((*id).to_owned(), "mail", "smtp timeout after 30 s"))
        .collect();
    tasks.push(("7c4b9e01".to_owned(), "mail", "connection refused"));
    tasks.push(("9a2f6d01".to_owned(), "reports", "timeout"));
    failed_raw(&demo, &tasks);
    let settings = demo.path("settings.toml");
    fs::write(
        &settings,
        "[schedule.nightly-report]\ntask = \"noop\"\ncron = \"0 3 * * *\"\nqueue = \"reports\"\n\n\
         [schedule.hourly-cleanup]\ntask = \"noop\"\ncron = \"15 * * * *\"\nqueue = \"default\"\n",
    )
    .expect("settings");
    let settings_env = settings.to_string_lossy().into_owned();
    let dashboard = Dashboard::start(
        &demo,
        &["--refresh", "0"],
        &[("RT_SETTINGS", &settings_env)],
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = browser(profile.path(), (1280, 900));
    let tab = browser.new_tab().expect("tab");
    tab.set_default_timeout(Duration::from_secs(60));
    open(&tab, &dashboard.login_url());
    open(&tab, &dashboard.url("/"));

    // Search: the first characters of an id in the header's box list the
    // ids that start with them; one click opens the task.
    type_in(&tab, "header form.search input[name=q]", "5e1d");
    tab.press_key("Enter").expect("submit the search");
    wait_until("the search results", Duration::from_secs(60), || {
        tab.get_url().contains("/search?q=5e1d")
    });
    tab.wait_until_navigated().expect("search page");
    assert!(text(&tab, "#search-count").starts_with("4 task ids"));
    let found = text(&tab, "#search-results");
    assert!(timeouts.iter().all(|id| found.contains(id)), "{found}");
    assert!(!found.contains("7c4b9e01"), "{found}");
    screenshot(&tab, "dashboard-search", profile.path());
    click_to(
        &tab,
        "#search-results a[href='/tasks/5e1d0a03']",
        "/tasks/5e1d0a03",
    );
    assert_eq!(text(&tab, "#task-id"), "5e1d0a03");
    assert_eq!(text(&tab, "#task-status"), "failed");

    // Filter: queue and error text with the failed page's form.
    open(&tab, &dashboard.url("/failed"));
    assert_eq!(listed_ids(&tab).len(), 6);
    type_in(&tab, "#filter input[name=queue]", "mail");
    type_in(&tab, "#filter input[name=error]", "timeout");
    click_to(&tab, "#filter button[type=submit]", "error=timeout");
    assert!(text(&tab, "#matching").starts_with("4 matching"));
    let mut listed = listed_ids(&tab);
    listed.sort();
    assert_eq!(listed, timeouts);

    // Select two rows and requeue them: the confirmation states the count
    // and nothing moves until it is confirmed.
    click(&tab, "input[type=checkbox][value='5e1d0a01']");
    click(&tab, "input[type=checkbox][value='5e1d0a02']");
    screenshot(&tab, "dashboard-failed-filtered", profile.path());
    click_to(&tab, "form#bulk button[value=requeue]", "/bulk");
    assert!(
        text(&tab, "#confirm").contains("Requeue 2 selected failed tasks?"),
        "{}",
        text(&tab, "#confirm")
    );
    assert_eq!(demo.store.failed().count().expect("count"), 6);
    screenshot(&tab, "dashboard-bulk-confirm", profile.path());
    click_to(&tab, "form[action='/bulk/run'] button", "/bulk/done");
    assert!(text(&tab, "#result").contains("Requeued 2 failed tasks"));
    let mut queued = demo.store.queue("mail").ids(0, 10).expect("ids");
    queued.sort();
    assert_eq!(queued, ["5e1d0a01", "5e1d0a02"], "{}", dashboard.log());
    assert_eq!(demo.store.failed().count().expect("count"), 4);
    assert_eq!(demo.task("5e1d0a01").status, TaskStatus::Queued);

    // Back to the filtered list: the other two match; requeue all of them.
    click_to(&tab, "#result ~ p a", "/failed?");
    assert!(text(&tab, "#matching").starts_with("2 matching"));
    click_to(&tab, "#bulk-matching button[value=requeue]", "/bulk");
    assert!(
        text(&tab, "#confirm")
            .contains("Requeue 2 failed tasks matching queue=mail, error contains 'timeout'?"),
        "{}",
        text(&tab, "#confirm")
    );
    assert_eq!(demo.store.failed().count().expect("count"), 4);
    click_to(&tab, "form[action='/bulk/run'] button", "/bulk/jobs/");
    assert!(text(&tab, "#result").contains("Requeued 2 failed tasks"));
    let mut queued = demo.store.queue("mail").ids(0, 10).expect("ids");
    queued.sort();
    assert_eq!(queued, timeouts);
    assert_eq!(
        demo.store.failed().ids(0, 10).expect("ids").len(),
        2,
        "the refused mail and the reports timeout stay"
    );
    assert!(
        demo.store
            .queue("reports")
            .ids(0, 10)
            .expect("ids")
            .is_empty()
    );

    // The schedule: a supervisor with the scheduler in it (listening on a
    // queue nothing is sent to) registers the entries in Redis; pause one
    // with its button and the scheduler hears of it, run it now while
    // paused, then resume it.
    let mut scheduler = demo.start(
        &["--scheduler", "--concurrency", "1", "idle"],
        &[("RT_SETTINGS", &settings_env)],
    );
    wait_until(
        "the scheduler to register its entries",
        Duration::from_secs(60),
        || {
            demo.store
                .schedule_entries()
                .is_ok_and(|e| e == ["hourly-cleanup", "nightly-report"])
        },
    );
    open(&tab, &dashboard.url("/"));
    click_to(&tab, "header a[href='/schedule']", "/schedule");
    assert!(text(&tab, "#entry-nightly-report").contains("0 3 * * *"));
    screenshot(&tab, "dashboard-schedule", profile.path());
    let paused = |entry: &str| demo.store.schedule_control(entry).expect("control").paused;
    assert!(!paused("nightly-report"));
    click_to(
        &tab,
        "#entry-nightly-report form[action$='/pause'] button",
        "done=paused",
    );
    assert!(paused("nightly-report"), "{}", dashboard.log());
    assert!(!paused("hourly-cleanup"));
    assert!(text(&tab, "#entry-nightly-report").contains("paused"));
    wait_until(
        "the scheduler to see the pause",
        Duration::from_secs(60),
        || scheduler.log().contains("entry nightly-report is paused"),
    );
    click_to(
        &tab,
        "#entry-nightly-report form[action$='/run'] button",
        "done=run",
    );
    wait_until("the run asked for", Duration::from_secs(60), || {
        demo.store.queue("reports").count().unwrap_or(0) == 1
    });
    assert!(
        paused("nightly-report"),
        "running it now does not resume it"
    );
    click_to(
        &tab,
        "#entry-nightly-report form[action$='/resume'] button",
        "done=resumed",
    );
    assert!(!paused("nightly-report"), "{}", dashboard.log());
    assert!(text(&tab, "#entry-nightly-report").contains("active"));
    scheduler.stop();
}

#[test]
fn the_overview_and_queue_pages_chart_the_history_of_endings() {
    let (demo, _) = demo_with_a_failed_task();
    let queued = demo.store.queue("reports").ids(0, 1).expect("ids");
    demo.store.cancel_task(&queued[0]).expect("cancel");
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;

    let page = http(port, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    let totals = "1 finished, 1 failed, 0 retried, 1 canceled";
    assert!(
        element(&page.body, "history-totals").contains(totals),
        "{}",
        page.body
    );
    assert!(
        element(&page.body, "endings-title")
            .contains(&format!("Endings, last hour, per minute: {totals}")),
        "{}",
        page.body
    );
    assert!(
        element(&page.body, "times-title").contains("overall run time p50"),
        "{}",
        page.body
    );
    // Two bars' worth of rectangles at most (one minute, or two when the
    // endings straddled one), one per kind present.
    let finished_rects = page.body.matches(r#"<rect class="h-f""#).count();
    assert!((1..=2).contains(&finished_rects), "{}", page.body);
    assert!(page.body.contains(r#"<table id="history-table""#));
    assert_eq!(
        element(&page.body, "recent-finished"),
        r#"id="recent-finished">1"#
    );
    // The range links, and no outside asset.
    assert!(page.body.contains(r#"href="/?range=72h""#), "{}", page.body);
    assert!(!page.body.contains("src="), "{}", page.body);
    let three_days = http(port, "GET", "/?range=72h", &[], "");
    assert!(
        element(&three_days.body, "history-totals").contains("last 72 hours, per hour"),
        "{}",
        three_days.body
    );
    assert!(element(&three_days.body, "history-totals").contains(totals));
    assert_eq!(
        three_days.body.matches(r#"<rect class="h-x""#).count(),
        1 + 1
    );

    // Per queue: the default queue's runs, the reports queue's cancel.
    let default = http(port, "GET", "/queues/default?range=24h", &[], "");
    assert!(
        element(&default.body, "history-totals")
            .contains("1 finished, 1 failed, 0 retried, 0 canceled (last 24 hours"),
        "{}",
        default.body
    );
    assert!(default.body.contains(r#"href="/queues/default?range=1h""#));
    let reports = http(port, "GET", "/queues/reports", &[], "");
    assert!(
        element(&reports.body, "history-totals")
            .contains("0 finished, 0 failed, 0 retried, 1 canceled"),
        "{}",
        reports.body
    );
    assert!(
        element(&reports.body, "times-title").contains("no run in this span"),
        "{}",
        reports.body
    );
}

/// Runs the bulk form `form` (posted to `/bulk` first, for the
/// confirmation and its job id) and returns the confirmation's question
/// and the job's page.
fn confirm_and_run(port: u16, form: &str) -> (String, String) {
    let confirm = http(port, "POST", "/bulk", &[], form);
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let question = element(&confirm.body, "confirm").to_owned();
    let form = format!("{form}&job={}", hidden_value(&confirm.body, "job"));
    let run = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(run.status, 303, "{}", run.body);
    (question, location(&run))
}

/// The result of the bulk job at `page`, once it ended (each page seen
/// before is a progress line that reloads itself).
fn job_result(port: u16, page: &str) -> String {
    let mut result = String::new();
    wait_until("the bulk job ends", Duration::from_secs(60), || {
        let answer = http(port, "GET", page, &[], "");
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body.contains("id=\"result\"") {
            result = element(&answer.body, "result").to_owned();
            return true;
        }
        assert!(answer.body.contains("id=\"progress\""), "{}", answer.body);
        assert!(answer.body.contains("http-equiv=\"refresh\" content=\"1\""));
        false
    });
    result
}

/// A queue's page filters by task name, text and enqueue time, pages to
/// the end with a cursor, and cancels all matching after a confirmation
/// that states the count; the delayed page the same with due times.
#[test]
fn the_queue_and_delayed_pages_filter_page_to_the_end_and_cancel_all_matching() {
    let demo = Demo::new();
    let queue = demo.store.queue("reports");
    let calls: Vec<(&str, serde_json::Value)> = (0..130)
        .map(|i| ("render", json!({ "kind": "pdf", "n": format!("r{i:03}") })))
        .chain((0..20).map(|i| ("render", json!({ "kind": "csv", "n": format!("q{i:03}") }))))
        .chain((0..10).map(|i| ("mail", json!({ "kind": "pdf", "n": format!("m{i:03}") }))))
        .collect();
    queue.enqueue_many(&calls).expect("enqueue");
    let soon = Timestamp::now() + jiff::SignedDuration::from_mins(30);
    let later = Timestamp::now() + jiff::SignedDuration::from_hours(72);
    for (i, at) in (0..30)
        .map(|i| (i, soon))
        .chain((30..40).map(|i| (i, later)))
    {
        let options = redis_tasks::EnqueueOptions::new().at(at);
        queue
            .enqueue_with("render", &json!({ "n": format!("w{i:03}") }), &options)
            .expect("delayed");
    }
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;

    let first = http(port, "GET", "/queues/reports?task=render&text=pdf", &[], "");
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        element(&first.body, "matching").contains("130 matching"),
        "{}",
        element(&first.body, "matching")
    );
    assert!(first.body.contains("r000") && first.body.contains("r099"));
    assert!(
        !first.body.contains("r100")
            && !first.body.contains("q000")
            && !first.body.contains("m000")
    );
    assert!(
        first.body.contains("Cancel all 130 matching"),
        "{}",
        first.body
    );
    let next = next_link(&first.body);
    assert!(
        next.starts_with("/queues/reports?task=render&text=pdf&cursor="),
        "{next}"
    );
    let second = http(port, "GET", &next, &[], "");
    assert!(second.body.contains("r100") && second.body.contains("r129"));
    assert!(!second.body.contains("r099") && !second.body.contains("id=\"next\""));
    // Enqueued within the hour: all; over an hour ago: none.
    let recent = http(port, "GET", "/queues/reports?task=mail&since=1h", &[], "");
    assert!(element(&recent.body, "matching").contains("10 matching"));
    let old = http(port, "GET", "/queues/reports?task=mail&before=1h", &[], "");
    assert!(element(&old.body, "matching").contains("0 matching"));

    // The delayed set: due within the hour, or after a day.
    let due = http(port, "GET", "/delayed?since=1h", &[], "");
    assert!(
        element(&due.body, "matching").contains("30 matching"),
        "{}",
        due.body
    );
    assert!(due.body.contains("w000") && !due.body.contains("w030"));
    let far = http(port, "GET", "/delayed?before=1d&task=render", &[], "");
    assert!(element(&far.body, "matching").contains("10 matching"));
    assert!(far.body.contains("w039") && !far.body.contains("w029"));

    // Cancel all matching: forged posts change nothing; confirmed, exactly
    // the matching tasks are canceled.
    let csrf = csrf_of(&due.body);
    let form = format!("csrf={csrf}&scope=matching&verb=cancel&from=delayed&since=1h");
    let forged = http(port, "POST", "/bulk/run", &[], &form.replace(&csrf, "0123"));
    assert_eq!(forged.status, 403);
    let foreign = http(
        port,
        "POST",
        "/bulk",
        &["Origin: http://evil.example"],
        &form,
    );
    assert_eq!(foreign.status, 403);
    assert_eq!(demo.store.scheduled_count().expect("count"), 40);
    let (question, page) = confirm_and_run(port, &form);
    assert!(
        question.contains("Cancel 30 tasks of the delayed set matching due within 1h?"),
        "{question}"
    );
    assert!(job_result(port, &page).contains("Canceled 30 tasks"));
    assert_eq!(demo.store.scheduled_count().expect("count"), 10);

    let form =
        format!("csrf={csrf}&scope=matching&verb=cancel&from_queue=reports&task=render&text=pdf");
    let (question, page) = confirm_and_run(port, &form);
    assert!(
        question.contains("Cancel 130 tasks of queue reports matching task=render"),
        "{question}"
    );
    assert!(job_result(port, &page).contains("Canceled 130 tasks"));
    assert_eq!(
        queue.count().expect("count"),
        30,
        "the csv renders and the mails wait on"
    );
    let left = http(port, "GET", "/queues/reports?task=render&text=pdf", &[], "");
    assert!(element(&left.body, "matching").contains("0 matching"));
}

/// "All matching" over more than one batch runs as a job: while Redis is
/// paused the page shows its progress line and reloads itself; then it
/// ends with the counts, and posting the confirmed form again starts no
/// second job.
#[test]
fn a_large_bulk_job_shows_its_progress_and_runs_once() {
    let demo = Demo::new();
    let tasks: Vec<(String, &str, &str)> = (0..1200)
        .map(|i| (format!("big-{i:04}"), "mail", "timeout"))
        .chain((0..300).map(|i| (format!("other-{i:03}"), "reports", "timeout")))
        .collect();
    failed_raw(&demo, &tasks);
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;
    let csrf = csrf_of(&http(port, "GET", "/failed?queue=mail", &[], "").body);
    let form = format!("csrf={csrf}&scope=matching&verb=requeue&queue=mail");
    let confirm = http(port, "POST", "/bulk", &[], &form);
    assert!(element(&confirm.body, "confirm").contains("Requeue 1200 failed tasks"));
    let form = format!("{form}&job={}", hidden_value(&confirm.body, "job"));

    // Redis holds every client for a while: the job cannot start its
    // search, and the dashboard answers with the progress line.
    let mut c = demo.redis.client();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(4000)
        .exec(&mut c)
        .expect("pause");
    let run = http(port, "POST", "/bulk/run", &[], &form);
    let page = location(&run);
    let progress = http(port, "GET", &page, &[], "");
    assert!(
        element(&progress.body, "progress").contains("Finding the matching tasks"),
        "{}",
        progress.body
    );
    assert!(
        progress
            .body
            .contains("http-equiv=\"refresh\" content=\"1\"")
    );
    let again = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(location(&again), page, "the same job, not a second one");

    let result = job_result(port, &page);
    assert!(result.contains("Requeued 1200 failed tasks"), "{result}");
    assert_eq!(demo.store.queue("mail").count().expect("count"), 1200);
    assert_eq!(demo.store.failed().count().expect("count"), 300);
    let reloaded = http(port, "POST", "/bulk/run", &[], &form);
    assert_eq!(location(&reloaded), page);
    assert!(job_result(port, &page).contains("Requeued 1200 failed tasks"));
    assert_eq!(
        demo.store.queue("mail").count().expect("count"),
        1200,
        "requeued once"
    );
    assert!(
        dashboard.log().matches("bulk job done").count() == 1,
        "{}",
        dashboard.log()
    );
}

/// `/canceled`: the canceled registry listed newest first, filtered by task
/// name and paged with a cursor; a row's Delete takes the task away; the
/// search box finds its ids.
#[test]
fn the_canceled_page_lists_filters_pages_and_deletes() {
    let demo = Demo::new();
    let q = demo.store.queue("mail");
    let mut reports = Vec::new();
    for i in 0..130 {
        let id = q.enqueue("report", &json!([i])).expect("enqueue");
        demo.store.cancel_task(&id).expect("cancel");
        reports.push(id);
    }
    let other = q.enqueue("other", &json!([])).expect("enqueue");
    demo.store.cancel_task(&other).expect("cancel");
    let dashboard = Dashboard::start(&demo, &[], &[]);
    let port = dashboard.port;

    let all = http(port, "GET", "/canceled", &[], "");
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.body.contains("Canceled tasks"), "{}", all.body);
    assert!(all.body.contains("href=\"/canceled\""), "a header link");
    assert!(all.body.contains("131 in the registry"), "{}", all.body);
    assert!(
        all.body.contains(&format!("/tasks/{other}/delete")),
        "{}",
        all.body
    );

    let first = http(port, "GET", "/canceled?task=report", &[], "");
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        element(&first.body, "matching").contains("130 matching"),
        "{}",
        element(&first.body, "matching")
    );
    assert!(!first.body.contains(&format!("/tasks/{other}\"")));
    // Newest first: the last canceled is on the first page, the first not.
    assert!(first.body.contains(&format!("/tasks/{}\"", reports[129])));
    assert!(!first.body.contains(&format!("/tasks/{}\"", reports[0])));
    let next = next_link(&first.body);
    assert!(
        next.starts_with("/canceled?task=report&cursor="),
        "the next page keeps the filter: {next}"
    );
    let second = http(port, "GET", &next, &[], "");
    assert!(
        element(&second.body, "matching").contains("30 matching"),
        "{}",
        element(&second.body, "matching")
    );
    assert!(second.body.contains(&format!("/tasks/{}\"", reports[0])));
    assert!(!second.body.contains("id=\"next\""), "the last page");

    let prefix = &other[..12];
    let found = http(port, "GET", &format!("/search?q={prefix}"), &[], "");
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(
        found.body.contains(&format!("href=\"/tasks/{other}\"")),
        "{}",
        found.body
    );
    assert!(
        found.body.contains("href=\"/canceled\">canceled<"),
        "{}",
        found.body
    );

    let csrf = csrf_of(&all.body);
    let answer = http(
        port,
        "POST",
        &format!("/tasks/{other}/delete"),
        &[],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(location(&answer), "/canceled?done=deleted");
    assert!(demo.store.task(&other).is_err(), "the record is gone");
    assert_eq!(demo.store.canceled().count().expect("count"), 130);
}
