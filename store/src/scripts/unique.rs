//! Scripts of unique enqueue and of freeing uniqueness keys whose task is gone.

use std::sync::LazyLock;

use redis::Script;

script!(
    ENQUEUE_UNIQUE,
    "Enqueue one task unless a live task holds its uniqueness key. KEYS: \
     queues set. ARGV: prefix, id, task, args, queue, description, \
     enqueued_at, uniqueness key. Returns {'new', id} or {'dup', id of the \
     live task}.",
    r#"
local id, q, u = ARGV[2], ARGV[5], ARGV[8]
local uk = k('unique', u)
need(KEYS[1], 'set')
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
redis.call('HSET', k('task', id), 'task', ARGV[3], 'args', ARGV[4],
  'status', 'queued', 'queue', q, 'description', ARGV[6],
  'enqueued_at', ARGV[7], 'unique', u)
redis.call('RPUSH', k('queue', q), id)
redis.call('SADD', KEYS[1], q)
redis.call('SET', uk, id)
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
