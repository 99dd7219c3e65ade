//! Scripts of a task's path through a slot: fetch and start, finish, requeue, reclaim from a dead slot.

use std::sync::LazyLock;

use redis::Script;

/// The Lua of a task's hot path, shared by [`FETCH`], [`FINISH`] and
/// [`FINISH_FETCH`]: `take(...)` moves the head of the first non-empty
/// queue into the slot's list and starts it; `finish(...)` records a
/// final end fenced on the slot's list.
///
/// No `TYPE` checks up front: every key is first met by a command that
/// fails on a wrong type before anything was written (the slot's list by
/// `LRANGE`/`LREM`, its hash by `HLEN`, the record by `HMGET`, a queue by
/// `LMOVE`), and the registry, written after the fence, is written under
/// `pcall` and the fence undone when it fails. So bad data still aborts
/// with nothing changed, and a finish costs about ten commands, not twenty.
macro_rules! task_path {
    () => {
        r#"
-- Flow control (docs/flow-control.md): the hash P:flow holds, per queue,
-- 'paused:<q>', 'concurrency:<q>' (N) and 'rate:<q>' (N/period in ms),
-- and exists only while some queue has one, so a fleet without any pays
-- one HGETALL of nothing. Read before any write (a P:flow of another
-- type aborts with nothing changed).
local function flow_of()
  local f = redis.call('HGETALL', k('flow'))
  if #f == 0 then return false end
  local t = {}
  for i = 1, #f, 2 do t[f[i]] = f[i + 1] end
  return t
end
-- The permits of a queue with a concurrency limit are the ids in
-- P:permits:<q>. Every ending moves a task out of `running` and out of
-- its slot's list, so an id that is not both holds nothing and is let go
-- here (at most
-- once a second per queue, P:permits_pruned:<q>, so that slots looking
-- at a full queue do not read every record each time); a dead slot's
-- task keeps its permit until recovery requeues it.
local function in_use(pk, limit, q)
  local n = redis.call('SCARD', pk)
  if n < limit then return n end
  if not redis.call('SET', k('permits_pruned', q), '1', 'NX', 'PX', 1000) then return n end
  for _, id in ipairs(redis.call('SMEMBERS', pk)) do
    -- Live: running, and in the list of the slot it names (a record left
    -- `running` by a lost write holds nothing).
    local f = redis.pcall('HMGET', k('task', id), 'status', 'worker')
    local live = type(f) == 'table' and not f.err and f[1] == 'running' and f[2]
    if live then
      local at = redis.pcall('LPOS', k('worker', f[2], 'task'), id)
      live = type(at) == 'number'
    end
    if not live then redis.call('SREM', pk, id); n = n - 1 end
  end
  return n
end
-- Redis's clock in ms: one clock for every supervisor. An ACL without
-- TIME (docs/redis.md before flow control) gets `fallback`, the caller's
-- clock (the score of `now`, in seconds).
local function clock_ms(fallback)
  local t = redis.pcall('TIME')
  if t.err then return math.floor(tonumber(fallback) * 1000) end
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Whether queue q may start a task now: not paused, a permit free, and
-- fewer than N starts in the last period (Redis's clock: one clock for
-- every supervisor). Else false and the milliseconds until the window
-- lets one through (0 when that is not known: a pause or a permit).
local function admit(flow, q, score)
  if flow['paused:' .. q] then return false, 0 end
  local n = tonumber(flow['concurrency:' .. q] or '')
  if n and in_use(k('permits', q), n, q) >= n then return false, 0 end
  local max, per = string.match(flow['rate:' .. q] or '', '^(%d+)/(%d+)$')
  if max then
    max, per = tonumber(max), tonumber(per)
    local sk, t = k('starts', q), clock_ms(score)
    redis.call('ZREMRANGEBYSCORE', sk, '-inf', '(' .. (t - per))
    if redis.call('ZCARD', sk) >= max then
      local first = redis.call('ZRANGE', sk, 0, 0, 'WITHSCORES')
      return false, math.max(1, tonumber(first[2]) + per - t + 1)
    end
  end
  return true, 0
end
-- Whether queue q has any flow setting (a slot never blocks on such a
-- queue: the blocking move would take an id past the limits).
local function controlled(flow, q)
  return flow['paused:' .. q] or flow['concurrency:' .. q] or flow['rate:' .. q]
end
-- Task id of queue q started: it takes a permit and a place in the window.
local function admitted(flow, q, id, score)
  if flow['concurrency:' .. q] then redis.call('SADD', k('permits', q), id) end
  local max, per = string.match(flow['rate:' .. q] or '', '^(%d+)/(%d+)$')
  if max then
    local sk, t = k('starts', q), clock_ms(score)
    redis.call('ZADD', sk, t, id .. '@' .. t)
    redis.call('PEXPIRE', sk, tonumber(per) + 1000)
  end
end
-- Moves the head of the first queue (in order) that has one and may start
-- it into the slot's list, and starts it. With flow settings and nothing
-- taken: {'held', ms until a rate window opens (0: unknown), the queues
-- with settings...}, so the caller does not block on those.
local function take(list, hash, registered, slot, now, score, lim, qkeys, qnames, flow)
  local busy = redis.call('LRANGE', list, 0, -1)
  if #busy > 0 then return {'busy', busy} end
  if registered == nil then registered = redis.call('HLEN', hash) > 0 end
  if flow == nil then flow = flow_of() end
  local held, soonest = {}, 0
  for i, qk in ipairs(qkeys) do
    local q, ok, wait = qnames[i], true, 0
    if flow and controlled(flow, q) then
      ok, wait = admit(flow, q, score)
      held[#held + 1] = q
      if wait > 0 and (soonest == 0 or wait < soonest) then soonest = wait end
    end
    while ok do
      local id = redis.call('LMOVE', qk, list, 'LEFT', 'RIGHT')
      if not id then break end
      local rec = start(list, hash, registered, slot, id, q, now, score, lim)
      if rec then
        if flow then admitted(flow, q, id, score) end
        return rec
      end
    end
  end
  if #held > 0 then return {'held', soonest, unpack(held)} end
  return false
end
-- Returns 1 (recorded) or 0 (the slot does not hold id: nothing changed),
-- and whether the slot's hash exists.
local function finish(list, hash, tk, reg, id, st, now, score, err, res, ttl, flow)
  local f = redis.call('HMGET', tk, 'task', 'status', 'attempts', 'started_at', 'unique', 'queue')
  local registered = redis.call('HLEN', hash) > 0
  if redis.call('LREM', list, 0, id) == 0 then return 0, registered end
  if flow and f[6] and flow['concurrency:' .. f[6]] then
    redis.call('SREM', k('permits', f[6]), id)
  end
  if f[1] or f[2] then
    local added = redis.pcall('ZADD', reg, score, id)
    if type(added) == 'table' then
      redis.call('RPUSH', list, id)
      error({err = 'RTWRONGTYPE ' .. reg .. ' ' .. redis.call('TYPE', reg).ok .. ' zset'})
    end
    local set, del = {'status', st, 'ended_at', now}, {'worker'}
    -- A task that was retried keeps every attempt: add the last one.
    local past = f[3]
    if past and string.match(past, '^%s*%[.*%]%s*$') then
      local started = f[4]
      if not started or started == '' then started = cjson.null end
      local e = cjson.null
      if err ~= '' then e = err end
      local item = cjson.encode({started_at = started, ended_at = now, status = st,
        error = e, next_attempt_at = cjson.null})
      past = string.match(past, '^%s*(.-)%s*$')
      if string.match(past, '^%[%s*%]$') then past = '[' .. item .. ']'
      else past = string.sub(past, 1, -2) .. ',' .. item .. ']' end
      set[#set + 1] = 'attempts'; set[#set + 1] = past
    end
    if err ~= '' then set[#set + 1] = 'error'; set[#set + 1] = err
    else del[#del + 1] = 'error' end
    if res ~= '' then set[#set + 1] = 'result'; set[#set + 1] = res
    else del[#del + 1] = 'result' end
    redis.call('HSET', tk, unpack(set))
    redis.call('HDEL', tk, unpack(del))
    ended(tk, id, st, ttl, f[5] or '')
  end
  return 1, registered
end
-- The queue keys (KEYS[from..]) and names (ARGV[at..]) of a fetch.
local function queues_of(from, at)
  local qkeys, qnames = {}, {}
  for i = from, #KEYS do
    qkeys[#qkeys + 1] = KEYS[i]
    qnames[#qnames + 1] = ARGV[at + i - from]
  end
  return qkeys, qnames
end
"#
    };
}

/// Take the head of the first non-empty queue into a slot and start it.
/// KEYS: slot list, slot hash, queue keys. ARGV: prefix, slot, now, score,
/// five size limits (args, description, meta, result, whole record), ttl
/// of the done key of a task that expired, queue names. Returns nil,
/// {'busy', ids}, {'task', id, fields, queue}, {'oversize', id, queue,
/// field, size, limit index} or {'held', ms, queues...} (nothing taken,
/// those queues held back by flow control); when tasks met on the way had
/// expired, that inside {'expired', {{id, queue, fields}...}, reply}.
pub(crate) static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        task_path!(),
        r#"
DONE_TTL = ARGV[10]
local qkeys, qnames = queues_of(3, 11)
return with_expired(take(KEYS[1], KEYS[2], nil, ARGV[2], ARGV[3], ARGV[4],
  {ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]}, qkeys, qnames))
"#
    ))
});

/// Start a task a blocking move put into the slot's list (handed back to
/// the front of its queue when flow settings that came meanwhile hold it).
/// KEYS: slot list, slot hash. ARGV: prefix, slot, id, now, score, queue,
/// five size limits, ttl of an expired task's done key (as FETCH). Returns
/// what FETCH does for a task (an expired one wrapped as FETCH does),
/// {'held', ms, queue}, {'missing'}, or nil when the id is not there.
pub(crate) static START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        task_path!(),
        r#"
local registered = redis.call('HLEN', KEYS[2]) > 0
local flow = flow_of()
if not redis.call('LPOS', KEYS[1], ARGV[3]) then return false end
local q = ARGV[6]
if flow and controlled(flow, q) then
  -- Settings that came while the slot blocked on the queue: obey them.
  local ok, wait = admit(flow, q, ARGV[5])
  if not ok then
    redis.call('LREM', KEYS[1], 0, ARGV[3])
    redis.call('LPUSH', k('queue', q), ARGV[3])
    return {'held', wait, q}
  end
end
DONE_TTL = ARGV[12]
local rec = start(KEYS[1], KEYS[2], registered, ARGV[2], ARGV[3], q, ARGV[4], ARGV[5],
  {ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]})
if rec then
  if flow then admitted(flow, q, ARGV[3], ARGV[5]) end
  return rec
end
return with_expired({'missing'})
"#
    ))
});

