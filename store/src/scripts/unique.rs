//! Scripts of unique enqueue and of freeing uniqueness keys whose task is gone.

use std::sync::LazyLock;

use redis::Script;

script!(
    ENQUEUE_UNIQUE,
    "Enqueue one task unless a live task holds its uniqueness key. KEYS: \
     queues set, scheduled zset. ARGV: prefix, id, task, args, queue, \
     description, enqueued_at, uniqueness key, run_at (empty: now), run_at \
     score, timeout (empty: none), retry JSON (empty: none), expires_at \
     (empty: none), traceparent (empty: none). Returns \
     {'new', id} or {'dup', id of the live task}.",
    r#"
local id, q, u = ARGV[2], ARGV[5], ARGV[8]
local uk = k('unique', u)
need(KEYS[1], 'set')
need(KEYS[2], 'zset')
need(k('task', id), 'hash')
need(k('queue', q), 'list')
need(uk, 'string')
claim(true)
local held = redis.call('GET', uk)
if held and is(k('task', held), 'hash') then
  local st = redis.call('HGET', k('task', held), 'status')
  if st == 'queued' or st == 'running' or st == 'scheduled' then
    return {'dup', held}
  end
end
local tk = k('task', id)
redis.call('HSET', tk, 'task', ARGV[3], 'args', ARGV[4],
  'queue', q, 'description', ARGV[6], 'enqueued_at', ARGV[7], 'unique', u)
if ARGV[11] ~= '' then redis.call('HSET', tk, 'timeout', ARGV[11]) end
if ARGV[12] ~= '' then redis.call('HSET', tk, 'retry', ARGV[12]) end
if ARGV[13] ~= '' then redis.call('HSET', tk, 'expires_at', ARGV[13]) end
if ARGV[14] ~= '' then redis.call('HSET', tk, 'traceparent', ARGV[14]) end
if ARGV[9] ~= '' then
  redis.call('HSET', tk, 'status', 'scheduled', 'run_at', ARGV[9])
  redis.call('ZADD', KEYS[2], ARGV[10], id)
else
  redis.call('HSET', tk, 'status', 'queued')
  redis.call('RPUSH', k('queue', q), id)
end
redis.call('SADD', KEYS[1], q)
redis.call('SET', uk, id)
poke()
return {'new', id}
"#
);

script!(
    FREE_STALE_UNIQUE,
    "Delete uniqueness keys whose task vanished or ended. ARGV: prefix, \
     then full key names (each under the prefix). Returns how many were \
     deleted.",
    r#"
local n = 0
for i = 2, #ARGV do
  local uk = ARGV[i]
  if is(uk, 'string') then
    local id = redis.call('GET', uk)
    local tk = k('task', id)
    local live = false
    if is(tk, 'hash') then
      local st = redis.call('HGET', tk, 'status')
      live = st == 'queued' or st == 'running' or st == 'scheduled'
    end
    if not live then
      redis.call('DEL', uk)
      n = n + 1
    end
  end
end
return n
"#
);
