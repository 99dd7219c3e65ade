//! Settings read from real files in a temporary directory, with environments
//! given as maps.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use jiff::civil::time;
use serde_json::json;

use super::*;
use crate::schedule::{Daily, Every, Schedule};

/// A settings file in its own temporary directory.
struct SettingsFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn settings_file(text: &str) -> SettingsFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("redis-tasks.toml");
    let mut file = std::fs::File::create(&path).expect("create settings file");
    file.write_all(text.as_bytes())
        .expect("write settings file");
    SettingsFile { _dir: dir, path }
}

fn with_env(config: Option<&Path>, vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::load_with_env(config, &|name| vars.get(name).cloned())
}

fn error_text(text: &str) -> (PathBuf, String) {
    let file = settings_file(text);
    let err = with_env(Some(&file.path), &[]).expect_err("settings should be rejected");
    (file.path.clone(), err.to_string())
}

const EXAMPLE: &str = r#"
redis_url = "redis://redis.internal:6380/2"
redis_prefix = "shop_tasks"
timezone = "Europe/Berlin"
default_task_timeout = "30m"
expiring_registries_ttl = 86400
dead_worker_ttl = "2h"
worker_heartbeat_freq = 5
worker_heartbeat_timeout = 30
maintenance_freq = 120
middleware = ["timing", "sentry"]
scheduler_queue = "periodic"
scheduler_max_catchup = 0
max_args_bytes = 65536
max_aborted_runs = 5

[schedule.nightly-report]
task = "send_report"
cron = "30 2 * * mon-fri"
args = { to = "ops@example.com", days = [1, 7], ratio = 0.5, since = 2024-01-01 }

[schedule.cleanup]
task = "cleanup"
every = "1h30m"
start_at = "00:15"
queue = "maintenance"
singleton = false

[schedule.digest]
task = "digest"
daily = "07:00"
"#;

#[test]
fn defaults_are_the_original_ones() {
    let settings = with_env(None, &[]).expect("defaults load");
    assert_eq!(settings, Settings::default());
    assert_eq!(settings.redis_url, "redis://127.0.0.1:6379");
    assert_eq!(settings.redis_prefix, "redis_tasks");
    assert_eq!(settings.timezone, "UTC");
    assert_eq!(settings.default_task_timeout, 86_400);
    assert_eq!(settings.expiring_registries_ttl, 604_800);
    assert_eq!(settings.dead_worker_ttl, 3_600);
    assert_eq!(settings.worker_heartbeat_freq, 10);
    assert_eq!(settings.worker_heartbeat_timeout, 60);
    assert_eq!(settings.maintenance_freq, 60);
    assert!(settings.middleware.is_empty());
    assert!(settings.schedule.is_empty());
    assert_eq!(settings.scheduler_queue, "default");
    assert_eq!(settings.scheduler_max_catchup, 3_600);
    assert_eq!(settings.max_args_bytes, 1_048_576);
    assert_eq!(settings.max_aborted_runs, 3);
    assert_eq!(settings.source, None);
    assert_eq!(settings.timezone(), TimeZone::UTC);
    assert_eq!(settings.heartbeat_timeout(), Duration::from_secs(60));
}

