//! What the binaries write on stderr: errors with each cause once, log
//! lines without colour codes when stderr is not a terminal, and a
//! supervisor that keeps working when nobody reads its stderr any more.

use std::time::Duration;

use crate::e2e::demo_bin;
use crate::support::{Cmd, admin_bin, free_port};

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
    assert_eq!(lines[0], "error: invalid ARGS_JSON", "{}", o.stderr);
    assert!(lines[1].starts_with("  caused by: "), "{}", o.stderr);
}