/// Record the end of a run, fenced on the slot's list. KEYS: slot list,
/// slot hash, task, registry. ARGV: prefix, id, status, now, score, error,
/// result (JSON text, empty for none), ttl of the done key. Returns 1, or
/// 0 when the slot does not hold the id.
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        task_path!(),
        r#"
local done, registered = finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3],
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], flow_of())
if done == 1 and registered then
  redis.call('HSET', KEYS[2], 'state', 'idle', 'current_task', '')
end
return done
"#
    ))
});

/// [`FINISH`] and then, when the slot held the task, [`FETCH`] of its next
/// one from the same partition, in one round trip. KEYS: slot list, slot
/// hash, task, registry, queue keys. ARGV: prefix, id, status, now, score,
/// error, result, ttl (as FINISH, also that of an expired task's done
/// key), slot, five size limits, queue names. Returns {1 or 0, what FETCH
/// returns (nil when nothing was taken)}.
pub(crate) static FINISH_FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        task_path!(),
        r#"
local flow = flow_of()
local done, registered = finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3],
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], flow)
if done == 0 then return {0, false} end
DONE_TTL = ARGV[8]
local qkeys, qnames = queues_of(5, 15)
local rec = take(KEYS[1], KEYS[2], registered, ARGV[9], ARGV[4], ARGV[5],
  {ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]}, qkeys, qnames, flow)
