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
-- Moves the head of the first queue (in order) that has one and may start
-- it into the slot's list, and starts it. An id whose task function is
-- at its limit goes to that function's held list instead, and the next one
-- is looked at. With flow settings and nothing taken: {'held', ms until a
-- rate window opens (0: unknown), the queues with settings...}, so the
-- caller does not block on those.
-- `keep` (a read-ahead, '' or nil for none): the id of the task the slot
-- is running, the only one its list may hold; the task taken waits for
-- it, so the slot's hash goes on naming `keep`, and nothing is read ahead
-- under flow settings (a waiting task would hold a permit).
local function take(list, hash, registered, slot, now, score, lim, qkeys, qnames, flow, keep)
  local busy = redis.call('LRANGE', list, 0, -1)
  local ahead = keep ~= nil and keep ~= ''
  if #busy > 0 and not (ahead and #busy == 1 and busy[1] == keep) then
    return {'busy', busy}
  end
  if registered == nil then registered = redis.call('HLEN', hash) > 0 end
  if flow == nil then flow = flow_of() end
  if ahead then
    if flow then return false end
    registered = false
  end
  local fl = flow and flow_lib()
  if fl then fl.release_held(flow, score) end
  -- Queues held back (made on the first), the soonest a rate window
  -- opens, ids set aside for their function's limits.
  local held, soonest, skipped = nil, 0, 0
  for i, qk in ipairs(qkeys) do
    local q, ok, wait = qnames[i], true, 0
    if fl and fl.controlled(flow, q) then
      ok, wait = fl.admit(flow, q, score)
      held = held or {}
      held[#held + 1] = q
      soonest = fl.sooner(soonest, wait)
    end
    while ok and skipped < 100 do
      local id = redis.call('LMOVE', qk, list, 'LEFT', 'RIGHT')
      if not id then break end
      local fn, tl, free, twait = nil, nil, 1, 0
      if fl then fn, tl = fl.task_limits(flow, id) end
      if fn then free, twait = fl.room(tl, score) end
      if free <= 0 then
        redis.call('LREM', list, 0, id)
        redis.call('RPUSH', k('task_held', fn), id)
        skipped = skipped + 1
        soonest = fl.sooner(soonest, twait)
      else
        local rec = start(list, hash, registered, slot, id, q, now, score, lim)
        if rec then
          if fl then fl.admitted(flow, q, id, score) end
          if fn then fl.take_permit(tl, id, score) end
          return rec
        end
      end
    end
  end
  if held then
    -- Waits for a poke (docs/flow-control.md, "Waiting").
    redis.pcall('SADD', k('flow', 'waiting'), slot)
  end
  if held or soonest > 0 then return {'held', soonest, unpack(held or {})} end
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
-- its children (`kids`, see children_of) in the same step. `hist`: the
-- history count of this ending worked out by the caller ({key, field,
-- expiry}, see history.rs's `Tally`), or nil or {''}: counted from the
-- record.
local function finish(list, hash, tk, reg, id, st, now, score, err, res, ttl, flow, kids, hist)
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
  if flow then flow_lib().let_go(flow, f[1], id) end
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
    if hist and hist[1] ~= '' then
      count(hist[1], hist[2], hist[3])
    else
      tally(f[6], st, score, f[4], f[9], f[3])
    end
    if rows then release(rows) end
    gapply_of(gp, now)
  end
  return 1, registered
end
-- The queue keys (keys[from..]) and names (args[at..]) of a fetch.
local function queues_of(keys, args, from, at)
  local qkeys, qnames = {}, {}
  for i = from, #keys do
    qkeys[#qkeys + 1] = keys[i]
    qnames[#qnames + 1] = args[at + i - from]
  end
  return qkeys, qnames
end
"#
    };
}

/// The body of [`FINISH_FETCH`], also the function of the task path's
/// library (`library.rs`): it reads only its `KEYS` and `ARGV`.
macro_rules! finish_fetch_lua {
    () => {
        r#"
local flow = flow_of()
local done, registered = finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3],
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], flow, ARGV[15], {ARGV[16], ARGV[17], ARGV[18]})
if done == 0 then return {0, false} end
DONE_TTL = ARGV[8]
local qkeys, qnames = queues_of(KEYS, ARGV, 5, 20)
local keep = ARGV[19]
local rec = take(KEYS[1], KEYS[2], registered, ARGV[9], ARGV[4], ARGV[5],
  {ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]}, qkeys, qnames, flow, keep)
if registered and keep ~= '' then
  redis.call('HSET', KEYS[2], 'state', 'busy', 'current_task', keep)
elseif registered and not (rec and rec[1] == 'task' or rec and rec[1] == 'oversize') then
  redis.call('HSET', KEYS[2], 'state', 'idle', 'current_task', '')
end
return {1, with_expired(rec)}
"#
    };
}

/// Everything a script of a task's path defines before its body, but for
/// setting the prefix `P`: the shared helpers, the graph helpers (an
/// ending may move a graph on), starting a task, flow control and
/// `task_path!`. Also the body of the task path's function library.
macro_rules! task_path_lua {
    () => {
        concat!(
            helpers_lua!(),
            graph_lua!(),
            start_lua!(),
            flow_lua!(),
            task_path!()
        )
    };
}

/// A script of a task's path: `task_path_lua!` with the prefix set.
macro_rules! task_path_script {
    ($(#[$doc:meta])* $name:ident, $body:expr) => {
        $(#[$doc])*
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!("local P = ARGV[1]\n", task_path_lua!(), $body))
        });
    };
}

