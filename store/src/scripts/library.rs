//! The task path's Lua as a Redis 7 function library: the helpers of
//! `transitions` defined once when the library is loaded, and the busy
//! slot's finish-and-fetch ([`FINISH_FETCH`](super::FINISH_FETCH)'s body)
//! as its function. See `fetch/function.rs` for how it is called.

use std::sync::LazyLock;

use redis::Script;

/// A function library: its code (for `FUNCTION LOAD`) and the name of its
/// function.
#[derive(Debug)]
pub(crate) struct Library {
    pub(crate) code: String,
    pub(crate) finish_fetch: String,
}

/// The task path's library. Its names carry a digest of its code, so that
/// supervisors of two versions on one server each call their own.
pub(crate) static TASK_PATH: LazyLock<Library> = LazyLock::new(|| {
    let helpers = concat!("local P\n", task_path_lua!());
    // What a script sets up at its top, per call: the prefix, and the
    // expired tasks of this call (the helpers' caches may stay).
    let entry = concat!(
        "P = ARGV[1]\nEXPIRED, DONE_TTL = {}, 604800\n",
        finish_fetch_lua!()
    );
    let digest = Script::new(&format!("{helpers}{entry}"))
        .get_hash()
        .to_owned();
    let tag = digest.get(..12).unwrap_or(&digest);
    let finish_fetch = format!("redis_tasks_finish_fetch_{tag}");
    let code = format!(
        "#!lua name=redis_tasks_{tag}\n{helpers}\nredis.register_function('{finish_fetch}', function(KEYS, ARGV)\n{entry}\nend)\n"
    );
    Library { code, finish_fetch }
});