if registered and not (rec and rec[1] == 'task' or rec and rec[1] == 'oversize') then
  redis.call('HSET', KEYS[2], 'state', 'idle', 'current_task', '')
end
return {1, with_expired(rec)}
"#
    ))
});

script!(
    REQUEUE_INTERRUPTED,
    "Put an interrupted task back at the front of its queue, fenced on the \
     slot's list. KEYS: slot list, slot hash, task, queues set. ARGV: prefix, \
     id, now, reason (empty: a task handed back before it started, no aborted \
     run is noted), score. Returns 1, or 0 when the slot does not hold the id.",
    r#"
local list, hash, tk = KEYS[1], KEYS[2], KEYS[3]
need(list, 'list')
need(hash, 'hash')
need(tk, 'hash')
need(KEYS[4], 'set')
need(k('failed'), 'zset')
local q = redis.call('HGET', tk, 'queue')
if q and q ~= '' then need(k('queue', q), 'list') end
if redis.call('LREM', list, 0, ARGV[2]) == 0 then return 0 end
if redis.call('EXISTS', hash) == 1 then
  redis.call('HSET', hash, 'state', 'idle', 'current_task', '')
end
if redis.call('EXISTS', tk) == 0 then return 1 end
local runs = false
if ARGV[4] ~= '' then
  local started = redis.call('HGET', tk, 'started_at')
  if not started or started == '' then started = cjson.null end
  local run = cjson.encode({started_at = started, ended_at = ARGV[3], reason = ARGV[4]})
  local old = redis.call('HGET', tk, 'aborted_runs')
  runs = '[' .. run .. ']'
  if old then
    old = string.match(old, '^%s*(.-)%s*$')
    if string.match(old, '^%[.*%]$') and not string.match(old, '^%[%s*%]$') then
      runs = string.sub(old, 1, -2) .. ',' .. run .. ']'
    end
  end
end
if runs then redis.call('HSET', tk, 'aborted_runs', runs) end
if not q or q == '' then
  redis.call('HSET', tk, 'status', 'failed', 'ended_at', ARGV[3],
    'error', 'cannot requeue: the task record names no queue')
  redis.call('HDEL', tk, 'worker')
  redis.call('ZADD', k('failed'), ARGV[5], ARGV[2])
  return 1
end
redis.call('HSET', tk, 'status', 'queued')
redis.call('HDEL', tk, 'started_at', 'ended_at', 'worker', 'error')
redis.call('LPUSH', k('queue', q), ARGV[2])
redis.call('SADD', KEYS[4], q)
return 1
"#
);