task_path_script!(
    /// Take the head of the first non-empty queue into a slot and start it.
    /// KEYS: slot list, slot hash, queue keys. ARGV: prefix, slot, now, score,
    /// five size limits (args, description, meta, result, whole record), ttl
    /// of the done key of a task that expired, the id of the task the
    /// slot runs meanwhile (a read-ahead, see `take`; empty for none),
    /// queue names. Returns nil,
    /// {'busy', ids}, {'task', id, fields, queue}, {'oversize', id, queue,
    /// field, size, limit index} or {'held', ms, queues...} (nothing taken,
    /// those queues held back by flow control); when tasks met on the way had
    /// expired, that inside {'expired', {{id, queue, fields}...}, reply}.
    FETCH,
    r#"
DONE_TTL = ARGV[10]
local qkeys, qnames = queues_of(KEYS, ARGV, 3, 12)
return with_expired(take(KEYS[1], KEYS[2], nil, ARGV[2], ARGV[3], ARGV[4],
  {ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]}, qkeys, qnames, nil, ARGV[11]))
"#
);

task_path_script!(
    /// Start a task a blocking move put into the slot's list (handed back to
    /// the front of its queue when flow settings that came meanwhile hold it).
    /// KEYS: slot list, slot hash. ARGV: prefix, slot, id, now, score, queue,
    /// five size limits, ttl of an expired task's done key (as FETCH). Returns
    /// what FETCH does for a task (an expired one wrapped as FETCH does),
    /// {'held', ms, queue}, {'missing'}, or nil when the id is not there.
    START,
    r#"
local registered = redis.call('HLEN', KEYS[2]) > 0
local flow = flow_of()
local fl = flow and flow_lib()
if not redis.call('LPOS', KEYS[1], ARGV[3]) then return false end
local q = ARGV[6]
if fl and fl.controlled(flow, q) then
  -- Settings that came while the slot blocked on the queue: obey them.
  local ok, wait = fl.admit(flow, q, ARGV[5])
  if not ok then
    redis.call('LREM', KEYS[1], 0, ARGV[3])
    redis.call('LPUSH', k('queue', q), ARGV[3])
    redis.pcall('SADD', k('flow', 'waiting'), ARGV[2])
    return {'held', wait, q}
  end
end
DONE_TTL = ARGV[12]
local fn, tl
if fl then fn, tl = fl.task_limits(flow, ARGV[3]) end
if fn then
  local free, wait = fl.room(tl, ARGV[5])
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
  if fl then fl.admitted(flow, q, ARGV[3], ARGV[5]) end
  if fn then fl.take_permit(tl, ARGV[3], ARGV[5]) end
  return rec
end
return with_expired({'missing'})
"#
);

task_path_script!(
    /// Record the end of a run, fenced on the slot's list. KEYS: slot list,
    /// slot hash, task, registry. ARGV: prefix, id, status, now, score, error,
    /// result (JSON text, empty for none), ttl of the done key, children to
    /// release when finished (JSON rows, empty for none). Returns 1, or 0 when
    /// the slot does not hold the id.
    FINISH,
    r#"
local done, registered = finish(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3],
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], flow_of(), ARGV[9])
if done == 1 and registered then
  redis.call('HSET', KEYS[2], 'state', 'idle', 'current_task', '')
end
return done
"#
);

task_path_script!(
    /// [`FINISH`] and then, when the slot held the task, [`FETCH`] of its next
    /// one from the same partition, in one round trip. KEYS: slot list, slot
    /// hash, task, registry, queue keys. ARGV: prefix, id, status, now, score,
    /// error, result, ttl (as FINISH, also that of an expired task's done
    /// key), slot, five size limits, children (as FINISH), the history
    /// count of this ending: key, field and expiry (history.rs's `Tally`;
    /// empty: counted from the record), the id of the task the slot runs
    /// meanwhile (a read-ahead, as FETCH; empty for none), queue names.
    /// Returns {1 or 0, what FETCH returns (nil when nothing was taken)}.
    FINISH_FETCH,
    finish_fetch_lua!()
);

script!(
    REQUEUE_INTERRUPTED,
    "Put an interrupted task back at the front of its queue, fenced on the \
     slot's list. KEYS: slot list, slot hash, task, queues set, cancel \
     requests. ARGV: prefix, id, now, reason (empty: a task handed back \
     before it started, no aborted run is noted), score. Returns 1, 0 when \
     the slot does not hold the id, or 2 (nothing changed) for a task handed \
     back whose cancel was asked meanwhile: the caller ends it canceled.",
    r#"
local list, hash, tk = KEYS[1], KEYS[2], KEYS[3]
need(list, 'list')
need(hash, 'hash')
need(tk, 'hash')
need(KEYS[4], 'set')
need(KEYS[5], 'hash')
need(k('failed'), 'zset')
local q = redis.call('HGET', tk, 'queue')
if q and q ~= '' then need(k('queue', q), 'list') end
if ARGV[4] == '' and redis.call('LPOS', list, ARGV[2])
  and redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1 then
  return 2
end
if redis.call('LREM', list, 0, ARGV[2]) == 0 then return 0 end
-- A task read ahead goes back while the one its slot runs stays.
if redis.call('EXISTS', hash) == 1 and redis.call('LLEN', list) == 0 then
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
