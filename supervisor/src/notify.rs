//! Telling systemd how the supervisor is doing.
//!
//! A service started with `Type=notify` reports its state by sending short
//! `KEY=value` datagrams to the socket named in `NOTIFY_SOCKET`: `READY=1`
//! once it serves, `STATUS=` a line for `systemctl status`, `RELOADING=1`
//! and `STOPPING=1` around a reload and a shutdown, `EXTEND_TIMEOUT_USEC=`
//! while a long drain runs, and `WATCHDOG=1` as a keep-alive when the unit
//! sets `WatchdogSec=`. Outside systemd nothing is set and every method here
//! does nothing, so callers never ask whether they run under systemd.
//!
//! The socket is either a path or, when the name starts with `@`, an
//! address in Linux's abstract namespace (systemd and containers use both).
//! A failed send is logged once at `warn` and never stops the supervisor:
//! losing a status line is better than losing tasks.
//!
//! [`StatusSummary`] builds the one-line summary sent as `STATUS=`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tracing::{debug, warn};

/// How long one send may block when systemd is slow to read its socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Where notifications go, as named by `NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A name in the abstract namespace (`@name` in `NOTIFY_SOCKET`),
    /// without the `@`.
    Abstract(Vec<u8>),
}

impl Target {
    /// Reads a `NOTIFY_SOCKET` value; `None` for an empty or unsupported
    /// one (systemd 254 and later may also name a `vsock:` address).
    fn parse(value: &OsStr) -> Option<Target> {
        let bytes = value.as_bytes();
        match bytes.first() {
            Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
            Some(b'/') => Some(Target::Path(PathBuf::from(value))),
            Some(_) => {
                warn!(
                    "NOTIFY_SOCKET={} is neither a path nor an abstract socket (@name); not notifying systemd",
                    value.to_string_lossy()
                );
                None
            }
            None => None,
        }
    }

    fn address(&self) -> io::Result<SocketAddr> {
        match self {
            Target::Path(path) => SocketAddr::from_pathname(path),
            Target::Abstract(name) => SocketAddr::from_abstract_name(name),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Path(path) => write!(f, "{}", path.display()),
            Target::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// systemd notification socket client; every method is a no-op when
/// `NOTIFY_SOCKET` is unset.
///
/// Methods take `&self` and never fail: a send that does not go through is
/// logged (the first time at `warn`, later ones at `debug`).
#[derive(Debug)]
pub(crate) struct Notifier {
    /// `None` outside systemd (or with an unusable `NOTIFY_SOCKET`).
    target: Option<Target>,
    /// `WATCHDOG_USEC`, when it is meant for this process.
    watchdog: Option<Duration>,
    /// The last `STATUS=` line that went through, to send only changes.
    last_status: Mutex<Option<String>>,
    /// Whether a failed send was already logged at `warn`.
    warned: AtomicBool,
}

impl Notifier {
    /// The notifier systemd asks for through the environment:
    /// `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket),
    /// `WATCHDOG_USEC`, and `WATCHDOG_PID` (the watchdog is ignored when
    /// `WATCHDOG_PID` is set to another process's pid).
    pub(crate) fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var_os("WATCHDOG_USEC"),
            std::env::var_os("WATCHDOG_PID"),
            std::process::id(),
        )
    }

    /// A notifier sending to `socket` (a path, or `@name` for an abstract
    /// socket), with `watchdog` as if `WATCHDOG_USEC` said so. For tests.
    #[cfg(test)]
    pub(crate) fn with_socket(socket: impl Into<OsString>, watchdog: Option<Duration>) -> Notifier {
        let target = Target::parse(&socket.into());
        Notifier::new(target, watchdog)
    }

    fn new(target: Option<Target>, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            // A watchdog without a socket to feed it is no watchdog.
            watchdog: watchdog.filter(|_| target.is_some()),
            target,
            last_status: Mutex::new(None),
            warned: AtomicBool::new(false),
        }
    }