script!(
    RECLAIM,
    "Put a dead slot's unstarted tasks back at the front of their queues. \
     KEYS: dead list, workers zset, queues set. ARGV: prefix, dead slot, \
     now score. Returns {requeued ids, ids left running in the list}, or \
     nil when the slot heartbeated after `now` (alive after all).",
    r#"
need(KEYS[1], 'list')
need(KEYS[2], 'zset')
need(KEYS[3], 'set')
local beat = redis.call('ZSCORE', KEYS[2], ARGV[2])
if beat and tonumber(beat) > tonumber(ARGV[3]) then return false end
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local plan = {}
for _, id in ipairs(ids) do
  local tk = k('task', id)
  local q = false
  if redis.call('TYPE', tk).ok == 'hash' and redis.call('HGET', tk, 'status') == 'queued' then
    q = redis.call('HGET', tk, 'queue')
    if q == '' then q = false end
    if q then need(k('queue', q), 'list') end
  end
  plan[#plan + 1] = {id, q}
end
local requeued, running = {}, {}
for i = #plan, 1, -1 do
  local id, q = plan[i][1], plan[i][2]
  if q then
    redis.call('LREM', KEYS[1], 0, id)
    redis.call('LPUSH', k('queue', q), id)
    redis.call('SADD', KEYS[3], q)
    table.insert(requeued, 1, id)
  end
end
for _, e in ipairs(plan) do
  if not e[2] then running[#running + 1] = e[1] end
end
return {requeued, running}
"#
);
