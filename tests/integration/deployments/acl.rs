//! A Redis ACL user with only the permissions docs/redis.md lists, its
//! password in a file: producers, the admin CLI, the supervisor and the
//! scheduler all work with it, and a SIGHUP makes a running supervisor
//! read a rotated password.

use nix::sys::signal::Signal;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use crate::support::{Cmd, RedisServer, admin_bin, wait_until};

use super::{AppEnv, WAIT, wait_status};

/// The ACL rules of docs/redis.md ("The ACL user"), for prefix
/// `redis_tasks`; keep the two the same.
pub const ACL_RULES: &str = "on resetkeys ~redis_tasks:* resetchannels -@all +@read +@write \
                             +evalsha +eval +script|load +ping +wait +select +time -@dangerous";

/// Creates user `name` with [`ACL_RULES`] and `password`, and stops the
/// default user from working without a password.
fn create_user(server: &RedisServer, name: &str, password: &str) {
    let mut admin = server.client();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(name);
    for rule in ACL_RULES.split_whitespace() {
        cmd.arg(rule);
    }
    cmd.arg(format!(">{password}"));
    cmd.query::<()>(&mut admin).expect("ACL SETUSER");
}

#[test]
fn every_program_works_with_the_documented_acl_user_and_a_password_file() {
    let server = RedisServer::start();
    create_user(&server, "rt_app", "s3cret-1");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret-1\n").expect("password file");
    let app = AppEnv::new(&[
        ("REDIS_URL", server.url()),
        ("RT_REDIS_USERNAME", "rt_app".to_owned()),
        ("RT_REDIS_PASSWORD_FILE", file.display().to_string()),
    ]);
    app.exercise_every_program();

    // The user name from the URL works as well (no password on the
    // command line: it comes from the file).
    let url = format!("redis://rt_app@127.0.0.1:{}", server.port());
    let out = Cmd::new(admin_bin())
        .args(["--redis-url", &url, "info"])
        .env("RT_REDIS_PASSWORD_FILE", &file)
        .stdout();
    assert!(out.contains("default"), "{out}");

    // The user can do nothing outside its prefix.
    let mut conn = redis::Client::open(format!(
        "redis://rt_app:s3cret-1@127.0.0.1:{}",
        server.port()
    ))
    .and_then(|c| c.get_connection())
    .expect("connect as rt_app");
    let denied = redis::cmd("SET")
        .arg("other:key")
        .arg("x")
        .query::<()>(&mut conn);
    assert!(denied.is_err(), "a key outside the prefix was writable");
    let denied = redis::cmd("FLUSHALL").query::<()>(&mut conn);
    assert!(denied.is_err(), "FLUSHALL was allowed");
}

#[test]
fn sighup_makes_the_supervisor_read_a_rotated_password_file() {
    let server = RedisServer::start();
    create_user(&server, "rt_app", "old-pass");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("password");
    std::fs::write(&file, "old-pass\n").expect("password file");
    let app = AppEnv::new(&[
        ("REDIS_URL", server.url()),
        ("RT_REDIS_USERNAME", "rt_app".to_owned()),
        ("RT_REDIS_PASSWORD_FILE", file.display().to_string()),
    ]);
    let store = app.store();
    let mut sup = app.start(&["worker", "-c", "1"], "", &[]);
    let first = store
        .queue("default")
        .enqueue("noop", &json!(null))
        .expect("enqueue");
    wait_status(&store, &first, TaskStatus::Finished);

    // Rotate: the file gets the new password, Redis forgets the old one
    // and drops the user's connections.
    std::fs::write(&file, "new-pass\n").expect("rotate the file");
    let mut admin = server.client();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("rt_app")
        .arg("<old-pass")
        .arg(">new-pass")
        .query::<()>(&mut admin)
        .expect("rotate in redis");
    let kill = || {
        let _: Result<i64, _> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg("rt_app")
            .query(&mut server.client());
    };
    kill();
    // Until SIGHUP the supervisor still uses the old password and fails.
    wait_until("the supervisor to fail with the old password", WAIT, || {
        kill();
        sup.log().contains("Password authentication failed")
    });
    sup.signal(Signal::SIGHUP);
    // A producer process started now reads the new file; this test
    // process, like the supervisor, reads it again only when asked.
    // (Other tests of this process left files of their own in the cache,
    // some deleted since: only ours matters here.)
    let errors = redis_tasks::store::reload_password_files();
    let ours = file.display().to_string();
    assert!(
        errors.iter().all(|e| !e.to_string().contains(&ours)),
        "{errors:?}"
    );
    let second = Cmd::new(admin_bin())
        .args(["enqueue", "noop"])
        .env("REDIS_URL", server.url())
        .env("RT_REDIS_USERNAME", "rt_app")
        .env("RT_REDIS_PASSWORD_FILE", &file)
        .stdout();
    wait_status(&store, &second, TaskStatus::Finished);
    sup.stop();
}

#[test]
fn sighup_makes_the_scheduler_process_read_a_rotated_password_file() {
    let server = RedisServer::start();
    create_user(&server, "rt_app", "old-pass");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("password");
    std::fs::write(&file, "old-pass\n").expect("password file");
    let app = AppEnv::new(&[
        ("REDIS_URL", server.url()),
        ("RT_REDIS_USERNAME", "rt_app".to_owned()),
        ("RT_REDIS_PASSWORD_FILE", file.display().to_string()),
    ]);
    let toml = "[schedule.tick]\ntask = \"noop\"\nevery = \"1s\"\nsingleton = false\n";
    let mut sched = app.start(&["scheduler"], toml, &[]);
    let enqueued = |log: &str| log.matches("scheduler: enqueued").count();
    wait_until("a first scheduled run", WAIT, || {
        enqueued(&sched.log()) >= 1
    });

    std::fs::write(&file, "new-pass\n").expect("rotate the file");
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("rt_app")
        .arg("<old-pass")
        .arg(">new-pass")
        .query::<()>(&mut server.client())
        .expect("rotate in redis");
    wait_until("the scheduler to fail with the old password", WAIT, || {
        let _: Result<i64, _> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg("rt_app")
            .query(&mut server.client());
        sched.log().contains("Password authentication failed")
    });
    let before = enqueued(&sched.log());
    sched.signal(Signal::SIGHUP);
    wait_until("a scheduled run with the new password", WAIT, || {
        enqueued(&sched.log()) > before
    });
    assert!(
        sched
            .log()
            .contains("the redis password file was read again"),
        "{}",
        sched.log()
    );
    sched.stop();
}
