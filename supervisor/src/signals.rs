//! Signals in, requests out: the one signal table (docs/signals.md mirrors
//! it).
//!
//! Handlers only record (signal-hook's self-pipe); a thread forwards each
//! signal as a [`SignalRequest`] on a channel that `main` hands to the
//! control loop (or the scheduler), and the loop decides. Tests can hand in
//! a channel of their own instead.
//! Signals of one kind that arrive close together may merge into one.

use crossbeam_channel::{Receiver, unbounded};
use nix::sys::signal::{SigSet, Signal};
use signal_hook::consts::{
    SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1,
};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::{Handle, SignalsInfo};
use signal_hook::low_level::siginfo::{Cause, Origin};
use tracing::debug;

/// What a signal asks the supervisor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRequest {
    /// SIGTERM or SIGINT: graceful shutdown (immediate when repeated).
    Stop,
    /// SIGQUIT: immediate shutdown.
    StopNow,
    /// SIGTTIN: one slot more.
    AddSlot,
    /// SIGTTOU: one slot fewer (never below one).
    RemoveSlot,
    /// SIGHUP: reload settings, replace worker processes gracefully.
    Reload,
    /// SIGTSTP: stop fetching, keep running tasks.
    Quiet,
    /// SIGCONT: fetch again after SIGTSTP.
    Resume,
    /// SIGUSR1: log a status dump.
    Dump,
}

/// The signals the supervisor handles.
pub const HANDLED: [i32; 9] = [
    SIGTERM, SIGINT, SIGQUIT, SIGTTIN, SIGTTOU, SIGHUP, SIGTSTP, SIGCONT, SIGUSR1,
];

/// The signal table.
pub fn request_for(signal: i32) -> Option<SignalRequest> {
    match signal {
        SIGTERM | SIGINT => Some(SignalRequest::Stop),
        SIGQUIT => Some(SignalRequest::StopNow),
        SIGTTIN => Some(SignalRequest::AddSlot),
        SIGTTOU => Some(SignalRequest::RemoveSlot),
        SIGHUP => Some(SignalRequest::Reload),
        SIGTSTP => Some(SignalRequest::Quiet),
        SIGCONT => Some(SignalRequest::Resume),
        SIGUSR1 => Some(SignalRequest::Dump),
        _ => None,
    }
}

/// Whether the signal should be acted on. The kernel itself sends SIGTTIN
/// and SIGTTOU to a background process that touches its terminal; those
/// are job control, not a request to rescale, and are ignored.
pub fn wanted(origin: &Origin) -> bool {
    let job_control = matches!(origin.signal, SIGTTIN | SIGTTOU);
    !(job_control && origin.cause == Cause::Kernel)
}

/// The handlers of [`HANDLED`] and the channel their requests come on.
/// Closing (or dropping) it stops the forwarding thread; the handlers stay
/// registered, so the signals keep being caught and ignored.
#[derive(Debug)]
pub struct SignalSource {
    /// Requests, in the order the signals came.
    pub requests: Receiver<SignalRequest>,
    handle: Handle,
}

impl Drop for SignalSource {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// Registers the handlers and starts the forwarding thread. Call it first
/// thing in `main`, before any other thread starts (so that no thread can
/// miss a signal or get one delivered to it first), and pass
/// [`SignalSource::requests`] to the supervisor or the scheduler.
pub fn listen() -> std::io::Result<SignalSource> {
    let mut signals = SignalsInfo::<WithOrigin>::new(HANDLED)?;
    let handle = signals.handle();
    let (tx, requests) = unbounded();
    // Only the forwarding thread takes these signals: blocked here, they
    // stay blocked in every thread started from now on, whose Redis calls
    // (sockets with a timeout) would otherwise fail with EINTR when a
    // signal lands on them. Child processes start with a clean mask (std's
    // spawn resets it).
    let mut mask = SigSet::empty();
    for signal in HANDLED {
        mask.add(Signal::try_from(signal).map_err(std::io::Error::from)?);
    }
    mask.thread_block().map_err(std::io::Error::from)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Err(e) = mask.thread_unblock() {
                tracing::error!("signals: cannot unblock the handled signals: {e}");
            }
            for origin in signals.forever() {
                if !wanted(&origin) {
                    debug!(
                        "ignoring job-control signal {} from the kernel",
                        origin.signal
                    );
                    continue;
                }
                if let Some(request) = request_for(origin.signal)
                    && tx.send(request).is_err()
                {
                    return;
                }
            }
        })?;
    Ok(SignalSource { requests, handle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handled_signal_has_a_row() {
        for signal in HANDLED {
            assert!(request_for(signal).is_some(), "signal {signal}");
        }
        assert_eq!(request_for(signal_hook::consts::SIGUSR2), None);
    }
}
