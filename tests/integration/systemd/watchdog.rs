//! The watchdog: WATCHDOG=1 comes from the control loop, so a loop that
//! hangs gets the supervisor restarted, and a healthy one is left alone.

use std::time::{Duration, Instant};

use super::harness;
use crate::support::wait_until;

#[test]
fn the_watchdog_restarts_a_hung_supervisor_and_spares_a_healthy_one() {
    let Some(sd) = harness::boot() else { return };
    sd.install_unit();
    // A shorter watchdog than the shipped 30 s, to keep the test short.
    let hung = sd.add_instance(
        "hung",
        1,
        Some(
            "[Service]\nWatchdogSec=4\nRestartSec=1\n\
             Environment=REDIS_TASKS_TEST_HANG_CONTROL_LOOP=1\n",
        ),
    );
    let healthy = sd.add_instance("healthy", 1, Some("[Service]\nWatchdogSec=4\n"));
    sd.systemctl(&["start", "--no-block", &hung, &healthy]);
    sd.wait_state(&hung, "active", Duration::from_secs(60));
    sd.wait_state(&healthy, "active", Duration::from_secs(60));
    let healthy_since = Instant::now();
    let healthy_pid = sd.main_pid(&healthy).expect("healthy main pid");
    let first = sd.main_pid(&hung);

    // The switch stops the control loop 2 s after READY=1; 4 s later
    // systemd gives up on it and restarts it.
    wait_until(
        "the watchdog to restart the hung supervisor",
        Duration::from_secs(60),
        || sd.show(&hung, "NRestarts").parse::<u32>().unwrap_or(0) >= 1,
    );
    assert!(
        sd.pid1_log().contains(&format!("{hung}: Watchdog timeout")),
        "no watchdog timeout logged for {hung}"
    );
    wait_until(
        "the hung supervisor to be back",
        Duration::from_secs(60),
        || {
            let now = sd.main_pid(&hung);
            now.is_some() && now != first
        },
    );

    // Three watchdog periods and more: the healthy one kept feeding it.
    while healthy_since.elapsed() < Duration::from_secs(14) {
        assert_eq!(
            sd.show(&healthy, "NRestarts"),
            "0",
            "{}",
            sd.status(&healthy)
        );
        assert_eq!(sd.show(&healthy, "ActiveState"), "active");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sd.main_pid(&healthy), Some(healthy_pid));
    let sent = sd.notifications(&healthy, 0);
    assert!(sent.iter().any(|m| m == "WATCHDOG=1"), "{sent:?}");
    assert!(
        !sd.pid1_log()
            .contains(&format!("{healthy}: Watchdog timeout"))
    );
}
