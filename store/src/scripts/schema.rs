//! Scripts of the schema marker `P:schema`.

use std::sync::LazyLock;

use redis::Script;

/// The marker value our scripts write, for the Rust side to compare with.
pub(crate) const SCHEMA_MARKER: &str = schema_marker!();

script!(
    CLAIM_SCHEMA,
    "Check that the prefix holds our format; with ARGV[2] = '1' also write \
     the marker when it is missing. KEYS: none. ARGV: prefix, write (1/0). \
     Returns 1, or fails with RTSCHEMA / RTFOREIGN.",
    r#"
claim(ARGV[2] == '1')
return 1
"#
);

script!(
    MARK_GRAPH_MIDDLEWARE,
    "Announce the graph middleware. KEYS: marker. ARGV: prefix, now, ttl \
     secs.",
    r#"
need(KEYS[1], 'string')
claim(true)
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"#
);

script!(
    SET_INCARNATION,
    "Record the supervisor now running under a host and instance name. \
     KEYS: mapping key. ARGV: prefix, then field/value pairs. Replaces an \
     older mapping of any type (older versions kept a plain string).",
    r#"
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'string' then need(KEYS[1], 'hash') end
claim(true)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"#
);
