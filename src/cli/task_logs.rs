//! `task logs ID [--json | --raw]`: what a task wrote to its stdout and
//! stderr, as its supervisor kept it (docs/observability.md, "A task's own
//! output").

use std::io::Write;

use clap::Args;
use redis_tasks_store::Store;
use serde_json::json;

/// Arguments of `task logs`.
#[derive(Debug, Clone, Args)]
pub struct TaskLogsArgs {
    /// The task id.
    pub id: String,
    /// Print `{"id", "output"}` as JSON (`output` is `null` when nothing
    /// was kept; bytes that are not UTF-8 are replaced).
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Print the bytes as stored, terminal escapes and all (by default
    /// control characters other than line ends and tabs are shown escaped,
    /// so a task cannot drive the terminal that reads its output).
    #[arg(long)]
    pub raw: bool,
}

/// Prints the task's output; a task that kept none is not an error (a
/// line on stderr says so), an unknown id is.
pub(super) fn run(store: &Store, args: &TaskLogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let output = store.task_output(&args.id)?;
    if args.json {
        let text = output.as_deref().map(String::from_utf8_lossy);
        writeln!(out, "{}", json!({"id": args.id, "output": text}))?;
        return Ok(());
    }
    let Some(bytes) = output else {
        let status = store
            .task_preview(&args.id, 1024)
            .map(|p| p.record.status.to_string())
            .unwrap_or_else(|_| "unknown".to_owned());
        crate::cli::print_stderr(&format!(
            "task {} ({status}) has no captured output: it wrote nothing to stdout or stderr, \
             it has not ended yet (the output is stored when a run ends), its supervisor keeps \
             none (task_log_kib = 0), or it has expired",
            args.id
        ));
        return Ok(());
    };
    if args.raw {
        out.write_all(&bytes)?;
    } else {
        out.write_all(shown(&String::from_utf8_lossy(&bytes)).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// `text` with every control character but newline and tab escaped
/// (`\u{1b}`), and a final newline when it lacks one.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        assert_eq!(shown("a\tb\n\u{1b}[2J\rc"), "a\tb\n\\u{1b}[2J\\u{d}c\n");
        assert_eq!(shown(""), "");
    }
}
