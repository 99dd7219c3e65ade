//! The busy slot's finish-and-fetch as a Redis 7 function (`FCALL`).
//!
//! A script defines its helpers on every call (most of the Lua time of the
//! task's path, see docs/performance.md); a function library defines them
//! once, when it is loaded. So a slot calls the library's function, loads
//! the library when the server does not have it (a restart without
//! persistence, a new server, a new version: the name carries a digest of
//! the code), and falls back to the script for good where functions are
//! not to be had: Redis before 7.0, or an ACL user without `FCALL` or
//! `FUNCTION LOAD` (docs/redis.md). Both run the same Lua, so they answer
//! alike.

use std::sync::atomic::{AtomicBool, Ordering};

use redis::{Connection, RedisError, RedisResult, Script, Value};

use crate::scripts::Library;

/// Whether this partition's server takes the task path's function.
#[derive(Debug, Default)]
pub(crate) struct Functions {
    /// Set once the server refused functions: scripts from then on.
    off: AtomicBool,
}

impl Functions {
    /// Calls the function of `library` with `keys` and `args`, or `script`
    /// (the same Lua) where functions are not available.
    pub(crate) fn call(
        &self,
        c: &mut Connection,
        library: &Library,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> RedisResult<Value> {
        if !self.off.load(Ordering::Relaxed)
            && let Some(reply) = self.try_function(c, library, keys, args)?
        {
            return Ok(reply);
        }
        let mut inv = script.prepare_invoke();
        for key in keys {
            inv.key(key);
        }
        for arg in args {
            inv.arg(arg);
        }
        inv.invoke(c)
    }

    /// The function's reply, loading the library first when the server
    /// lacks it; `None` (and functions off from now on) when the server
    /// refuses them.
    fn try_function(
        &self,
        c: &mut Connection,
        library: &Library,
        keys: &[String],
        args: &[String],
    ) -> RedisResult<Option<Value>> {
        let reply = match fcall(c, library, keys, args) {
            Err(e) if missing(&e) => {
                if let Err(e) = load(c, library) {
                    if e.is_io_error() || e.is_connection_dropped() {
                        return Err(e);
                    }
                    if !refused(&e) {
                        // Not a server without functions: a library this
                        // server cannot load is a bug to report.
                        tracing::warn!("cannot load the task path's Redis function library: {e}");
                    }
                    self.turn_off(&e);
                    return Ok(None);
                }
                fcall(c, library, keys, args)
            }
            other => other,
        };
        match reply {
            Ok(v) => Ok(Some(v)),
            Err(e) if refused(&e) => {
                self.turn_off(&e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn turn_off(&self, why: &RedisError) {
        if !self.off.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "Redis functions are not available here ({why}): the task path runs as scripts, with more Redis time per task (docs/redis.md)"
            );
        }
    }
}

fn fcall(
    c: &mut Connection,
    library: &Library,
    keys: &[String],
    args: &[String],
) -> RedisResult<Value> {
    redis::cmd("FCALL")
        .arg(&library.finish_fetch)
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .query(c)
}

fn load(c: &mut Connection, library: &Library) -> RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&library.code)
        .query::<Value>(c)
        .map(|_| ())
}

/// The server has functions but not this library (yet, or any more).
fn missing(e: &RedisError) -> bool {
    e.code() == Some("ERR") && e.detail().is_some_and(|d| d.contains("Function not found"))
}

/// The server will not run functions for us: a command it does not know
/// (before 7.0) or one the ACL user may not call.
fn refused(e: &RedisError) -> bool {
    match e.code() {
        Some("NOPERM") => true,
        Some("ERR") => e
            .detail()
            .is_some_and(|d| d.starts_with("unknown command") || d.contains("unknown subcommand")),
        _ => false,
    }
}