#[test]
fn reads_every_setting_from_a_file() {
    let file = settings_file(EXAMPLE);
    let s = with_env(Some(&file.path), &[]).expect("example loads");
    assert_eq!(s.redis_url, "redis://redis.internal:6380/2");
    assert_eq!(s.redis_prefix, "shop_tasks");
    assert_eq!(s.timezone, "Europe/Berlin");
    assert_eq!(s.timezone().iana_name(), Some("Europe/Berlin"));
    assert_eq!(s.default_task_timeout, 1_800);
    assert_eq!(s.expiring_registries_ttl, 86_400);
    assert_eq!(s.dead_worker_ttl, 7_200);
    assert_eq!(s.worker_heartbeat_freq, 5);
    assert_eq!(s.worker_heartbeat_timeout, 30);
    assert_eq!(s.maintenance_freq, 120);
    assert_eq!(s.middleware, ["timing", "sentry"]);
    assert_eq!(s.scheduler_queue, "periodic");
    assert_eq!(s.scheduler_max_catchup, 0);
    assert_eq!(s.max_args_bytes, 65_536);
    assert_eq!(s.max_aborted_runs, 5);
    assert_eq!(s.source.as_deref(), Some(file.path.as_path()));

    let report = &s.schedule["nightly-report"];
    assert_eq!(report.task, "send_report");
    assert_eq!(report.schedule.to_string(), "cron \"30 2 * * mon-fri\"");
    assert_eq!(
        report.args,
        json!({"to": "ops@example.com", "days": [1, 7], "ratio": 0.5, "since": "2024-01-01"})
    );
    assert_eq!(
        report.queue, "periodic",
        "entries default to scheduler_queue"
    );
    assert!(report.singleton, "singleton defaults to true");

    let cleanup = &s.schedule["cleanup"];
    assert_eq!(
        cleanup.schedule,
        Schedule::Every(Every::new(5_400, Some(time(0, 15, 0, 0)), "cleanup").expect("valid"))
    );
    assert_eq!(cleanup.queue, "maintenance");
    assert!(!cleanup.singleton);
    assert_eq!(cleanup.args, serde_json::Value::Null);

    assert_eq!(
        s.schedule["digest"].schedule,
        Schedule::Daily(Daily::new(time(7, 0, 0, 0)))
    );
}

#[test]
fn from_toml_str_reads_text_without_the_environment() {
    let s = Settings::from_toml_str("redis_prefix = \"x\"\n", None).expect("loads");
    assert_eq!(s.redis_prefix, "x");
    assert_eq!(s.source, None);
    let err = Settings::from_toml_str("colour = 1", Some(Path::new("/etc/rt.toml")))
        .expect_err("unknown key");
    assert_eq!(
        err.to_string(),
        "settings file /etc/rt.toml: unknown key \"colour\""
    );
    let err = Settings::from_toml_str("colour = 1", None).expect_err("unknown key");
    assert_eq!(err.to_string(), "settings: unknown key \"colour\"");
}

#[test]
fn environment_overrides_file_which_overrides_defaults() {
    let file = settings_file(
        "redis_prefix = \"from_file\"\ndefault_task_timeout = 100\nscheduler_queue = \"file_q\"\n[schedule.a]\ntask = \"t\"\ndaily = \"01:00\"\n",
    );
    let s = with_env(
        Some(&file.path),
        &[
            ("REDIS_URL", "redis://10.0.0.1:6379"),
            ("RT_REDIS_PREFIX", "from_env"),
            ("RT_DEFAULT_TASK_TIMEOUT", "30"),
            ("RT_WORKER_HEARTBEAT_FREQ", "2"),
            ("RT_TIMEZONE", "America/New_York"),
            ("RT_SCHEDULER_QUEUE", "env_q"),
            ("RT_MAX_ABORTED_RUNS", "0"),
            ("RT_MIDDLEWARE", "a, b"),
            ("RT_DEAD_WORKER_TTL", ""),
        ],
    )
    .expect("loads");
    assert_eq!(s.redis_url, "redis://10.0.0.1:6379");
    assert_eq!(s.redis_prefix, "from_env");
    assert_eq!(s.default_task_timeout, 30);
    assert_eq!(s.worker_heartbeat_freq, 2);
    assert_eq!(s.timezone, "America/New_York");
    assert_eq!(s.max_aborted_runs, 0);
    assert_eq!(s.middleware, ["a", "b"]);
    assert_eq!(
        s.dead_worker_ttl, 3_600,
        "an empty variable counts as unset"
    );
    assert_eq!(s.scheduler_queue, "env_q");
    assert_eq!(
        s.schedule["a"].queue, "env_q",
        "entry queue follows the final scheduler_queue"
    );

    let s = with_env(
        None,
        &[
            ("REDIS_URL", "redis://a:1"),
            ("RT_REDIS_URL", "redis://b:2"),
        ],
    )
    .expect("loads");
    assert_eq!(
        s.redis_url, "redis://b:2",
        "RT_REDIS_URL wins over REDIS_URL"
    );
}

