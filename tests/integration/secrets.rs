//! Secrets stay off command lines: a password in `--redis-url` is refused
//! (every user of the host can read `/proc/<pid>/cmdline`), and a password
//! file (`redis_password_file`) is the way to give one outside the URL.

use crate::support::{Cmd, RedisServer, admin_bin};

#[test]
fn a_password_in_redis_url_on_the_command_line_is_refused() {
    for args in [
        vec!["--redis-url", "redis://:s3cret@127.0.0.1:1", "info"],
        vec![
            "--redis-url",
            "redis://app:s3cret@127.0.0.1:1/0",
            "enqueue",
            "noop",
        ],
    ] {
        let out = Cmd::new(admin_bin()).args(&args).fails();
        assert!(
            out.stderr.contains("--redis-url must not carry a password"),
            "{}",
            out.stderr
        );
        for alternative in ["REDIS_URL", "redis_url", "redis_password_file"] {
            assert!(out.stderr.contains(alternative), "{}", out.stderr);
        }
        assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
    }
}

#[test]
fn a_password_file_reaches_a_redis_that_requires_one() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("redis-password");
    std::fs::write(&file, "s3cret\n").expect("password file");
    let mut admin = server.client();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query::<()>(&mut admin)
        .expect("require a password");

    let without = Cmd::new(admin_bin())
        .args(["info"])
        .env("REDIS_URL", server.url())
        .fails();
    assert!(
        without.stderr.to_lowercase().contains("auth"),
        "{}",
        without.stderr
    );

    let id = Cmd::new(admin_bin())
        .args(["enqueue", "noop"])
        .env("REDIS_URL", server.url())
        .env("RT_REDIS_PASSWORD_FILE", &file)
        .stdout();
    let shown = Cmd::new(admin_bin())
        .args(["task", "show", &id, "--json"])
        .env("REDIS_URL", server.url())
        .env("RT_REDIS_PASSWORD_FILE", &file)
        .stdout();
    assert!(shown.contains("\"queued\""), "{shown}");

    let missing = dir.path().join("nope");
    let out = Cmd::new(admin_bin())
        .args(["info"])
        .env("REDIS_URL", server.url())
        .env("RT_REDIS_PASSWORD_FILE", &missing)
        .fails();
    assert!(out.stderr.contains("redis_password_file"), "{}", out.stderr);
}

/// Like ssh with a private key: a password, key or token file that group
/// or others may read gets a warning naming the file, the setting and the
/// mode (the file is still used: see docs/security.md); a 0600 file none.
#[test]
fn secret_files_open_to_others_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("redis-password");
    std::fs::write(&file, "s3cret\n").expect("password file");
    let mut admin = server.client();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query::<()>(&mut admin)
        .expect("require a password");
    let info = |mode: u32| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let out = Cmd::new(admin_bin())
            .args(["info"])
            .env("REDIS_URL", server.url())
            .env("RT_REDIS_PASSWORD_FILE", &file)
            .run();
        out.stderr
    };
    let open = info(0o644);
    assert!(open.contains("redis_password_file"), "{open}");
    assert!(open.contains(&file.display().to_string()), "{open}");
    assert!(
        open.contains("0644") && open.contains("chmod 600"),
        "{open}"
    );
    assert!(!open.contains("s3cret"), "{open}");
    assert_eq!(open.matches("open to group or others").count(), 1, "{open}");
    let closed = info(0o600);
    assert!(!closed.contains("open to group or others"), "{closed}");

    // The dashboard's token file too.
    let token = dir.path().join("dashboard-token");
    // (Too short a token: the dashboard stops right after reading it.)
    std::fs::write(&token, "short\n").expect("token file");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = Cmd::new(admin_bin())
        .args(["dashboard", "--bind", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .env("REDIS_URL", server.url())
        .env("RT_REDIS_PASSWORD_FILE", &file)
        .fails();
    assert!(
        out.stderr.contains("--token-file") && out.stderr.contains("0640"),
        "{}",
        out.stderr
    );
}
