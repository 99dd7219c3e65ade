//! Scripts of the scheduler: first sight of an entry and enqueueing a due run exactly once.

use std::sync::LazyLock;

use redis::Script;

script!(
    SCHEDULE_INIT,
    "Note the first sight of a schedule entry, fenced on the scheduler lock. \
     KEYS: entry hash, lock. ARGV: prefix, token, now text, now score. \
     Returns {'ok', last_run} (the stored or the newly set time) or {'nolock'}.",
    r#"
need(KEYS[1], 'hash')
need(KEYS[2], 'string')
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {'nolock'} end
if redis.call('HSETNX', KEYS[1], 'last_run', ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'last_run_score', ARGV[4])
end
return {'ok', redis.call('HGET', KEYS[1], 'last_run')}
"#
);

script!(
    SCHEDULE_RUN,
    "Enqueue one run of a schedule entry unless it was already handled, \
     fenced on the scheduler lock; a singleton entry whose previous task is \
     still queued or running skips the run, and a paused entry skips it too. KEYS: entry hash, lock, queues \
     set. ARGV: prefix, token, run score, run text, singleton (1/0), id, \
     task, args, queue, description, now. Returns {'nolock'}, {'done'}, \
     {'busy', previous id, its status}, {'paused'} or {'enqueued', id}.",
    r#"
local entry, q, id = KEYS[1], ARGV[9], ARGV[6]
need(entry, 'hash')
need(KEYS[2], 'string')
need(KEYS[3], 'set')
need(k('queue', q), 'list')
need(k('task', id), 'hash')
claim(true)
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {'nolock'} end
local last = redis.call('HGET', entry, 'last_run_score')
if last and tonumber(last) >= tonumber(ARGV[3]) then return {'done'} end
if redis.call('HGET', entry, 'paused') == '1' then
  redis.call('HSET', entry, 'last_run', ARGV[4], 'last_run_score', ARGV[3])
  return {'paused'}
end
if ARGV[5] == '1' then
  local prev = redis.call('HGET', entry, 'last_task')
  if prev and prev ~= '' then
    local tk = k('task', prev)
    if redis.call('TYPE', tk).ok == 'hash' then
      local st = redis.call('HGET', tk, 'status')
      if st == 'queued' or st == 'running' then
        redis.call('HSET', entry, 'last_run', ARGV[4], 'last_run_score', ARGV[3])
        return {'busy', prev, st}
      end
    end
  end
end
redis.call('HSET', k('task', id), 'task', ARGV[7], 'args', ARGV[8],
  'status', 'queued', 'queue', q, 'description', ARGV[10], 'enqueued_at', ARGV[11])
redis.call('RPUSH', k('queue', q), id)
redis.call('SADD', KEYS[3], q)
poke()
redis.call('HSET', entry, 'last_run', ARGV[4], 'last_run_score', ARGV[3], 'last_task', id)
return {'enqueued', id}
"#
);

script!(
    SCHEDULE_REGISTER,
    "Record the entry ids the active scheduler runs, fenced on the scheduler \
     lock. KEYS: entries set, lock. ARGV: prefix, token, ids... Returns 1, or \
     0 when the lock is not the caller's.",
    r#"
need(KEYS[1], 'set')
need(KEYS[2], 'string')
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
return 1
"#
);

script!(
    SCHEDULE_PAUSE,
    "Pause or resume a schedule entry and wake the scheduler. A resumed \
     entry's last run moves up to now, so runs due while it was paused are \
     not caught up. KEYS: entry hash, wake list. ARGV: prefix, 1 (pause) or \
     0 (resume), now text, now score. Returns 1 when the state changed, 0 \
     when it already was so.",
    r#"
local entry = KEYS[1]
need(entry, 'hash')
need(KEYS[2], 'list')
local was = redis.call('HGET', entry, 'paused') == '1'
local changed = 0
if ARGV[2] == '1' then
  if not was then
    redis.call('HSET', entry, 'paused', '1', 'paused_at', ARGV[3])
    changed = 1
  end
else
  if was then
    redis.call('HDEL', entry, 'paused', 'paused_at')
    local last = redis.call('HGET', entry, 'last_run_score')
    if not last or tonumber(last) < tonumber(ARGV[4]) then
      redis.call('HSET', entry, 'last_run', ARGV[3], 'last_run_score', ARGV[4])
    end
    changed = 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('EXPIRE', KEYS[2], 60)
return changed
"#
);

script!(
    SCHEDULE_REQUEST_RUN,
    "Ask for one run of a schedule entry now and wake the scheduler. KEYS: \
     entry hash, wake list. ARGV: prefix. Returns the number of requests \
     pending.",
    r#"
need(KEYS[1], 'hash')
need(KEYS[2], 'list')
local n = redis.call('HINCRBY', KEYS[1], 'run_requests', 1)
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('EXPIRE', KEYS[2], 60)
return n
"#
);

script!(
    SCHEDULE_RUN_NOW,
    "Enqueue one requested run of a schedule entry, fenced on the scheduler \
     lock; the request is taken in the same step, so each is enqueued once. \
     KEYS: entry hash, lock, queues set. ARGV: prefix, token, id, task, \
     args, queue, description, now. Returns {'nolock'}, {'none'} (no request \
     pending) or {'enqueued', id}.",
    r#"
local entry, q, id = KEYS[1], ARGV[6], ARGV[3]
need(entry, 'hash')
need(KEYS[2], 'string')
need(KEYS[3], 'set')
need(k('queue', q), 'list')
need(k('task', id), 'hash')
claim(true)
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {'nolock'} end
local n = tonumber(redis.call('HGET', entry, 'run_requests') or '0') or 0
if n <= 0 then
  redis.call('HDEL', entry, 'run_requests')
  return {'none'}
end
if n == 1 then
  redis.call('HDEL', entry, 'run_requests')
else
  redis.call('HSET', entry, 'run_requests', n - 1)
end
redis.call('HSET', k('task', id), 'task', ARGV[4], 'args', ARGV[5],
  'status', 'queued', 'queue', q, 'description', ARGV[7], 'enqueued_at', ARGV[8])
redis.call('RPUSH', k('queue', q), id)
redis.call('SADD', KEYS[3], q)
poke()
redis.call('HSET', entry, 'last_task', id)
return {'enqueued', id}
"#
);