#[test]
fn settings_path_comes_from_the_argument_else_rt_settings() {
    let by_env = settings_file("redis_prefix = \"by_env\"");
    let by_arg = settings_file("redis_prefix = \"by_arg\"");
    let env_path = by_env.path.to_str().expect("utf-8 temp path");
    let s = with_env(None, &[("RT_SETTINGS", env_path)]).expect("loads");
    assert_eq!(s.redis_prefix, "by_env");
    assert_eq!(s.source.as_deref(), Some(by_env.path.as_path()));
    let s = with_env(Some(&by_arg.path), &[("RT_SETTINGS", env_path)]).expect("loads");
    assert_eq!(s.redis_prefix, "by_arg");
}

#[test]
fn a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nope.toml");
    let err = with_env(Some(&path), &[]).expect_err("missing file");
    // The reason is in the message, not also a source, so a report that
    // walks the chain says it once.
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot read settings file {}: ", path.display())),
        "{text}"
    );
    assert!(text.contains("No such file"), "{text}");
    assert!(std::error::Error::source(&err).is_none());
    assert!(matches!(err, SettingsError::Read { .. }));
}

#[test]
fn bad_values_name_the_file_and_key() {
    let (path, text) = error_text("worker_heartbeat_freq = \"ten\"\n");
    assert_eq!(
        text,
        format!(
            "settings file {}: key \"worker_heartbeat_freq\": expected a positive whole number of seconds or a duration such as \"90m\", got \"ten\"",
            path.display()
        )
    );
    for (toml, key) in [
        ("worker_heartbeat_freq = 0", "worker_heartbeat_freq"),
        ("default_task_timeout = -1", "default_task_timeout"),
        ("maintenance_freq = 1.5", "maintenance_freq"),
        ("redis_prefix = \"\"", "redis_prefix"),
        ("redis_prefix = 3", "redis_prefix"),
        ("redis_url = \"http://example.com\"", "redis_url"),
        ("scheduler_queue = \"two words\"", "scheduler_queue"),
        ("max_args_bytes = 0", "max_args_bytes"),
        ("max_aborted_runs = 5000000000", "max_aborted_runs"),
        ("middleware = \"timing\"", "middleware"),
        ("middleware = [\"a\", \"a\"]", "middleware"),
        ("schedule = 5", "schedule"),
    ] {
        let (path, text) = error_text(toml);
        let expected = format!("settings file {}: key \"{key}\": ", path.display());
        assert!(text.starts_with(&expected), "{toml}: {text}");
    }
}

#[test]
fn heartbeat_timeout_must_exceed_the_frequency() {
    let (path, text) = error_text("worker_heartbeat_timeout = 10");
    assert_eq!(
        text,
        format!(
            "settings file {}: key \"worker_heartbeat_timeout\": worker_heartbeat_timeout (10 s) must be greater than worker_heartbeat_freq (10 s)",
            path.display()
        )
    );
    let err =
        with_env(None, &[("RT_WORKER_HEARTBEAT_FREQ", "90")]).expect_err("freq above timeout");
    assert_eq!(
        err.to_string(),
        "environment variable RT_WORKER_HEARTBEAT_FREQ: worker_heartbeat_timeout (60 s) must be greater than worker_heartbeat_freq (90 s)"
    );
}

