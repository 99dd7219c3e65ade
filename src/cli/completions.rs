//! `completions`: shell completion scripts, generated from the clap
//! definition of the binary that prints them (so an application binary
//! completes its own `worker` and `scheduler` too).
//!
//! Install, for example, with
//! `redis-tasks completions bash > /etc/bash_completion.d/redis-tasks`.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use clap::Args;
use clap_complete::Shell;

/// Arguments of `completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script of `command` for `shell` to `out`, for the
/// program named as `argv0` (its file name is what the shell completes).
pub fn write_completions(
    mut command: clap::Command,
    argv0: Option<&OsStr>,
    shell: Shell,
    out: &mut dyn Write,
) {
    let bin_name = argv0
        .map(Path::new)
        .and_then(Path::file_name)
        .and_then(OsStr::to_str)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| command.get_name().to_owned());
    if shell != Shell::Bash {
        clap_complete::generate(shell, &mut command, bin_name, out);
        return;
    }
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, bin_name.clone(), &mut script);
    let script = String::from_utf8_lossy(&script);
    let _ = out.write_all(mend_bash_states(&script, &bin_name).as_bytes());
}

/// Works around a bug of clap_complete's bash generator for program names
/// with a hyphen: the loop over the words names its states after the program
/// with `-` turned into `__` (`redis__tasks__subcmd__task`), but the arms that
/// complete a state spell the program with `-` turned into `__subcmd__`
/// (`redis__subcmd__tasks__subcmd__task`), so nothing after the first word
/// completes. The arms are renamed to the states' spelling.
fn mend_bash_states(script: &str, bin_name: &str) -> String {
    if !bin_name.contains('-') {
        return script.to_owned();
    }
    let state = bin_name.replace('-', "__");
    let arm = bin_name.replace('-', "__subcmd__");
    script.replace(&arm, &state)
}
