//! Scripts of delayed tasks, retries and cancel requests: enqueue with
//! options, promotion of due tasks, a retry's way into the delayed set,
//! canceling a scheduled task, and the cancel requests of running tasks.

use std::sync::LazyLock;

use redis::Script;

/// `append(tk, field, item)`: appends the JSON text `item` to the JSON
/// array in hash field `field` (a missing, empty or unreadable array
/// starts afresh), as `REQUEUE_INTERRUPTED` does for `aborted_runs`; and
/// `attempt(tk, now, status, err, next)`: the JSON of the attempt that is
/// ending, its start read from the hash.
macro_rules! attempt_helpers {
    () => {
        r#"
local function append(tk, field, item)
  redis.call('HSET', tk, field, (appended(redis.call('HGET', tk, field), item)))
end
local function attempt(tk, now, status, err, nxt)
  local started = redis.call('HGET', tk, 'started_at')
  if not started or started == '' then started = cjson.null end
  if err == '' then err = cjson.null end
  if nxt == '' then nxt = cjson.null end
  return cjson.encode({started_at = started, ended_at = now, status = status,
    error = err, next_attempt_at = nxt})
end
"#
    };
}

macro_rules! delayed_script {
    ($name:ident, $doc:literal, $body:literal) => {
        #[doc = $doc]
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(prelude!(), graph_lua!(), attempt_helpers!(), $body))
        });
    };
}

delayed_script!(
    ENQUEUE_WITH,
    "Enqueue a batch with per-task options. KEYS: queues set, scheduled \
     zset. ARGV: prefix, then per task id, task, args, queue, description, \
     enqueued_at, run_at (empty: now), run_at score, timeout (empty: none), \
     retry JSON (empty: none), expires_at (empty: none), traceparent \
     (empty: none). Returns the count.",
    r#"
need(KEYS[1], 'set')
need(KEYS[2], 'zset')
for i = 2, #ARGV, 12 do
  need(k('task', ARGV[i]), 'hash')
  need(k('queue', ARGV[i + 3]), 'list')
end
claim(true)
local n = 0
for i = 2, #ARGV, 12 do
  local id, q = ARGV[i], ARGV[i + 3]
  local tk = k('task', id)
  redis.call('HSET', tk, 'task', ARGV[i + 1], 'args', ARGV[i + 2], 'queue', q,
    'description', ARGV[i + 4], 'enqueued_at', ARGV[i + 5])
  if ARGV[i + 8] ~= '' then redis.call('HSET', tk, 'timeout', ARGV[i + 8]) end
  if ARGV[i + 9] ~= '' then redis.call('HSET', tk, 'retry', ARGV[i + 9]) end
  if ARGV[i + 10] ~= '' then redis.call('HSET', tk, 'expires_at', ARGV[i + 10]) end
  if ARGV[i + 11] ~= '' then redis.call('HSET', tk, 'traceparent', ARGV[i + 11]) end
  if ARGV[i + 6] ~= '' then
    redis.call('HSET', tk, 'status', 'scheduled', 'run_at', ARGV[i + 6])
    redis.call('ZADD', KEYS[2], ARGV[i + 7], id)
  else
    redis.call('HSET', tk, 'status', 'queued')
    redis.call('RPUSH', k('queue', q), id)
  end
  redis.call('SADD', KEYS[1], q)
  n = n + 1
end
poke()
return n
"#
);

delayed_script!(
    PROMOTE,
    "Move due scheduled tasks to the tail of their queue, each exactly \
     once. KEYS: scheduled zset, queues set. ARGV: prefix, now score, batch, \
     now. Returns {moved, score of the next due task or ''}.",
    r#"
need(KEYS[1], 'zset')
need(KEYS[2], 'set')
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
if #ids > 0 then
  claim(true)
  need(k('failed'), 'zset')
end
local moved = 0
for _, id in ipairs(ids) do
  local tk = k('task', id)
  local t = redis.call('TYPE', tk).ok
  local q, qt = false, 'none'
  if t == 'hash' then
    q = redis.call('HGET', tk, 'queue')
    if q == '' then q = false end
    if q then qt = redis.call('TYPE', k('queue', q)).ok end
  end
  redis.call('ZREM', KEYS[1], id)
  if t ~= 'hash' or not ours(tk) then
    -- Gone (expired, deleted) or not a record of ours: nothing to run, and
    -- a key we did not write is left alone.
  elseif redis.call('HGET', tk, 'status') ~= 'scheduled' then
    -- Canceled (or otherwise moved on) meanwhile: nothing to do.
  elseif not q or (qt ~= 'none' and qt ~= 'list') then
    local why = 'cannot enqueue: the task record names no queue'
    if q then why = 'cannot enqueue: redis key ' .. k('queue', q) .. ' holds a ' .. qt end
    redis.call('HSET', tk, 'status', 'failed', 'ended_at', ARGV[4], 'error', why)
    redis.call('ZADD', k('failed'), ARGV[2], id)
    ended(tk, id, 'failed', 604800)
  else
    redis.call('HSET', tk, 'status', 'queued')
    redis.call('HDEL', tk, 'run_at')
    redis.call('RPUSH', k('queue', q), id)
    redis.call('SADD', KEYS[2], q)
    moved = moved + 1
  end
end
if moved > 0 then poke() end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {moved, nxt[2] or ''}
"#
);