#[test]
fn bad_environment_values_name_the_variable() {
    let err = with_env(None, &[("RT_DEFAULT_TASK_TIMEOUT", "soon")]).expect_err("bad value");
    assert_eq!(
        err.to_string(),
        "environment variable RT_DEFAULT_TASK_TIMEOUT: expected a positive whole number of seconds or a duration such as \"90m\", got \"soon\""
    );
    let err = with_env(None, &[("RT_TIMEZONE", "Europe/Atlantis")]).expect_err("bad zone");
    assert_eq!(
        err.to_string(),
        "environment variable RT_TIMEZONE: unknown time zone \"Europe/Atlantis\": expected an IANA name such as \"Europe/Berlin\" or \"UTC\""
    );
    let err = with_env(None, &[("REDIS_URL", "nonsense://x:y:z@")]).expect_err("bad url");
    assert!(
        err.to_string()
            .starts_with("environment variable REDIS_URL: expected a redis URL"),
        "{err}"
    );
    let err = with_env(None, &[("RT_MIDDLEWARE", "a,,b")]).expect_err("empty name");
    assert!(
        err.to_string()
            .starts_with("environment variable RT_MIDDLEWARE: "),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_rejected_at_every_level_with_a_hint() {
    let (path, text) = error_text("worker_heartbeat_frq = 5");
    assert_eq!(
        text,
        format!(
            "settings file {}: unknown key \"worker_heartbeat_frq\"; did you mean \"worker_heartbeat_freq\"?",
            path.display()
        )
    );
    let (_, text) = error_text("[schedule.nightly]\ntask = \"t\"\ncronn = \"0 3 * * *\"\n");
    assert!(
        text.ends_with("unknown key \"schedule.nightly.cronn\"; did you mean \"cron\"?"),
        "{text}"
    );
    let (_, text) = error_text("[queues.default]\nmemory = 1\n");
    assert!(
        text.ends_with("unknown key \"queues.default.memory\""),
        "{text}"
    );
}

#[test]
fn syntax_errors_give_line_and_column_on_one_line() {
    let (path, text) = error_text("redis_prefix = \"ok\"\nmaintenance_freq = = 3\n");
    let expected = format!(
        "settings file {}: invalid TOML at line 2, column ",
        path.display()
    );
    assert!(text.starts_with(&expected), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn schedule_entries_are_checked_and_name_their_id() {
    let cases = [
        (
            "cron = \"61 * * * *\"",
            "key \"schedule.e.cron\": invalid cron expression \"61 * * * *\"",
        ),
        (
            "cron = \"0 0 30 2 *\"",
            "key \"schedule.e.cron\": cron expression \"0 0 30 2 *\" never matches",
        ),
        (
            "cron = 5",
            "key \"schedule.e.cron\": expected a cron expression",
        ),
        (
            "every = \"12h\"",
            "key \"schedule.e.every\": `every` interval 12h is too long",
        ),
        (
            "every = \"0s\"",
            "key \"schedule.e.every\": an `every` interval must be at least one second",
        ),
        (
            "every = \"soon\"",
            "key \"schedule.e.every\": invalid duration \"soon\"",
        ),
        (
            "every = -5",
            "key \"schedule.e.every\": expected an interval",
        ),
        (
            "every = \"1h\"\nstart_at = \"25:00\"",
            "key \"schedule.e.start_at\": invalid time of day \"25:00\"",
        ),
        (
            "daily = \"7am\"",
            "key \"schedule.e.daily\": invalid time of day \"7am\"",
        ),
        (
            "daily = \"07:00\"\nstart_at = \"08:00\"",
            "key \"schedule.e.start_at\": \"start_at\" only goes with \"every\"",
        ),
        (
            "daily = \"07:00\"\ncron = \"0 7 * * *\"",
            "key \"schedule.e\": has cron and daily; give exactly one schedule",
        ),
        ("queue = \"q\"", "key \"schedule.e\": needs a schedule"),
        (
            "daily = \"07:00\"\nsingleton = \"yes\"",
            "key \"schedule.e.singleton\": expected true or false, got \"yes\"",
        ),
        (
            "daily = \"07:00\"\nqueue = \"\"",
            "key \"schedule.e.queue\": expected a non-empty string",
        ),
        (
            "daily = \"07:00\"\nargs = nan",
            "key \"schedule.e.args\": NaN has no JSON form",
        ),
    ];
    for (body, expected) in cases {
        let (path, text) = error_text(&format!("[schedule.e]\ntask = \"t\"\n{body}\n"));
        let expected = format!("settings file {}: {expected}", path.display());
        assert!(
            text.starts_with(&expected),
            "{body}:\n  got      {text}\n  expected {expected}"
        );
    }
    let (_, text) = error_text("[schedule.e]\ndaily = \"07:00\"\n");
    assert!(
        text.ends_with(
            "key \"schedule.e\": missing key \"task\" (the name of the task function to enqueue)"
        ),
        "{text}"
    );
}

#[test]
fn validate_tasks_rejects_unknown_task_names() {
    let file = settings_file(EXAMPLE);
    let s = with_env(Some(&file.path), &[]).expect("example loads");
    let all: Vec<String> = ["cleanup", "digest", "send_report"]
        .map(String::from)
        .to_vec();
    assert!(s.validate_tasks(&all).is_ok());
    let err = s
        .validate_tasks(&["digest".to_owned(), "cleanup".to_owned()])
        .expect_err("send_report is unknown");
    assert_eq!(
        err.to_string(),
        format!(
            "settings file {}: key \"schedule.nightly-report.task\": unknown task \"send_report\" (registered tasks: cleanup, digest)",
            file.path.display()
        )
    );
    assert!(Settings::default().validate_tasks(&[]).is_ok());
}

#[test]
fn debug_output_hides_the_redis_password() {
    let s = Settings {
        redis_url: "redis://app:s3cret@redis.internal:6379/0".to_owned(),
        ..Settings::default()
    };
    let shown = format!("{s:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("redis://app:***@redis.internal:6379/0"),
        "{shown}"
    );
    assert_eq!(
        redact_password("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
    assert_eq!(redact_password("redis://:pw@h:1"), "redis://:***@h:1");
}

/// The first TOML block of a documentation page.
fn first_toml_block(page: &str) -> &str {
    let start = page
        .find("```toml\n")
        .map(|i| i + "```toml\n".len())
        .expect("a toml block");
    let len = page[start..].find("```").expect("the end of the block");
    &page[start..start + len]
}

#[test]
fn the_documented_examples_load() {
    for page in [
        include_str!("../../../docs/settings.md"),
        include_str!("../../../docs/scheduler.md"),
    ] {
        let text = first_toml_block(page);
        let s = Settings::from_toml_str(text, None).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!s.schedule.is_empty());
    }
}

#[test]
fn supervisor_keys_come_from_file_and_environment() {
    let file = settings_file(
        "worker_concurrency = 3\nworker_queues = [\"high\", \"low\"]\ndrain_timeout = \"1m\"\n",
    );
    let s = with_env(Some(&file.path), &[]).expect("valid");
    assert_eq!(s.worker_concurrency, Some(3));
    assert_eq!(s.worker_queues, ["high", "low"]);
    assert_eq!(s.drain_timeout, Some(60));
    let s = with_env(
        Some(&file.path),
        &[
            ("RT_WORKER_QUEUES", "a,b,c"),
            ("RT_WORKER_CONCURRENCY", "8"),
        ],
    )
    .expect("valid");
    assert_eq!(s.worker_queues, ["a", "b", "c"]);
    assert_eq!(s.worker_concurrency, Some(8));
    let err = with_env(Some(&file.path), &[("RT_WORKER_CONCURRENCY", "0")]).expect_err("zero");
    assert!(err.to_string().contains("RT_WORKER_CONCURRENCY"), "{err}");
    let (_, text) = error_text("worker_queues = [\"a\", \"a\"]\n");
    assert!(
        text.ends_with("key \"worker_queues\": queue \"a\" is listed twice"),
        "{text}"
    );
}

#[test]
fn passwords_in_urls_are_recognised() {
    use crate::settings::url_has_password;
    for url in [
        "redis://:s3cret@127.0.0.1:6379",
        "redis://app:s3cret@redis.internal/0",
        "rediss://app:p%40ss@host:6380",
    ] {
        assert!(url_has_password(url), "{url}");
    }
    for url in [
        "redis://127.0.0.1:6379",
        "redis://app@host:6379",
        "redis://app:@host",
        "unix:///run/redis.sock",
        "redis://host/0?x=a:b@c",
    ] {
        assert!(!url_has_password(url), "{url}");
    }
}

#[test]
fn a_password_file_is_a_setting() {
    let s = Settings::from_toml_str("redis_password_file = \"/run/secrets/redis\"\n", None)
        .expect("settings");
    assert_eq!(
        s.redis_password_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/redis"))
    );
    let err = Settings::from_toml_str("redis_password_file = \"\"\n", None).expect_err("empty");
    assert!(err.to_string().contains("redis_password_file"), "{err}");
}

#[test]
fn task_arguments_stay_out_of_the_log_unless_asked_for() {
    assert!(!with_env(None, &[]).expect("valid").log_task_args);
    let file = settings_file("log_task_args = true\n");
    assert!(
        with_env(Some(&file.path), &[])
            .expect("valid")
            .log_task_args
    );
}

#[test]
fn metrics_addr_is_an_address_and_port() {
    let file = settings_file("metrics_addr = \"127.0.0.1:9464\"\n");
    let s = with_env(Some(&file.path), &[]).expect("valid");
    assert_eq!(
        s.metrics_addr,
        Some("127.0.0.1:9464".parse().expect("addr"))
    );
    let s = with_env(Some(&file.path), &[("RT_METRICS_ADDR", "[::1]:9000")]).expect("valid");
    assert_eq!(s.metrics_addr, Some("[::1]:9000".parse().expect("addr")));
    let err = with_env(None, &[("RT_METRICS_ADDR", "localhost")]).expect_err("no port");
    assert!(err.to_string().contains("RT_METRICS_ADDR"), "{err}");
    assert_eq!(with_env(None, &[]).expect("valid").metrics_addr, None);
}

#[test]
fn cluster_urls_are_accepted() {
    for url in [
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/",
        "rediss+cluster://user:pw@h1:7000,h2:7000/",
    ] {
        let s = with_env(None, &[("REDIS_URL", url)]).expect("a cluster URL loads");
        assert_eq!(s.redis_url, url);
    }
}

#[test]
fn every_unknown_key_of_a_file_is_named_in_the_files_order() {
    let (path, text) =
        error_text("zeta_thing = 1\nredis_prefix = \"x\"\nworker_concurency = 2\nalpha = 3\n");
    assert_eq!(
        text,
        format!(
            "settings file {}: unknown key \"zeta_thing\"; also unknown: \"worker_concurency\", \"alpha\"",
            path.display()
        )
    );
    let (_, text) = error_text("worker_concurency = 2\n");
    assert!(
        text.ends_with("unknown key \"worker_concurency\"; did you mean \"worker_concurrency\"?"),
        "{text}"
    );
}

#[test]
fn an_rt_variable_that_names_no_setting_is_refused() {
    let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let err = Settings::check_env_names(names(&["PATH", "RT_WORKER_CONCURENCY", "HOME"]))
        .expect_err("typo refused");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "unknown environment variable RT_WORKER_CONCURENCY; did you mean \"RT_WORKER_CONCURRENCY\"?"
        ),
        "{text}"
    );
    let err = Settings::check_env_names(names(&["RT_ZZZ", "RT_AAA"])).expect_err("two refused");
    let text = err.to_string();
    assert!(
        text.starts_with("unknown environment variable RT_AAA; also unknown: \"RT_ZZZ\""),
        "{text}"
    );
    Settings::check_env_names(names(&[
        "RT_SETTINGS",
        "RT_REDIS_URL",
        "RT_WORKER_CONCURRENCY",
        "RT_MIDDLEWARE",
        "RT_WORKER_QUEUES",
        "RT_LOG_FORMAT",
        "RT_DASHBOARD_TOKEN",
        "REDIS_URL",
        "RTX",
    ]))
    .expect("every known name passes");
}

#[test]
fn task_output_is_kept_and_logged_by_default_and_bounded() {
    let s = with_env(None, &[]).expect("valid");
    assert_eq!(s.task_log_kib, 64);
    assert!(s.task_output_to_log);
    let file = settings_file("task_log_kib = 0\ntask_output_to_log = false\n");
    let s = with_env(Some(&file.path), &[]).expect("valid");
    assert_eq!(s.task_log_kib, 0, "0 turns the capture off");
    assert!(!s.task_output_to_log);
    let s = with_env(
        None,
        &[("RT_TASK_LOG_KIB", "128"), ("RT_TASK_OUTPUT_TO_LOG", "0")],
    )
    .expect("valid");
    assert_eq!(s.task_log_kib, 128);
    assert!(!s.task_output_to_log);
    let err = with_env(None, &[("RT_TASK_LOG_KIB", "16385")]).expect_err("over the maximum");
    assert!(err.to_string().contains("RT_TASK_LOG_KIB"), "{err}");
    let err = Settings::from_toml_str("task_log_kib = -1\n", None).expect_err("negative");
    assert!(err.to_string().contains("task_log_kib"), "{err}");
}