    /// [`from_env`](Self::from_env) with the environment passed in.
    fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<OsString>,
        watchdog_pid: Option<OsString>,
        our_pid: u32,
    ) -> Notifier {
        let target = notify_socket.as_deref().and_then(Target::parse);
        let usec = watchdog_usec
            .as_deref()
            .and_then(OsStr::to_str)
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0);
        let ours = match watchdog_pid.as_deref() {
            None => true,
            Some(pid) => pid.to_str().and_then(|s| s.trim().parse::<u32>().ok()) == Some(our_pid),
        };
        let watchdog = usec.filter(|_| ours).map(Duration::from_micros);
        Notifier::new(target, watchdog)
    }

    /// Whether notifications go anywhere (`NOTIFY_SOCKET` was usable).
    pub(crate) fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: the supervisor serves (start-up or a reload is done).
    pub(crate) fn ready(&self) {
        self.send("READY=1");
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` now: a reload began; send
    /// [`ready`](Self::ready) when it is done.
    pub(crate) fn reloading(&self) {
        if !self.is_active() {
            return;
        }
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&format!("RELOADING=1\n{now}")),
            Err(e) => {
                debug!("cannot read CLOCK_MONOTONIC ({e}); sending RELOADING=1 alone");
                self.send("RELOADING=1")
            }
        };
    }

    /// `STOPPING=1`: shutdown began.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `STATUS=line`, sent only when it differs from the last line sent.
    /// Line breaks become spaces (the protocol is one line per key).
    pub(crate) fn status(&self, line: &str) {
        if !self.is_active() {
            return;
        }
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut last = self
            .last_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() == Some(line.as_str()) {
            return;
        }
        if self.send(&format!("STATUS={line}")) {
            *last = Some(line);
        }
    }

    /// `EXTEND_TIMEOUT_USEC=`: asks systemd to wait `by` longer from now
    /// before it gives up on the current start, stop or reload. systemd
    /// counts from the moment it reads this, so send it again before `by`
    /// runs out while the work goes on.
    pub(crate) fn extend_timeout(&self, by: Duration) {
        let usec = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.send(&format!("EXTEND_TIMEOUT_USEC={usec}"));
    }

    /// How often to call [`watchdog`](Self::watchdog): half of
    /// `WATCHDOG_USEC`, as systemd recommends. `None` when no watchdog is
    /// set for this process.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|period| period / 2)
    }

    /// `WATCHDOG=1`: the keep-alive. Send it from the loop whose health it
    /// stands for, never from a thread of its own.
    pub(crate) fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    /// Sends one datagram; true when it went through (or nothing is to be
    /// sent).
    fn send(&self, message: &str) -> bool {
        let Some(target) = &self.target else {
            return true;
        };
        match send_to(target, message) {
            Ok(()) => true,
            Err(e) => {
                let first = !self.warned.swap(true, Ordering::Relaxed);
                let what = message.lines().next().unwrap_or_default();
                if first {
                    warn!(
                        "cannot notify systemd at {target} ({what}): {e}; further failures are logged at debug level"
                    );
                } else {
                    debug!("cannot notify systemd at {target} ({what}): {e}");
                }
                false
            }
        }
    }
}

fn send_to(target: &Target, message: &str) -> io::Result<()> {
    let address = target.address()?;
    let socket = UnixDatagram::unbound()?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    let sent = socket.send_to_addr(message.as_bytes(), &address)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification sent only in part",
        ));
    }
    Ok(())
}

/// The facts behind the `STATUS=` line; its [`Display`](fmt::Display) is
/// the line, such as
/// `3 busy, 1 idle; 120 finished, 4 failed since start; Redis connected`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatusSummary {
    /// A word for a state out of the ordinary (`"quiet"`, `"draining"`,
    /// `"reloading"`), shown first; `None` while serving normally.
    pub mode: Option<&'static str>,
    /// Slots running a task.
    pub busy: usize,
    /// Slots waiting for a task.
    pub idle: usize,
    /// Tasks finished since start.
    pub finished: u64,
    /// Tasks failed since start.
    pub failed: u64,
    /// Since when Redis has been unreachable, if it is.
    pub redis_down_since: Option<Timestamp>,
}

impl fmt::Display for StatusSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(mode) = self.mode {
            write!(f, "{mode}: ")?;
        }
        write!(
            f,
            "{} busy, {} idle; {} finished, {} failed since start; ",
            self.busy, self.idle, self.finished, self.failed
        )?;
        match self.redis_down_since {
            None => write!(f, "Redis connected"),
            Some(since) => write!(f, "Redis reconnecting since {since:.0}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound datagram socket standing in for systemd's.
    struct Listener {
        socket: UnixDatagram,
        _dir: Option<tempfile_dir::Dir>,
    }

    /// A tiny temp dir (the crate has no tempfile dependency).
    mod tempfile_dir {
        use std::path::{Path, PathBuf};

        pub(super) struct Dir(PathBuf);

        impl Dir {
            pub(super) fn new(tag: &str) -> Dir {
                let path = std::env::temp_dir().join(format!(
                    "rt-notify-{tag}-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::create_dir(&path).expect("create temp dir");
                Dir(path)
            }

            pub(super) fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    impl Listener {
        fn at_path(tag: &str) -> (Listener, PathBuf) {
            let dir = tempfile_dir::Dir::new(tag);
            let path = dir.path().join("notify.sock");
            let socket = UnixDatagram::bind(&path).expect("bind path socket");
            (
                Listener {
                    socket,
                    _dir: Some(dir),
                },
                path,
            )
        }

        fn abstract_(tag: &str) -> (Listener, String) {
            let name = format!("rt-notify-test-{tag}-{}", uuid::Uuid::new_v4().simple());
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
            let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
            (Listener { socket, _dir: None }, format!("@{name}"))
        }

        /// The next datagram (waits up to 10 s).
        fn recv(&self) -> String {
            self.socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut buf = vec![0u8; 4096];
            let n = self.socket.recv(&mut buf).expect("a notification");
            String::from_utf8(buf[..n].to_vec()).expect("utf-8")
        }

        /// Asserts nothing more was sent.
        fn assert_empty(&self) {
            self.socket.set_nonblocking(true).expect("nonblocking");
            let mut buf = [0u8; 4096];
            match self.socket.recv(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(n) => panic!(
                    "unexpected notification {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
                Err(e) => panic!("recv: {e}"),
            }
            self.socket.set_nonblocking(false).expect("blocking");
        }
    }

    #[test]
    fn sends_each_state_to_a_path_socket() {
        let (listener, path) = Listener::at_path("path");
        let n = Notifier::with_socket(&path, None);
        assert!(n.is_active());
        n.ready();
        assert_eq!(listener.recv(), "READY=1");
        n.stopping();
        assert_eq!(listener.recv(), "STOPPING=1");
        n.extend_timeout(Duration::from_millis(2500));
        assert_eq!(listener.recv(), "EXTEND_TIMEOUT_USEC=2500000");
        n.status("2 busy, 0 idle");
        assert_eq!(listener.recv(), "STATUS=2 busy, 0 idle");
        listener.assert_empty();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let (listener, name) = Listener::abstract_("abstract");
        let n = Notifier::with_socket(name, None);
        assert!(n.is_active());
        n.ready();
        assert_eq!(listener.recv(), "READY=1");
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let (listener, path) = Listener::at_path("reload");
        let n = Notifier::with_socket(&path, None);
        let usec_of = |message: &str| -> u64 {
            let mut lines = message.lines();
            assert_eq!(lines.next(), Some("RELOADING=1"), "{message:?}");
            let usec = lines
                .next()
                .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
                .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"));
            assert_eq!(lines.next(), None, "{message:?}");
            usec.parse().expect("a number of microseconds")
        };
        n.reloading();
        let first = usec_of(&listener.recv());
        n.reloading();
        let second = usec_of(&listener.recv());
        assert!(first > 0 && second >= first, "{first} then {second}");
        // CLOCK_MONOTONIC never runs ahead of the time since boot.
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .expect("/proc/uptime")
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .expect("uptime seconds");
        assert!(
            (second as f64) / 1e6 <= uptime + 1.0,
            "{second} µs vs uptime {uptime} s"
        );
    }

    #[test]
    fn status_is_sent_only_when_it_changes() {
        let (listener, path) = Listener::at_path("status");
        let n = Notifier::with_socket(&path, None);
        n.status("a");
        n.status("a");
        n.status("b");
        n.status("b");
        n.status("a");
        assert_eq!(listener.recv(), "STATUS=a");
        assert_eq!(listener.recv(), "STATUS=b");
        assert_eq!(listener.recv(), "STATUS=a");
        listener.assert_empty();
    }

    #[test]
    fn status_stays_on_one_line() {
        let (listener, path) = Listener::at_path("oneline");
        let n = Notifier::with_socket(&path, None);
        n.status("one\ntwo\rthree");
        assert_eq!(listener.recv(), "STATUS=one two three");
    }

    #[test]
    fn watchdog_pings_only_when_a_watchdog_is_set() {
        let (listener, path) = Listener::at_path("watchdog");
        let without = Notifier::with_socket(&path, None);
        assert_eq!(without.watchdog_interval(), None);
        without.watchdog();
        listener.assert_empty();

        let with = Notifier::with_socket(&path, Some(Duration::from_secs(30)));
        assert_eq!(with.watchdog_interval(), Some(Duration::from_secs(15)));
        with.watchdog();
        assert_eq!(listener.recv(), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_everything_is_a_no_op() {
        let n = Notifier::from_vars(None, Some("30000000".into()), None, 42);
        assert!(!n.is_active());
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
        n.reloading();
        n.status("x");
        n.extend_timeout(Duration::from_secs(1));
        n.watchdog();
        n.stopping();
        let empty = Notifier::from_vars(Some("".into()), None, None, 42);
        assert!(!empty.is_active());
        let vsock = Notifier::from_vars(Some("vsock:2:1234".into()), None, None, 42);
        assert!(!vsock.is_active());
    }

    #[test]
    fn environment_is_read_as_systemd_means_it() {
        let sock = || Some(OsString::from("/run/systemd/notify"));
        let n = Notifier::from_vars(sock(), Some("30000000".into()), None, 42);
        assert!(n.is_active());
        assert_eq!(n.target, Some(Target::Path("/run/systemd/notify".into())));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));

        let ours = Notifier::from_vars(sock(), Some("2000000".into()), Some("42".into()), 42);
        assert_eq!(ours.watchdog_interval(), Some(Duration::from_secs(1)));

        // The watchdog of another process (our parent's, inherited).
        let other = Notifier::from_vars(sock(), Some("2000000".into()), Some("7".into()), 42);
        assert_eq!(other.watchdog_interval(), None);
        assert!(other.is_active());

        for bad in ["", "0", "soon", "-5"] {
            let n = Notifier::from_vars(sock(), Some(bad.into()), None, 42);
            assert_eq!(n.watchdog_interval(), None, "WATCHDOG_USEC={bad:?}");
        }
        let bad_pid = Notifier::from_vars(sock(), Some("2000000".into()), Some("x".into()), 42);
        assert_eq!(bad_pid.watchdog_interval(), None);

        let abstract_ = Notifier::from_vars(Some("@sd-notify".into()), None, None, 42);
        assert_eq!(
            abstract_.target,
            Some(Target::Abstract(b"sd-notify".to_vec()))
        );
    }

    #[test]
    fn a_failed_send_is_not_fatal_and_a_status_is_retried() {
        let (listener, path) = Listener::at_path("retry");
        let missing = path.with_file_name("nobody-listens.sock");
        let n = Notifier::with_socket(&missing, None);
        n.ready();
        n.status("x");
        assert!(n.warned.load(Ordering::Relaxed));
        // The failed line was not remembered: a later socket gets it.
        let n = Notifier {
            target: Some(Target::Path(path)),
            ..n
        };
        n.status("x");
        assert_eq!(listener.recv(), "STATUS=x");
    }

    #[test]
    fn the_status_summary_reads_as_one_line() {
        let mut s = StatusSummary {
            mode: None,
            busy: 3,
            idle: 1,
            finished: 120,
            failed: 4,
            redis_down_since: None,
        };
        assert_eq!(
            s.to_string(),
            "3 busy, 1 idle; 120 finished, 4 failed since start; Redis connected"
        );
        s.mode = Some("quiet");
        s.redis_down_since = Some("2025-01-02T03:04:05.678Z".parse().expect("timestamp"));
        assert_eq!(
            s.to_string(),
            "quiet: 3 busy, 1 idle; 120 finished, 4 failed since start; Redis reconnecting since 2025-01-02T03:04:05Z"
        );
    }
}
