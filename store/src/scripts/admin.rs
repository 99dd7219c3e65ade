//! Scripts of the operator's actions that the admin command line and the
//! dashboard share beyond those of the producer.

use std::sync::LazyLock;

use redis::Script;

script!(
    DELETE_FAILED,
    "Delete a failed task: its registry entry and its record, only while it \
     is in the failed registry. KEYS: failed registry. ARGV: prefix, id. \
     Returns 1 when deleted, 0 when the id was not in the registry.",
    r#"
need(KEYS[1], 'zset')
if redis.call('ZREM', KEYS[1], ARGV[2]) == 0 then
  return 0
end
redis.call('DEL', k('task', ARGV[2]))
return 1
"#
);
