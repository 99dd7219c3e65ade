//! `schedule next`: shows when a schedule would run, so users can check a
//! cron expression, an interval or a daily time (and the daylight-saving
//! behaviour around it) before putting it in the settings file.
//!
//! It needs neither Redis nor task code, so it works in the admin binary and
//! in users' own binaries alike.

use std::io::Write;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Subcommand};
use jiff::Timestamp;
use redis_tasks_config::schedule::{
    CronSchedule, Daily, Every, Schedule, parse_duration, parse_time_of_day, parse_time_zone,
};
use redis_tasks_store::Store;

/// `schedule ...` subcommands.
#[derive(Debug, Clone, Args)]
pub struct ScheduleCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: ScheduleAction,
}

/// The actions of `schedule`.
#[derive(Debug, Clone, Subcommand)]
pub enum ScheduleAction {
    /// Print the next run times of a schedule, one RFC 3339 UTC instant per
    /// line.
    Next(NextArgs),
    /// Pause a schedule entry: the active scheduler skips its runs (they are
    /// not caught up later) until it is resumed.
    Pause(EntryArgs),
    /// Resume a paused schedule entry from its next run.
    Resume(EntryArgs),
    /// Enqueue one run of a schedule entry now (paused or not), through the
    /// active scheduler, exactly once.
    Run(EntryArgs),
}

/// The entry named by `schedule pause|resume|run`.
#[derive(Debug, Clone, Args)]
pub struct EntryArgs {
    /// The entry's id: the `ID` of `[schedule.ID]`.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// Arguments of `schedule next`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["cron", "every", "daily"])))]
pub struct NextArgs {
    /// A five-field crontab expression, e.g. "30 2 * * mon-fri" or "@daily".
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// A fixed interval under 12 hours, e.g. 90m, 5h, 1800s, 1h30m.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// With --every: the local time of the first run of each day.
    #[arg(long, value_name = "HH:MM", requires = "every", conflicts_with_all = ["cron", "daily"])]
    pub start_at: Option<String>,
    /// With --every and no --start-at: the schedule entry id whose phase the
    /// scheduler derives (without it, runs count from local midnight).
    #[arg(
        long,
        value_name = "ID",
        requires = "every",
        conflicts_with_all = ["start_at", "cron", "daily"]
    )]
    pub id: Option<String>,
    /// Once a day at this local time.
    #[arg(long, value_name = "HH:MM")]
    pub daily: Option<String>,
    /// IANA time zone the schedule is written in [default: the `timezone`
    /// setting, else UTC].
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Show runs strictly after this instant [default: now].
    #[arg(long, value_name = "RFC3339")]
    pub after: Option<String>,
    /// How many runs to show.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
    /// Also print the local wall-clock time of each run.
    #[arg(long)]
    pub local: bool,
}

impl ScheduleCommand {
    /// Uses `timezone` (typically the settings' one) when the command line
    /// gave no `--timezone`.
    pub fn default_timezone(&mut self, timezone: &str) {
        match &mut self.action {
            ScheduleAction::Next(args) => {
                args.timezone.get_or_insert_with(|| timezone.to_owned());
            }
            ScheduleAction::Pause(_) | ScheduleAction::Resume(_) | ScheduleAction::Run(_) => {}
        }
    }

    /// Whether the action works on Redis (all but `next`).
    pub fn needs_redis(&self) -> bool {
        !matches!(self.action, ScheduleAction::Next(_))
    }
}

