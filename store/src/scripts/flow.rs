//! Flow control in Lua: the helpers a task's path uses to obey the
//! settings, and the script that changes them and wakes the slots waiting
//! on queues that flow control held back.

/// The flow-control Lua of a task's path (docs/flow-control.md):
/// `flow_of()` reads the settings (one `HGETALL` of nothing when there are
/// none); `flow_lib()` builds the helpers that apply them, once per script
/// call and only when there are settings, since every `local function`
/// costs Redis time on every call of a script.
macro_rules! flow_lua {
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
local FLOW_LIB
-- The helpers of flow control, built by the first step of a script call
-- that meets a flow setting (a fleet without any never builds them).
local function flow_lib()
  if FLOW_LIB then return FLOW_LIB end
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
  -- The sooner of two waits in ms (0: none).
  local function sooner(soonest, wait)
    if wait > 0 and (soonest == 0 or wait < soonest) then return wait end
    return soonest
  end
  FLOW_LIB = {sooner = sooner, room = room, admit = admit, controlled = controlled,
    take_permit = take_permit, admitted = admitted, task_limits = task_limits,
    release_held = release_held, let_go = let_go}
  return FLOW_LIB
end
"#
    };
}

use std::sync::LazyLock;

use redis::Script;

script!(
    SET_FLOW,
    "Change flow settings and wake every waiting slot. KEYS: flow hash, \
     waiting set. ARGV: prefix, n (fields to set), n field/value pairs, \
     fields to delete. Each slot in the waiting set gets a token on \
     P:flow:wake:<slot> (kept 1 s) and leaves the set.",
    r#"
need(KEYS[1], 'hash')
need(KEYS[2], 'set')
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + 2 * n)) end
if #ARGV > 2 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 3 + 2 * n)) end
poke()
return 1
"#
);
