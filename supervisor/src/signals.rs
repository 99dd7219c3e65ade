//! Signals in, control events out.
//!
//! Handlers only record (signal-hook's self-pipe); a thread forwards each
//! signal to the control loop, which decides. Signals of one kind that
//! arrive together may merge into one.

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// What a signal asks the supervisor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRequest {
    /// SIGTERM or SIGINT: graceful shutdown (immediate when repeated).
    Stop,
    /// SIGQUIT: immediate shutdown.
    StopNow,
}

/// The one table of signals this supervisor handles (docs/signals.md
/// mirrors it).
pub fn request_for(signal: i32) -> Option<SignalRequest> {
    match signal {
        SIGTERM | SIGINT => Some(SignalRequest::Stop),
        SIGQUIT => Some(SignalRequest::StopNow),
        _ => None,
    }
}

/// Registers the handlers (call before starting any thread) and starts the
/// forwarding thread; the returned handle closes it.
pub fn forward<E: Send + 'static>(
    tx: Sender<E>,
    wrap: fn(SignalRequest) -> E,
) -> std::io::Result<Handle> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if let Some(request) = request_for(signal) {
                    if tx.send(wrap(request)).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(handle)
}