/// Runs `schedule pause|resume|run` against `store`; `configured` are the
/// entry ids of the settings this command read.
pub fn run_control(
    store: &Store,
    configured: &[String],
    cmd: ScheduleCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (ScheduleAction::Pause(args) | ScheduleAction::Resume(args) | ScheduleAction::Run(args)) =
        &cmd.action
    else {
        anyhow::bail!("not a control action");
    };
    let name = args.name.as_str();
    let registered = store.schedule_entries()?;
    if !registered.iter().chain(configured).any(|id| id == name) {
        let mut known: Vec<&String> = registered.iter().chain(configured).collect();
        known.sort();
        known.dedup();
        if known.is_empty() {
            anyhow::bail!(
                "unknown schedule entry {name:?}: no scheduler has registered entries under this prefix, and the settings name none"
            );
        }
        let list: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
        anyhow::bail!(
            "unknown schedule entry {name:?}; the entries are: {}",
            list.join(", ")
        );
    }
    if !registered.iter().any(|id| id == name) {
        writeln!(
            out,
            "note: the scheduler that last took the lock does not run {name}; this waits until one that does takes over"
        )?;
    }
    match &cmd.action {
        ScheduleAction::Pause(_) => {
            if store.set_schedule_paused(name, true)? {
                writeln!(
                    out,
                    "paused {name}: its runs are skipped until it is resumed"
                )?;
            } else {
                writeln!(out, "{name} was already paused")?;
            }
        }
        ScheduleAction::Resume(_) => {
            if store.set_schedule_paused(name, false)? {
                writeln!(out, "resumed {name}: it runs again from its next run")?;
            } else {
                writeln!(out, "{name} was not paused")?;
            }
        }
        ScheduleAction::Run(_) => {
            let pending = store.request_schedule_run(name)?;
            writeln!(
                out,
                "asked the active scheduler to run {name} now ({pending} request(s) pending)"
            )?;
        }
        ScheduleAction::Next(_) => {}
    }
    Ok(())
}

/// Runs a `schedule` subcommand, writing its output to `out`.
pub fn run_schedule(cmd: ScheduleCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd.action {
        ScheduleAction::Next(args) => next(&args, out),
        ScheduleAction::Pause(_) | ScheduleAction::Resume(_) | ScheduleAction::Run(_) => {
            anyhow::bail!("this schedule action needs Redis")
        }
    }
}

fn next(args: &NextArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let schedule = schedule_of(args)?;
    let tz_name = args.timezone.as_deref().unwrap_or("UTC");
    let tz = parse_time_zone(tz_name).context("--timezone")?;
    let after = match &args.after {
        Some(text) => text.trim().parse::<Timestamp>().map_err(|_| {
            anyhow::anyhow!(
                "--after: invalid instant {text:?}: expected RFC 3339 with an offset, such as \"2017-03-26T00:00:00Z\""
            )
        })?,
        None => Timestamp::now(),
    };
    let count = usize::try_from(args.count).unwrap_or(usize::MAX);
    for run in schedule.runs_after(after, &tz).take(count) {
        if args.local {
            writeln!(out, "{}  {}", run.at, run.local)?;
        } else {
            writeln!(out, "{}", run.at)?;
        }
    }
    Ok(())
}