delayed_script!(
    CANCEL_SCHEDULED,
    "Cancel a scheduled task and enter it in the canceled registry. KEYS: \
     task, scheduled zset. ARGV: prefix, id, ended_at, ttl, ended_at as a \
     score. Returns 1, or 0 when it is not scheduled (any more).",
    r#"
need(KEYS[1], 'hash')
need(KEYS[2], 'zset')
need(k('canceled'), 'zset')
if redis.call('HGET', KEYS[1], 'status') ~= 'scheduled' then return 0 end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
tally_of(KEYS[1], 'canceled', ARGV[5])
redis.call('HSET', KEYS[1], 'status', 'canceled', 'ended_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'run_at')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', k('canceled'), ARGV[5], ARGV[2])
ended(KEYS[1], ARGV[2], 'canceled', ARGV[4])
return 1
"#
);

delayed_script!(
    REQUEST_CANCEL,
    "Ask the supervisor running a task to stop it, and wake its promoter. \
     KEYS: task, cancel requests hash. ARGV: prefix, id, now. Returns \
     {'ok', supervisor woken ('' for none)}, {'missing'} or {'status', s} \
     when it is not running.",
    r#"
need(KEYS[2], 'hash')
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {'missing'} end
need(KEYS[1], 'hash')
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'running' then return {'status', st or ''} end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
-- Wake the promoter of the supervisor running it, so it need not wait for
-- its next pass.
local slot = redis.call('HGET', KEYS[1], 'worker')
local woken = ''
if slot and slot ~= '' and is(k('worker', slot), 'hash') then
  local sup = redis.call('HGET', k('worker', slot), 'supervisor')
  if sup and sup ~= '' then
    local wk = k('wake', sup)
    if redis.call('TYPE', wk).ok ~= 'none' then redis.call('DEL', wk) end
    redis.call('RPUSH', wk, '1')
    redis.call('EXPIRE', wk, 60)
    woken = sup
  end
end
return {'ok', woken}
"#
);

delayed_script!(
    CANCEL_POLL,
    "The pending cancel requests of running tasks, dropping those whose \
     task is not running. KEYS: cancel requests hash. ARGV: prefix. \
     Returns id/slot pairs.",
    r#"
need(KEYS[1], 'hash')
local out = {}
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  local tk = k('task', id)
  if redis.call('TYPE', tk).ok == 'hash' and redis.call('HGET', tk, 'status') == 'running' then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', tk, 'worker') or ''
  else
    redis.call('HDEL', KEYS[1], id)
  end
end
return out
"#
);

delayed_script!(
    SCHEDULE_RETRY,
    "Send a failed attempt to the delayed set for a retry, fenced on the \
     slot's list. KEYS: slot list, slot hash, task, scheduled zset. ARGV: \
     prefix, id, now, error, run_at, run_at score. Returns 1, or 0 when the \
     slot does not hold the id.",
    r#"
local list, hash, tk = KEYS[1], KEYS[2], KEYS[3]
need(list, 'list')
need(hash, 'hash')
need(tk, 'hash')
need(KEYS[4], 'zset')
if redis.call('LREM', list, 0, ARGV[2]) == 0 then return 0 end
if redis.call('EXISTS', hash) == 1 then
  redis.call('HSET', hash, 'state', 'idle', 'current_task', '')
end
if redis.call('EXISTS', tk) == 0 then return 1 end
tally_of(tk, 'retried', epoch(ARGV[3]))
append(tk, 'attempts', attempt(tk, ARGV[3], 'failed', ARGV[4], ARGV[5]))
redis.call('HSET', tk, 'status', 'scheduled', 'error', ARGV[4], 'run_at', ARGV[5])
-- The next attempt starts with no progress report.
redis.call('HDEL', tk, 'worker', 'started_at', 'ended_at', 'progress')
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[2])
return 1
"#
);

delayed_script!(
    FINISH_CANCELED,
    "Record that a running task was canceled, fenced on the slot's list, \
     and enter it in the canceled registry. KEYS: slot list, slot hash, \
     task, cancel requests hash. ARGV: prefix, id, now, error, ttl, now as \
     a score. Returns 1, or 0 when the slot does not hold the id.",
    r#"
local list, hash, tk = KEYS[1], KEYS[2], KEYS[3]
need(list, 'list')
need(hash, 'hash')
need(tk, 'hash')
need(KEYS[4], 'hash')
need(k('canceled'), 'zset')
if not redis.call('LPOS', list, ARGV[2]) then return 0 end
local gf = redis.call('HMGET', tk, 'graph', 'graph_node')
local gp = gplan_of(gf[1], gf[2], ARGV[2], 'canceled')
redis.call('LREM', list, 0, ARGV[2])
if redis.call('EXISTS', hash) == 1 then
  redis.call('HSET', hash, 'state', 'idle', 'current_task', '')
end
redis.call('HDEL', KEYS[4], ARGV[2])
if redis.call('EXISTS', tk) == 0 then return 1 end
if redis.call('HEXISTS', tk, 'attempts') == 1 then
  append(tk, 'attempts', attempt(tk, ARGV[3], 'canceled', ARGV[4], ''))
end
tally_of(tk, 'canceled', ARGV[6])
redis.call('HSET', tk, 'status', 'canceled', 'ended_at', ARGV[3], 'error', ARGV[4])
redis.call('HDEL', tk, 'worker')
redis.call('EXPIRE', tk, ARGV[5])
redis.call('ZADD', k('canceled'), ARGV[6], ARGV[2])
ended(tk, ARGV[2], 'canceled', ARGV[5])
gapply_of(gp, ARGV[3])
return 1
"#
);
