//! Keeping a panic's message and location.
//!
//! `catch_unwind` hands back the panic payload but not where it happened;
//! the hook installed by [`install_hook`] records both, so the failure
//! recorded in Redis reads `panicked: boom at src/tasks.rs:12:5`.

use std::any::Any;
use std::panic::PanicHookInfo;
use std::sync::{Mutex, PoisonError};

/// The last panic seen by the hook in this process. A process-wide slot is
/// right here: a worker process runs one task at a time, and the slot is
/// emptied before each run.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// The text of a panic payload (`&str` and `String` payloads; anything else
/// is named as such).
pub fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

fn describe(info: &PanicHookInfo<'_>) -> String {
    let text = payload_text(info.payload());
    match info.location() {
        Some(loc) => format!("{text} at {}:{}:{}", loc.file(), loc.line(), loc.column()),
        None => text,
    }
}

/// Installs a hook that records each panic's message and location and
/// prints them as one line on stderr (with a backtrace when
/// `RUST_BACKTRACE` asks for one), so a supervisor's log stays readable.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = describe(info);
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            crate::stderr_line(&format!(
                "redis-tasks worker process {}: task panicked: {text}\n{backtrace}",
                std::process::id()
            ));
        } else {
            crate::stderr_line(&format!(
                "redis-tasks worker process {}: task panicked: {text}",
                std::process::id()
            ));
        }
        *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    }));
}

/// Forgets the recorded panic (called before each run).
pub fn clear_last() {
    LAST_PANIC
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
}

/// The panic recorded since [`clear_last`], if the hook is installed; else
/// the payload's text alone.
pub fn last_or(payload: &(dyn Any + Send)) -> String {
    LAST_PANIC
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| payload_text(payload))
}
