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
     still queued or running skips the run. KEYS: entry hash, lock, queues \
     set. ARGV: prefix, token, run score, run text, singleton (1/0), id, \
     task, args, queue, description, now. Returns {'nolock'}, {'done'}, \
     {'busy', previous id, its status} or {'enqueued', id}.",
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
redis.call('HSET', entry, 'last_run', ARGV[4], 'last_run_score', ARGV[3], 'last_task', id)
return {'enqueued', id}
"#
);