/// The schedule the flags describe (clap guarantees exactly one kind).
fn schedule_of(args: &NextArgs) -> anyhow::Result<Schedule> {
    if let Some(expr) = &args.cron {
        return Ok(Schedule::Cron(CronSchedule::parse(expr).context("--cron")?));
    }
    if let Some(at) = &args.daily {
        let at = parse_time_of_day(at).context("--daily")?;
        return Ok(Schedule::Daily(Daily::new(at)));
    }
    let Some(interval) = &args.every else {
        anyhow::bail!("give one of --cron, --every or --daily");
    };
    let interval = parse_duration(interval).context("--every")?;
    let start_at = match (&args.start_at, &args.id) {
        (Some(at), _) => Some(parse_time_of_day(at).context("--start-at")?),
        (None, Some(_)) => None,
        (None, None) => Some(jiff::civil::Time::midnight()),
    };
    let id = args.id.as_deref().unwrap_or("");
    Ok(Schedule::Every(
        Every::new(interval, start_at, id).context("--every")?,
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A stand-in for the real command line, holding only `schedule`.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        top: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        Schedule(ScheduleCommand),
    }

    fn parse(args: &[&str]) -> Result<ScheduleCommand, clap::Error> {
        let argv = ["redis-tasks", "schedule", "next"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.top {
            Top::Schedule(cmd) => cmd,
        })
    }

    fn run(args: &[&str]) -> anyhow::Result<String> {
        let cmd = parse(args).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut out = Vec::new();
        run_schedule(cmd, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn spec_examples_through_the_command() {
        let out = run(&[
            "--every",
            "30s",
            "--timezone",
            "Europe/Berlin",
            "--after",
            "2017-03-26T00:51:30Z",
            "--count",
            "2",
            "--local",
        ])
        .expect("runs");
        assert_eq!(
            out,
            "2017-03-26T00:51:40Z  2017-03-26T02:17:30\n2017-03-26T00:52:00Z  2017-03-26T02:18:00\n"
        );
        let out = run(&[
            "--daily",
            "02:30",
            "--timezone",
            "Europe/Berlin",
            "--after",
            "2017-10-28T12:00:00Z",
            "--count",
            "3",
        ])
        .expect("runs");
        assert_eq!(
            out,
            "2017-10-29T01:00:00Z\n2017-10-30T01:30:00Z\n2017-10-31T01:30:00Z\n"
        );
    }

    #[test]
    fn cron_defaults_to_five_runs_in_utc() {
        let out = run(&["--cron", "0 */6 * * *", "--after", "2024-01-01T00:00:00Z"]).expect("runs");
        assert_eq!(
            out,
            "2024-01-01T06:00:00Z\n2024-01-01T12:00:00Z\n2024-01-01T18:00:00Z\n\
             2024-01-02T00:00:00Z\n2024-01-02T06:00:00Z\n"
        );
    }

    #[test]
    fn every_with_start_at_and_with_an_entry_id() {
        let out = run(&[
            "--every",
            "5h",
            "--start-at",
            "08:00",
            "--after",
            "2024-01-01T00:00:00Z",
            "--count",
            "5",
        ])
        .expect("runs");
        assert_eq!(
            out,
            "2024-01-01T08:00:00Z\n2024-01-01T13:00:00Z\n2024-01-01T18:00:00Z\n\
             2024-01-01T23:00:00Z\n2024-01-02T08:00:00Z\n"
        );
        // FNV-1a("nightly") mod 3600 s = 2858 s = 47m38s past each hour.
        let out = run(&[
            "--every",
            "1h",
            "--id",
            "nightly",
            "--after",
            "2024-01-01T00:00:00Z",
            "--count",
            "1",
        ])
        .expect("runs");
        assert_eq!(out, "2024-01-01T00:47:38Z\n");
    }

    #[test]
    fn default_timezone_fills_only_a_missing_flag() {
        let mut cmd = parse(&["--daily", "03:00"]).expect("parses");
        cmd.default_timezone("Asia/Tokyo");
        let ScheduleAction::Next(args) = &cmd.action else {
            panic!("next")
        };
        assert_eq!(args.timezone.as_deref(), Some("Asia/Tokyo"));
        let mut cmd = parse(&["--daily", "03:00", "--timezone", "UTC"]).expect("parses");
        cmd.default_timezone("Asia/Tokyo");
        let ScheduleAction::Next(args) = &cmd.action else {
            panic!("next")
        };
        assert_eq!(args.timezone.as_deref(), Some("UTC"));
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        for (args, expected) in [
            (
                &["--cron", "61 * * * *"][..],
                "--cron: invalid cron expression \"61 * * * *\"",
            ),
            (
                &["--every", "12h"][..],
                "--every: `every` interval 12h is too long",
            ),
            (
                &["--every", "soon"][..],
                "--every: invalid duration \"soon\"",
            ),
            (
                &["--daily", "7am"][..],
                "--daily: invalid time of day \"7am\"",
            ),
            (
                &["--daily", "07:00", "--timezone", "Mars/Base"][..],
                "--timezone: unknown time zone \"Mars/Base\"",
            ),
            (
                &["--daily", "07:00", "--after", "yesterday"][..],
                "--after: invalid instant \"yesterday\"",
            ),
        ] {
            let err = run(args).expect_err("bad input");
            let text = format!("{err:#}");
            assert!(text.starts_with(expected), "{args:?}: {text}");
            assert!(!text.contains('\n'), "{args:?}: {text}");
        }
    }

    #[test]
    fn flags_that_do_not_fit_together_are_refused_by_the_parser() {
        for args in [
            &[][..],
            &["--cron", "@daily", "--daily", "03:00"][..],
            &["--daily", "03:00", "--start-at", "08:00"][..],
            &["--cron", "@daily", "--id", "x"][..],
            &["--every", "1h", "--start-at", "08:00", "--id", "x"][..],
            &["--daily", "03:00", "--count", "0"][..],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }
}
