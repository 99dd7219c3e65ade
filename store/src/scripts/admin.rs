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

script!(
    SET_PROGRESS,
    "Store a running task's progress report (JSON) in its record's \
     `progress` field; a task that is not running (ended, requeued, gone) \
     is left alone. KEYS: task. ARGV: prefix, progress JSON. Returns 1 when \
     stored, else 0.",
    r#"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then
  return 0
end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
"#
);
