//! Demo tasks that write to their stdout and stderr, which the supervisor
//! keeps with the task (`task logs ID`): plain text, a flood, bytes that
//! are not text, output before a crash, and a child that writes after its
//! task ended.

use std::io::Write;
use std::process::{Command, Stdio};

use redis_tasks::{App, TaskContext};
use serde::Deserialize;

#[derive(Deserialize)]
struct Text {
    text: String,
    /// Seconds to sleep after writing (`print` only; default none).
    #[serde(default)]
    secs: f64,
}

#[derive(Deserialize)]
struct Flood {
    /// How many KiB of numbered lines to write to stdout.
    kib: usize,
}

#[derive(Deserialize)]
struct Late {
    text: String,
    secs: f64,
}

type Result = std::result::Result<(), String>;

/// Registers `print` (`{"text"}` to stdout and to stderr, then a sleep of
/// `{"secs"}` when given), `print_crash`
/// (the same, then SIGSEGV), `flood` (`{"kib"}` of numbered lines, then
/// binary garbage and terminal escapes, then `flood done`) and
/// `print_late` (starts a shell that writes `{"text"}` after `{"secs"}`,
/// and returns at once).
pub fn register(app: App) -> App {
    app.task("print", |_: &TaskContext, a: Text| -> Result {
        print_both(&a.text)?;
        std::thread::sleep(std::time::Duration::from_secs_f64(a.secs.max(0.0)));
        Ok(())
    })
    .task("print_crash", |_: &TaskContext, a: Text| -> Result {
        print_both(&a.text)?;
        crate::misbehave::segfault()
    })
    .task("flood", flood)
    .task("print_late", print_late)
}

/// Writes `text` to stdout and to stderr, each with a line end.
fn print_both(text: &str) -> Result {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    writeln!(std::io::stderr(), "{text}").map_err(|e| e.to_string())
}

fn flood(_: &TaskContext, a: Flood) -> Result {
    let mut out = std::io::stdout().lock();
    let mut written = 0;
    let mut n = 0u64;
    while written < a.kib * 1024 {
        let line = format!("flood line {n:08}\n");
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        written += line.len();
        n += 1;
    }
    out.write_all(b"\xff\xfe\x00garbage\x1b[2J\x1b]0;title\x07\n")
        .map_err(|e| e.to_string())?;
    out.write_all(b"flood done\n").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

fn print_late(_: &TaskContext, a: Late) -> Result {
    let script = format!("sleep {}; echo \"$1\"; echo \"$1\" >&2", a.secs.max(0.0));
    // Not waited for: the task ends while its child still runs.
    Command::new("sh")
        .args(["-c", &script, "sh", &a.text])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    Ok(())
}
