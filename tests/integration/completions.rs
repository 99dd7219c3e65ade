//! `completions bash|zsh|fish`: the admin binary and an application binary
//! (the demo) print scripts that name their own subcommands, and the bash
//! script loads in a real bash and registers the completion.

use std::path::Path;
use std::process::Command;

use crate::e2e::demo_bin;
use crate::support::{Cmd, admin_bin};

fn script(bin: &Path, shell: &str) -> String {
    Cmd::new(bin).args(["completions", shell]).stdout()
}

#[test]
fn every_binary_prints_completions_for_its_own_subcommands() {
    for (bin, own) in [(admin_bin(), "dashboard"), (demo_bin(), "worker")] {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .expect("binary name")
            .to_owned();
        for shell in ["bash", "zsh", "fish"] {
            let text = script(&bin, shell);
            for word in ["failed", "requeue", "info", own] {
                assert!(
                    text.contains(word),
                    "{name} {shell}: no {word:?} in\n{text}"
                );
            }
            assert!(text.contains(&name), "{name} {shell}: program not named");
        }
    }
}

#[test]
fn the_bash_script_loads_and_registers_the_completion() {
    let bin = demo_bin();
    let text = script(&bin, "bash");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("completion.bash");
    std::fs::write(&file, text).expect("write the script");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source {}; complete -p redis-tasks-demo",
            file.display()
        ))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("redis-tasks-demo"),
        "status {}\nstdout {stdout}\nstderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let o = Cmd::new(admin_bin())
        .args(["completions", "powershell-9"])
        .fails();
    assert!(o.stderr.contains("powershell-9"), "{}", o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", o.stderr);
}
