//! The watchdog: a supervisor that stops sending WATCHDOG=1 is killed and
//! restarted by systemd, and a healthy one is left alone.
//!
//! The unresponsive supervisor is made so from outside, with SIGSTOP to its
//! main process: every thread stops, so no keep-alive is sent, and no test
//! switch is needed in the product. systemd sends the watchdog signal
//! (SIGABRT) followed by SIGCONT, so a stopped process dies of it too.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::harness;
use crate::support::wait_until;

/// Whether `pid` is stopped (state `T` in its stat line).
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

#[test]
fn the_watchdog_restarts_a_stopped_supervisor_and_spares_a_healthy_one() {
    let Some(sd) = harness::boot() else { return };
    sd.install_unit();
    // A shorter watchdog than the shipped 30 s, to keep the test short.
    let stopped = sd.add_instance(
        "stopped",
        1,
        Some("[Service]\nWatchdogSec=4\nRestartSec=1\n"),
    );
    let healthy = sd.add_instance("healthy", 1, Some("[Service]\nWatchdogSec=4\n"));
    sd.systemctl(&["start", "--no-block", &stopped, &healthy]);
    sd.wait_state(&stopped, "active", Duration::from_secs(60));
    sd.wait_state(&healthy, "active", Duration::from_secs(60));
    let healthy_since = Instant::now();
    let healthy_pid = sd.main_pid(&healthy).expect("healthy main pid");
    let first = sd.main_pid(&stopped).expect("main pid to stop");

    // It fed the watchdog while it ran; then it stops.
    wait_until(
        "a WATCHDOG=1 from the supervisor about to be stopped",
        Duration::from_secs(60),
        || {
            sd.notifications(&stopped, 0)
                .iter()
                .any(|m| m == "WATCHDOG=1")
        },
    );
    kill(Pid::from_raw(first), Signal::SIGSTOP).expect("SIGSTOP");
    wait_until(
        "the supervisor to be stopped",
        Duration::from_secs(30),
        || is_stopped(first),
    );

    // 4 s without WATCHDOG=1: systemd kills it and starts it again.
    wait_until(
        "the watchdog to restart the stopped supervisor",
        Duration::from_secs(60),
        || sd.show(&stopped, "NRestarts").parse::<u32>().unwrap_or(0) >= 1,
    );
    assert!(
        sd.pid1_log()
            .contains(&format!("{stopped}: Watchdog timeout")),
        "no watchdog timeout logged for {stopped}"
    );
    wait_until(
        "the stopped supervisor to be gone",
        Duration::from_secs(60),
        || crate::e2e::is_gone(first),
    );
    wait_until(
        "a new supervisor to be active",
        Duration::from_secs(60),
        || {
            let now = sd.main_pid(&stopped);
            now.is_some_and(|pid| pid != first) && sd.show(&stopped, "ActiveState") == "active"
        },
    );

    // Three watchdog periods and more: the healthy one kept feeding it.
    wait_until(
        "three watchdog periods of the healthy supervisor",
        Duration::from_secs(60),
        || {
            assert_eq!(
                sd.show(&healthy, "NRestarts"),
                "0",
                "{}",
                sd.status(&healthy)
            );
            assert_eq!(sd.show(&healthy, "ActiveState"), "active");
            healthy_since.elapsed() >= Duration::from_secs(14)
        },
    );
    assert_eq!(sd.main_pid(&healthy), Some(healthy_pid));
    let sent = sd.notifications(&healthy, 0);
    assert!(sent.iter().any(|m| m == "WATCHDOG=1"), "{sent:?}");
    assert!(
        !sd.pid1_log()
            .contains(&format!("{healthy}: Watchdog timeout"))
    );
}
