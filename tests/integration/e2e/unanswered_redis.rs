//! Signals work from the first instant: a supervisor or a scheduler that is
//! still waiting for Redis stops at once on SIGTERM, SIGINT or SIGQUIT,
//! whether Redis refuses connections or accepts them and never answers.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Demo, Running, demo_bin};
use crate::support::{free_port, wait_until};

/// The store's reply timeout: a process that waited for its blocked Redis
/// call before acting on the signal would take at least this long.
const REDIS_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A "Redis" that accepts connections and never says a word.
struct Silent {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                // Keep it open, unread, until the test process ends.
                held.lock().expect("held").push(stream);
            }
        });
        Silent { port, accepted }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_for_a_client(&self) {
        wait_until(
            "the supervisor to connect to the silent Redis",
            Duration::from_secs(30),
            || self.accepted.load(Ordering::SeqCst) > 0,
        );
    }
}

/// Starts the demo binary with `args` against `url`, logging to the
/// demo's temp dir.
fn start(demo: &Demo, args: &[&str], url: &str) -> Running {
    let log = demo.path(&format!("{}.log", args.join("-")));
    let file = fs::File::create(&log).expect("log file");
    let child = Command::new(demo_bin())
        .args(args)
        .env_remove("RT_SETTINGS")
        .env("REDIS_URL", url)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("start the demo");
    Running { child, log }
}

/// Sends `signal` and checks the process exits 0 well before a blocked
/// Redis call could have returned.
fn stops_at_once(running: &mut Running, signal: Signal) {
    let sent = Instant::now();
    running.signal(signal);
    let code = running.wait_exit(Duration::from_secs(60));
    let took = sent.elapsed();
    assert_eq!(code, Some(0), "{}", running.log());
    assert!(
        took < REDIS_IO_TIMEOUT - Duration::from_secs(1),
        "{signal} took {took:?} to stop it\n{}",
        running.log()
    );
    eprintln!("{signal}: stopped in {took:?}");
}

#[test]
fn a_supervisor_waiting_for_a_silent_redis_stops_on_each_stop_signal() {
    let demo = Demo::new();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        let silent = Silent::start();
        let mut sup = start(&demo, &["worker", "--concurrency", "1"], &silent.url());
        silent.wait_for_a_client();
        stops_at_once(&mut sup, signal);
    }
}

#[test]
fn a_supervisor_retrying_a_refused_redis_stops_on_sigterm() {
    let demo = Demo::new();
    let url = format!("redis://127.0.0.1:{}", free_port().expect("a free port"));
    let mut sup = start(&demo, &["worker", "--concurrency", "1"], &url);
    wait_until("the supervisor to retry", Duration::from_secs(30), || {
        sup.log().contains("Redis unavailable")
    });
    stops_at_once(&mut sup, Signal::SIGTERM);
}

#[test]
fn a_scheduler_waiting_for_a_silent_redis_stops_on_sigterm() {
    let demo = Demo::new();
    let silent = Silent::start();
    let mut scheduler = start(&demo, &["scheduler"], &silent.url());
    silent.wait_for_a_client();
    stops_at_once(&mut scheduler, Signal::SIGTERM);
}

#[test]
fn a_supervisor_with_its_scheduler_waiting_for_a_silent_redis_stops_on_sigint() {
    let demo = Demo::new();
    let silent = Silent::start();
    let mut sup = start(
        &demo,
        &["worker", "--concurrency", "1", "--scheduler"],
        &silent.url(),
    );
    silent.wait_for_a_client();
    stops_at_once(&mut sup, Signal::SIGINT);
}
