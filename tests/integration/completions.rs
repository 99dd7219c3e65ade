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

/// What bash's completion offers for `words` (the last one being completed)
/// after loading `bin`'s script: the completion function is called the way
/// bash's readline calls it.
fn bash_offers(bin: &Path, words: &[&str]) -> String {
    let name = bin.file_name().and_then(|n| n.to_str()).expect("name");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("completion.bash");
    std::fs::write(&file, script(bin, "bash")).expect("write the script");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source {file}
         func=$(complete -p {name} | sed -E 's/.*-F ([^ ]+) .*/\\1/')
         COMP_WORDS=({words}); COMP_CWORD={cword}
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}
         \"$func\" {name} '{cur}' '{prev}'
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file = file.display(),
        words = quoted.join(" "),
        cur = words[cword],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_subcommands_of_binaries_with_a_hyphen() {
    for bin in [admin_bin(), demo_bin()] {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        let first = bash_offers(&bin, &[&name, ""]);
        assert!(first.lines().any(|l| l == "task"), "{name} <TAB>: {first}");
        let second = bash_offers(&bin, &[&name, "task", ""]);
        for word in ["show", "result", "cancel"] {
            assert!(
                second.lines().any(|l| l == word),
                "{name} task <TAB> offers no {word:?}: {second:?}"
            );
        }
        let partial = bash_offers(&bin, &[&name, "failed", "re"]);
        assert!(
            partial.lines().any(|l| l == "requeue"),
            "{name} failed re<TAB>: {partial:?}"
        );
    }
}

#[test]
fn fish_completes_subcommands_of_binaries_with_a_hyphen() {
    if Command::new("fish").arg("--version").output().is_err() {
        eprintln!("fish is not installed (.ci/run installs it): skipped");
        return;
    }
    for bin in [admin_bin(), demo_bin()] {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("completion.fish");
        std::fs::write(&file, script(&bin, "fish")).expect("write the script");
        let out = Command::new("fish")
            .arg("-c")
            .arg(format!(
                "source {}; complete -C '{name} task '",
                file.display()
            ))
            .output()
            .expect("run fish");
        let offered = String::from_utf8_lossy(&out.stdout);
        for word in ["show", "result", "cancel"] {
            assert!(
                offered.lines().any(|l| l.split('\t').next() == Some(word)),
                "{name} task <TAB> in fish offers no {word:?}: {offered:?} (stderr {})",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
