//! Is a process we recorded earlier still the same, running process?
//!
//! A pid alone does not say: after a crash the pid may belong to a zombie
//! nobody reaped yet, or to an unrelated process that got the number
//! later (in a container, the restarted supervisor may even get its old
//! pid). A process is identified by its pid, its start time (clock ticks
//! since boot, field 22 of `/proc/<pid>/stat`) and the boot id
//! (`/proc/sys/kernel/random/boot_id`); it is alive only if all three match
//! and it is not a zombie.

use std::fs;
use std::io;

use redis_tasks_store::ProcessIdentity;

/// Where the kernel keeps the current boot's id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z`, ...
    pub(crate) state: char,
    /// Field 22: start time in clock ticks since boot.
    pub(crate) start_time: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) sits in
/// parentheses and may itself contain spaces and parentheses, so the
/// fields after it start after the LAST `)`.
pub(crate) fn parse_stat(line: &str) -> Option<Stat> {
    let close = line.rfind(')')?;
    let mut rest = line.get(close + 1..)?.split_ascii_whitespace();
    // `rest` starts at field 3 (state); field 22 is 19 further on.
    let state = rest.next()?.chars().next()?;
    let start_time = rest.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// Reads the stat line of `pid`; `None` when there is no such process.
pub(crate) fn stat_of(pid: u32) -> Option<Stat> {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|line| parse_stat(&line))
}

/// The current boot's id.
pub(crate) fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string(BOOT_ID)?.trim().to_owned())
}

/// The identity of this process.
pub(crate) fn current() -> io::Result<ProcessIdentity> {
    let pid = std::process::id();
    let stat = stat_of(pid).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot read the start time from /proc/{pid}/stat"),
        )
    })?;
    Ok(ProcessIdentity {
        pid,
        start_time: stat.start_time,
        boot_id: boot_id()?,
    })
}

/// Whether the process `who` names is running: same boot, a process with
/// that pid and start time, and not a zombie.
pub(crate) fn is_alive(who: &ProcessIdentity) -> bool {
    match boot_id() {
        Ok(boot) if boot == who.boot_id => {}
        _ => return false,
    }
    stat_of(who.pid).is_some_and(|s| s.state != 'Z' && s.start_time == who.start_time)
}

/// Whether some non-zombie process has this pid (for records that carry
/// no start time).
pub(crate) fn pid_runs(pid: u32) -> bool {
    stat_of(pid).is_some_and(|s| s.state != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line with `comm` and a start time of 123456 (field 22).
    fn line(comm: &str, state: char) -> String {
        format!(
            "4242 ({comm}) {state} 1 4242 4242 0 -1 4194560 100 0 0 0 5 2 0 0 20 0 1 0 123456 \
             10000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn a_plain_line_is_read() {
        assert_eq!(
            parse_stat(&line("redis-tasks", 'S')),
            Some(Stat {
                state: 'S',
                start_time: 123456
            })
        );
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped_whole() {
        let stat = parse_stat(&line("a) (Z 7 b", 'R')).expect("parse");
        assert_eq!(stat.state, 'R');
        assert_eq!(stat.start_time, 123456);
        let stat = parse_stat(&line(") (", 'Z')).expect("parse");
        assert_eq!(stat.state, 'Z');
        assert_eq!(stat.start_time, 123456);
    }

    #[test]
    fn truncated_or_garbled_lines_are_refused() {
        assert_eq!(parse_stat("4242 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
        assert_eq!(parse_stat(&line("x", 'S').replace("123456", "soon")), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_identity_is_not() {
        let me = current().expect("own identity");
        assert!(is_alive(&me));
        let mut later = me.clone();
        later.start_time += 1;
        assert!(!is_alive(&later));
        let mut other_boot = me;
        other_boot.boot_id = "not-this-boot".to_owned();
        assert!(!is_alive(&other_boot));
    }
}
