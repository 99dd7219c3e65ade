//! Log output of the command line and the supervisor on stderr, level from
//! `RUST_LOG` (default `info`), in one of two formats ([`LogFormat`]):
//! human-readable lines (journald adds its own time stamps), or one JSON
//! object per line for log collectors.
//!
//! Two rules keep logging harmless:
//!
//! - Logging never stops the process. Writes go through [`Stderr`], which
//!   drops a line it cannot write: with stderr a pipe whose reader went away,
//!   `std::io::stderr` returns `EPIPE` (Rust ignores `SIGPIPE`), and
//!   `tracing-subscriber` would report that failure with `eprintln!`, which
//!   panics on the same closed pipe.
//! - Colour only on a terminal: a log file or journald gets plain text, and
//!   `NO_COLOR` set to anything but the empty string turns colour off
//!   everywhere.

use std::ffi::OsStr;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`, `RT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event: level, message, then the fields
    /// (`task=... slot=...`); coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp` (RFC 3339, UTC), `level`,
    /// `message`, then each field of the event (`task`, `queue`, `slot`,
    /// `pid`, `duration_s`, ...) as a key of its own. Never coloured.
    Json,
}

/// Installs the subscriber once; later calls do nothing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr)
        .log_internal_errors(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => {
            let colour = use_colour(
                io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            builder.with_ansi(colour).try_init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .try_init(),
    };
}

/// Whether log lines get colour: only on a terminal, and not when
/// `NO_COLOR` holds a non-empty value (<https://no-color.org>).
pub(crate) fn use_colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Stderr that reports every write as done: a log line that cannot be
/// written is lost, and the process goes on.
#[derive(Debug, Clone, Copy)]
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }
}
