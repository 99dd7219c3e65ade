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
-- 'paused:<q>', 'concurrency:<q>' (N) and 'rate:<q>' (N/period in ms), per
-- task function 'task_concurrency:<f>' and 'task_rate:<f>', and exists
-- only while something has one, so a fleet without any pays one HGETALL
-- of nothing. Read before any write (a P:flow of another type aborts with
-- nothing changed). `fns` lists the task functions with limits.
local function flow_of()
  local f = redis.call('HGETALL', k('flow'))
  if #f == 0 then return false end
  local t, seen = {fns = {}}, {}
  for i = 1, #f, 2 do
    t[f[i]] = f[i + 1]
    local fn = string.match(f[i], '^task_[a-z]+:(.*)$')
    if fn and not seen[fn] then seen[fn] = true; t.fns[#t.fns + 1] = fn end
  end
  return t
end
-- The permits of a concurrency limit are the ids in set pk. Every ending
-- moves a task out of `running` and out of its slot's list, so an id that
-- is not both holds nothing and is let go here (at most once a second per
-- limit, marker `pruned`, so that slots looking at a full limit do not
-- read every record each time); a dead slot's task keeps its permit until
-- recovery requeues it.
local function in_use(pk, limit, pruned)
  local n = redis.call('SCARD', pk)
  if n < limit then return n end
  if not redis.call('SET', pruned, '1', 'NX', 'PX', 1000) then return n end
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
-- One limited thing (a queue or a task function): its concurrency limit
-- n (or nil), its rate text, and its keys.
local function limits_of(flow, kind, name)
  local pre = ''
  if kind == 'task' then pre = 'task_' end
  local n = tonumber(flow[pre .. 'concurrency:' .. name] or '')
  local max, per = string.match(flow[pre .. 'rate:' .. name] or '', '^(%d+)/(%d+)$')
  return {n = n, max = tonumber(max), per = tonumber(per),
    pk = k(pre .. 'permits', name), pruned = k(pre .. 'permits_pruned', name),
    sk = k(pre .. 'starts', name)}
end
-- How many more may start now under limits l (a large number when
-- unlimited), and the milliseconds until the rate window lets one more
-- through when it is full (0: not known, a permit).
local function room(l, score)
  local free, wait = 1000000, 0
  if l.n then free = l.n - in_use(l.pk, l.n, l.pruned) end
  if l.max then
    local t = clock_ms(score)
    redis.call('ZREMRANGEBYSCORE', l.sk, '-inf', '(' .. (t - l.per))
    local left = l.max - redis.call('ZCARD', l.sk)
    if left <= 0 then
      local first = redis.call('ZRANGE', l.sk, 0, 0, 'WITHSCORES')
      wait = math.max(1, tonumber(first[2]) + l.per - t + 1)
    end
    if left < free then free = left end
  end
  return free, wait
end
-- Whether queue q may start a task now: not paused, within its limits.
-- Else false and the milliseconds until the window lets one through.
local function admit(flow, q, score)
  if flow['paused:' .. q] then return false, 0 end
  local free, wait = room(limits_of(flow, 'queue', q), score)
  if free <= 0 then return false, wait end
  return true, 0
end
-- Whether queue q has any flow setting (a slot never blocks on such a
-- queue: the blocking move would take an id past the limits).
local function controlled(flow, q)
  return flow['paused:' .. q] or flow['concurrency:' .. q] or flow['rate:' .. q]
end
-- Task id started under limits l: it takes a permit and a place in the
-- window.
local function take_permit(l, id, score)
  if l.n then redis.call('SADD', l.pk, id) end
  if l.max then
    local t = clock_ms(score)
    redis.call('ZADD', l.sk, t, id .. '@' .. t)
    redis.call('PEXPIRE', l.sk, l.per + 1000)
  end
end
local function admitted(flow, q, id, score)
  if controlled(flow, q) then take_permit(limits_of(flow, 'queue', q), id, score) end
end
-- The limits of the function of task id (moved into a slot's list), if
-- it has any: its name and limits, else nil.
local function task_limits(flow, id)
  if not flow or #flow.fns == 0 then return nil end
  local fn = redis.pcall('HGET', k('task', id), 'task')
  if type(fn) ~= 'string' then return nil end
  if not (flow['task_concurrency:' .. fn] or flow['task_rate:' .. fn]) then return nil end
  return fn, limits_of(flow, 'task', fn)
end
-- Ids held back by their function's limits wait, in order, in
-- P:task_held:<f>; as many as may start now go back to the front of
-- their queue (read at each fetch, so a freed permit or an opened window
-- lets them through).
local function release_held(flow, score)
  if not flow then return end
  for _, fn in ipairs(flow.fns) do
    local hk = k('task_held', fn)
    if redis.call('LLEN', hk) > 0 then
      local free = room(limits_of(flow, 'task', fn), score)
      if free > 0 then
        local ids = redis.call('LPOP', hk, math.min(free, 1000))
        for i = #ids, 1, -1 do
          local q = redis.call('HGET', k('task', ids[i]), 'queue')
          if q and q ~= '' then redis.call('LPUSH', k('queue', q), ids[i]) end
        end
      end
    end
  end
end
-- After task id of function fn ended: its permit goes, and one id held
-- back by that function's limit goes back to its queue (waking a slot
-- that blocks on it). Errors are left to the next fetch (pcall).
local function let_go(flow, fn, id)
  if not flow or not fn or not flow['task_concurrency:' .. fn] then return end
  redis.call('SREM', k('task_permits', fn), id)
  local h = redis.call('LPOP', k('task_held', fn))
  if not h then return end
  local q = redis.pcall('HGET', k('task', h), 'queue')
  if type(q) ~= 'string' or q == '' or type(redis.pcall('LPUSH', k('queue', q), h)) ~= 'number' then
    redis.call('LPUSH', k('task_held', fn), h)
    return
  end
  poke()
end
-- Moves the head of the first queue (in order) that has one and may start
-- it into the slot's list, and starts it. An id whose task function is
-- at its limit goes to that function's held list instead, and the next one
-- is looked at. With flow settings and nothing taken: {'held', ms until a
-- rate window opens (0: unknown), the queues with settings...}, so the
-- caller does not block on those.
local function take(list, hash, registered, slot, now, score, lim, qkeys, qnames, flow)
  local busy = redis.call('LRANGE', list, 0, -1)
  if #busy > 0 then return {'busy', busy} end
  if registered == nil then registered = redis.call('HLEN', hash) > 0 end
  if flow == nil then flow = flow_of() end
  release_held(flow, score)
  local held, soonest, skipped = {}, 0, 0
  local function sooner(wait)
    if wait > 0 and (soonest == 0 or wait < soonest) then soonest = wait end
  end
  for i, qk in ipairs(qkeys) do
    local q, ok, wait = qnames[i], true, 0
    if flow and controlled(flow, q) then
      ok, wait = admit(flow, q, score)
      held[#held + 1] = q
      sooner(wait)
    end
    while ok and skipped < 100 do
      local id = redis.call('LMOVE', qk, list, 'LEFT', 'RIGHT')
      if not id then break end
      local fn, tl = task_limits(flow, id)
      local free, twait = 1, 0
      if fn then free, twait = room(tl, score) end
      if free <= 0 then
        redis.call('LREM', list, 0, id)
        redis.call('RPUSH', k('task_held', fn), id)
        skipped = skipped + 1
        sooner(twait)
      else
        local rec = start(list, hash, registered, slot, id, q, now, score, lim)
        if rec then
          if flow then admitted(flow, q, id, score) end
          if fn then take_permit(tl, id, score) end
          return rec
        end
      end
    end
  end
  if #held > 0 then
    -- Waits for a poke (docs/flow-control.md, "Waiting").
    redis.pcall('SADD', k('flow', 'waiting'), slot)
  end
  if #held > 0 or soonest > 0 then return {'held', soonest, unpack(held)} end
  return false
end
-- The tasks a finishing task releases (`kids`: the JSON array of rows of
-- children.rs, empty for none), their keys checked before anything is
-- written; false for none.
local function children_of(kids)
  if kids == nil or kids == '' then return false end
  local rows = cjson.decode(kids)
  need(k('queues'), 'set')
  need(k('scheduled'), 'zset')
  for _, c in ipairs(rows) do
    need(k('task', c[1]), 'hash')
    need(k('queue', c[4]), 'list')
  end
  return rows
end
-- Writes the released tasks: queued, or in the delayed set with a run_at.
local function release(rows)
  for _, c in ipairs(rows) do
    local tk = k('task', c[1])
    redis.call('HSET', tk, 'task', c[2], 'args', c[3], 'queue', c[4],
      'description', c[5], 'enqueued_at', c[6])
    if c[9] ~= '' then redis.call('HSET', tk, 'timeout', c[9]) end
    if c[10] ~= '' then redis.call('HSET', tk, 'retry', c[10]) end
    if c[11] and c[11] ~= '' then redis.call('HSET', tk, 'expires_at', c[11]) end
    if c[12] and c[12] ~= '' then redis.call('HSET', tk, 'traceparent', c[12]) end
    if c[7] ~= '' then
      redis.call('HSET', tk, 'status', 'scheduled', 'run_at', c[7])
      redis.call('ZADD', k('scheduled'), c[8], c[1])
    else
      redis.call('HSET', tk, 'status', 'queued')
      redis.call('RPUSH', k('queue', c[4]), c[1])
    end
    redis.call('SADD', k('queues'), c[4])
  end
  if #rows > 0 then poke() end
end
-- Returns 1 (recorded) or 0 (the slot does not hold id: nothing changed),
-- and whether the slot's hash exists. A task recorded finished releases
-- its children (`kids`, see children_of) in the same step. `times`: the
-- run's start and the beginning of its wait in seconds, as texts, from
-- the caller's lease (nil or empty: read from the record).
local function finish(list, hash, tk, reg, id, st, now, score, err, res, ttl, flow, kids, times)
  local f = redis.call('HMGET', tk, 'task', 'status', 'attempts', 'started_at', 'unique', 'queue',
    'graph', 'graph_node', 'enqueued_at', 'error', 'result')
  local registered = redis.call('HLEN', hash) > 0
  local rows = st == 'finished' and children_of(kids)
  -- A graph node moves its graph on in this same step (read and
  -- checked here, written with the end).
  local gp = gplan_of(f[7], f[8], id, st)
  if redis.call('LREM', list, 0, id) == 0 then return 0, registered end
  if flow and f[6] and flow['concurrency:' .. f[6]] then
    redis.call('SREM', k('permits', f[6]), id)
    poke()
  end
  let_go(flow, f[1], id)
  if f[1] or f[2] then
    local added = redis.pcall('ZADD', reg, score, id)
    if type(added) == 'table' then
      redis.call('RPUSH', list, id)
      error({err = 'RTWRONGTYPE ' .. reg .. ' ' .. redis.call('TYPE', reg).ok .. ' zset'})
    end
    -- `worker` stays: the slot that ran it (docs/redis-schema.md).
    local set, del = {'status', st, 'ended_at', now}, {}
    -- A task that was retried keeps every attempt: add the last one.
    if f[3] then
      local started = f[4]
      if not started or started == '' then started = cjson.null end
      local e = cjson.null
      if err ~= '' then e = err end
      local item = cjson.encode({started_at = started, ended_at = now, status = st,
        error = e, next_attempt_at = cjson.null})
      local past, was_list = appended(f[3], item)
      if was_list then set[#set + 1] = 'attempts'; set[#set + 1] = past end
    end
    if err ~= '' then set[#set + 1] = 'error'; set[#set + 1] = err
    elseif f[10] then del[#del + 1] = 'error' end
    if res ~= '' then set[#set + 1] = 'result'; set[#set + 1] = res
    elseif f[11] then del[#del + 1] = 'result' end
    redis.call('HSET', tk, unpack(set))
    -- Only a retried run can leave an earlier run's error or result.
    if #del > 0 then redis.call('HDEL', tk, unpack(del)) end
    ended(tk, id, st, ttl, f[5] or '')
    if times and times[1] ~= '' then
      tally_at(f[6], st, score, true, tonumber(times[1]), tonumber(times[2]))
    else
      tally(f[6], st, score, f[4], wait_from(f[9], f[3]))
    end
    if rows then release(rows) end
    gapply_of(gp, now)
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
        graph_lua!(),
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
        graph_lua!(),
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
    redis.pcall('SADD', k('flow', 'waiting'), ARGV[2])
    return {'held', wait, q}
  end
end
DONE_TTL = ARGV[12]
local fn, tl = task_limits(flow, ARGV[3])
if fn then
  local free, wait = room(tl, ARGV[5])
  if free <= 0 then
    -- Its function is at its limit: held back until a permit frees.
    redis.call('LREM', KEYS[1], 0, ARGV[3])
    redis.call('RPUSH', k('task_held', fn), ARGV[3])
    return {'held', wait}
  end
end
local rec = start(KEYS[1], KEYS[2], registered, ARGV[2], ARGV[3], q, ARGV[4], ARGV[5],
  {ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]})
if rec then
  if flow then admitted(flow, q, ARGV[3], ARGV[5]) end
  if fn then take_permit(tl, ARGV[3], ARGV[5]) end
  return rec
end
return with_expired({'missing'})
"#
    ))
});

/// Record the end of a run, fenced on the slot's list. KEYS: slot list,
/// slot hash, task, registry. ARGV: prefix, id, status, now, score, error,
/// result (JSON text, empty for none), ttl of the done key, children to
/// release when finished (JSON rows, empty for none). Returns 1, or 0 when
/// the slot does not hold the id.
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        graph_lua!(),
        task_path!(),
        r#"
local done, registered = finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3],
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], flow_of(), ARGV[9])
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
/// key), slot, five size limits, children (as FINISH), the run's start and
/// the beginning of its wait (seconds, from the lease; empty: read from
/// the record), queue names.
/// Returns {1 or 0, what FETCH returns (nil when nothing was taken)}.
pub(crate) static FINISH_FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        graph_lua!(),
        task_path!(),
        r#"
local flow = flow_of()
local done, registered = finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3],
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], flow, ARGV[15], {ARGV[16], ARGV[17]})
if done == 0 then return {0, false} end
DONE_TTL = ARGV[8]
local qkeys, qnames = queues_of(5, 18)
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
  runs = appended(redis.call('HGET', tk, 'aborted_runs'), run)
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
poke()
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
if #requeued > 0 then poke() end
return {requeued, running}
"#
);
