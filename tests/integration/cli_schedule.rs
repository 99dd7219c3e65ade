//! `redis-tasks schedule next` as a user runs it: no Redis needed, the time
//! zone from the flag, the settings file or the environment, and one-line
//! errors with a non-zero exit.

use std::path::PathBuf;

use crate::support::{Cmd, admin_bin};

/// The admin binary pointed at a port where nothing listens, to show that
/// previews never touch Redis.
fn schedule_next() -> Cmd {
    let mut cmd = Cmd::new(admin_bin());
    cmd.args(["--redis-url", "redis://127.0.0.1:1", "schedule", "next"])
        // An empty variable counts as unset: the developer's own time zone
        // setting must not leak in.
        .env("RT_TIMEZONE", "");
    cmd
}

/// A settings file in its own temporary directory (kept alive by the guard).
fn settings_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, text).expect("write settings file");
    (dir, path)
}

#[test]
fn spec_examples_in_europe_berlin() {
    let out = schedule_next()
        .args(["--every", "30s", "--timezone", "Europe/Berlin"])
        .args(["--after", "2017-03-26T00:51:30Z", "--count", "1", "--local"])
        .stdout();
    assert_eq!(out, "2017-03-26T00:51:40Z  2017-03-26T02:17:30");
    let out = schedule_next()
        .args(["--daily", "02:30", "--timezone", "Europe/Berlin"])
        .args(["--after", "2017-10-28T12:00:00Z", "--count", "2"])
        .stdout();
    assert_eq!(out, "2017-10-29T01:00:00Z\n2017-10-30T01:30:00Z");
}

#[test]
fn cron_prints_five_utc_instants_by_default() {
    let out = schedule_next()
        .args(["--cron", "*/30 * * * *", "--timezone", "Europe/Berlin"])
        .args(["--after", "2017-03-26T00:50:00Z"])
        .stdout();
    assert_eq!(
        out,
        "2017-03-26T01:00:00Z\n2017-03-26T01:20:00Z\n2017-03-26T01:40:00Z\n\
         2017-03-26T02:00:00Z\n2017-03-26T02:30:00Z"
    );
}

#[test]
fn without_after_the_runs_are_in_the_future() {
    let before = jiff::Timestamp::now();
    let out = schedule_next()
        .args(["--every", "1m", "--count", "3"])
        .stdout();
    let runs: Vec<jiff::Timestamp> = out
        .lines()
        .map(|line| line.parse().expect("an RFC 3339 instant per line"))
        .collect();
    assert_eq!(runs.len(), 3, "{out}");
    assert!(runs[0] > before, "{out}");
    assert!(runs.windows(2).all(|w| w[0] < w[1]), "{out}");
}

#[test]
fn time_zone_comes_from_the_settings_file_or_environment_unless_given() {
    let (_dir, path) = settings_file("timezone = \"Europe/Berlin\"\n");
    let args = [
        "--daily",
        "02:30",
        "--after",
        "2017-10-28T12:00:00Z",
        "--count",
        "1",
    ];
    let out = schedule_next()
        .arg("--config")
        .arg(&path)
        .args(args)
        .stdout();
    assert_eq!(out, "2017-10-29T01:00:00Z");
    let out = schedule_next()
        .env("RT_TIMEZONE", "Asia/Tokyo")
        .args(args)
        .stdout();
    assert_eq!(out, "2017-10-28T17:30:00Z");
    let out = schedule_next()
        .arg("--config")
        .arg(&path)
        .args(["--timezone", "UTC"])
        .args(args)
        .stdout();
    assert_eq!(out, "2017-10-29T02:30:00Z");
}

#[test]
fn bad_schedules_name_the_flag_then_the_problem() {
    for (args, expected) in [
        (
            &["--cron", "61 * * * *"][..],
            "error: --cron\n  caused by: invalid cron expression \"61 * * * *\"",
        ),
        (
            &["--cron", "0 0 30 2 *"][..],
            "error: --cron\n  caused by: cron expression \"0 0 30 2 *\" never matches",
        ),
        (
            &["--every", "13h"][..],
            "error: --every\n  caused by: `every` interval 13h is too long",
        ),
        (
            &["--daily", "25:00"][..],
            "error: --daily\n  caused by: invalid time of day \"25:00\"",
        ),
        (
            &["--daily", "03:00", "--timezone", "Europe/Atlantis"][..],
            "error: --timezone\n  caused by: unknown time zone \"Europe/Atlantis\"",
        ),
        (
            &["--daily", "03:00", "--after", "soon"][..],
            "error: --after: invalid instant \"soon\"",
        ),
    ] {
        let out = schedule_next().args(args).fails();
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        // The flag at fault, then what is wrong with its value.
        let report = out.stderr.trim_end();
        assert_eq!(
            report.lines().count(),
            expected.lines().count(),
            "{args:?}: {report}"
        );
        assert!(report.starts_with(expected), "{args:?}: {report}");
    }
}

#[test]
fn flags_that_do_not_fit_together_are_refused() {
    for args in [
        &[][..],
        &["--cron", "@daily", "--daily", "03:00"][..],
        &["--daily", "03:00", "--start-at", "08:00"][..],
        &["--daily", "03:00", "--count", "0"][..],
    ] {
        let out = schedule_next().args(args).fails();
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}
