//! The script that changes the flow settings of queues and wakes the slots
//! waiting on queues that flow control held back.

use std::sync::LazyLock;

use redis::Script;

script!(
    SET_FLOW,
    "Change flow settings and wake every waiting slot. KEYS: flow hash, \
     waiting set. ARGV: prefix, n (fields to set), n field/value pairs, \
     fields to delete. Each slot in the waiting set gets a token on \
     P:flow:wake:<slot> (kept 1 s) and leaves the set.",
    r#"
need(KEYS[1], 'hash')
need(KEYS[2], 'set')
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + 2 * n)) end
if #ARGV > 2 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 3 + 2 * n)) end
poke()
return 1
"#
);
