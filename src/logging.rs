//! Log output of the command line and the supervisor on stderr, level from
//! `RUST_LOG` (default `info`), in one of two formats ([`LogFormat`]):
//! human-readable lines (journald adds its own time stamps), or one JSON
//! object per line for log collectors.
//!
//! Three rules keep logging harmless:
//!
//! - One event is one line. Fields and messages carry text from Redis and
//!   from tasks (a raw record's `description`, an error message, a queue
//!   name); a newline in one would forge a whole log line of its own.
//!   [`Stderr`] writes each event with every control character inside it
//!   escaped (`\n`, `\r`, `\t`, `\u{1b}`...), whatever field it came from;
//!   only the event's final newline stays. JSON output is escaped by the
//!   encoder already, so this changes nothing there. With colour on (a
//!   terminal only), the colour codes of the formatter itself are kept.
//!
//! - Logging never stops the process. Writes go through [`Stderr`], which
//!   drops a line it cannot write: with stderr a pipe whose reader went away,
//!   `std::io::stderr` returns `EPIPE` (Rust ignores `SIGPIPE`), and
//!   `tracing-subscriber` would report that failure with `eprintln!`, which
//!   panics on the same closed pipe.
//! - Colour only on a terminal: a log file or journald gets plain text, and
//!   `NO_COLOR` set to anything but the empty string turns colour off
//!   everywhere.

use std::borrow::Cow;
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
    let colour = format == LogFormat::Text
        && use_colour(
            io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || Stderr { colour })
        .log_internal_errors(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
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
/// written is lost, and the process goes on. Each write is one event
/// (tracing-subscriber formats an event into one buffer and writes it
/// whole), written as one line by [`one_line`].
#[derive(Debug, Clone, Copy)]
struct Stderr {
    /// Keep colour codes (`ESC [ ... m`).
    colour: bool,
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(&one_line(buf, self.colour));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// `event` with every control character escaped but a final newline (and,
/// with `colour`, the formatter's colour codes): text from outside cannot
/// start a line of its own.
fn one_line(event: &[u8], colour: bool) -> Cow<'_, [u8]> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, "\n"),
        None => (event, ""),
    };
    let text = String::from_utf8_lossy(body);
    let needs = text
        .char_indices()
        .any(|(i, c)| c.is_control() && !(colour && is_colour_code(&text[i..])));
    if !needs {
        return Cow::Borrowed(event);
    }
    let mut out = String::with_capacity(event.len() + 16);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            _ if colour && is_colour_code(&text[i..]) => {
                // Copy the whole sequence up to its final `m`.
                out.push(c);
                for (_, c) in chars.by_ref() {
                    out.push(c);
                    if c == 'm' {
                        break;
                    }
                }
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push_str(end);
    Cow::Owned(out.into_bytes())
}

/// Whether `text` starts with an SGR colour code: `ESC [`, digits and `;`,
/// then `m`.
fn is_colour_code(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("\u{1b}[") else {
        return false;
    };
    let params = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    rest.as_bytes().get(params) == Some(&b'm')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_inside_an_event_are_escaped() {
        let forged = b" INFO report\n ERROR FORGED line finished in 0.002 s\r\x07 done\n";
        assert_eq!(
            one_line(forged, false).as_ref(),
            b" INFO report\\n ERROR FORGED line finished in 0.002 s\\r\\u{7} done\n"
        );
        let clean = b" INFO report finished\n";
        assert!(matches!(one_line(clean, false), Cow::Borrowed(_)));
    }

    #[test]
    fn colour_codes_survive_only_with_colour_on() {
        let event = "\u{1b}[32m INFO\u{1b}[0m x\u{1b}]0;title\u{7}\n".as_bytes();
        assert_eq!(
            String::from_utf8_lossy(&one_line(event, true)),
            "\u{1b}[32m INFO\u{1b}[0m x\\u{1b}]0;title\\u{7}\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&one_line(event, false)),
            "\\u{1b}[32m INFO\\u{1b}[0m x\\u{1b}]0;title\\u{7}\n"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }
}
