//! The Lua scripts behind every state change that is more than one command.
//!
//! Redis runs a script as one atomic step, so a task id can never be seen in
//! two places or in none. Most scripts first check the Redis type of every
//! key they will write (the `need` helper) and only then write, so a foreign
//! key of the wrong type under our prefix aborts the script with nothing
//! changed and an `RTWRONGTYPE <key> <found> <expected>` error that the Rust
//! side turns into [`StoreError::WrongType`](super::StoreError::WrongType).
//! The hot path (`transitions`: fetch, finish) keeps that guarantee without
//! the `TYPE` calls: see `task_path!` there.
//!
//! Every script takes the key prefix as `ARGV[1]` and builds from it the keys
//! it only learns while running (the record of a task id it pops from a
//! queue). Keys built inside a script are not declared in `KEYS`, so these
//! scripts are not Redis Cluster safe; the schema targets a single server.
//!
//! redis-rs sends each script by its SHA1 (`EVALSHA`) and loads it on the
//! first `NOSCRIPT`.

#[macro_use]
mod history;
#[macro_use]
mod start;

/// The value of the schema marker `P:schema`: the format's name and version.
macro_rules! schema_marker {
    () => {
        "redis-tasks-rs 1"
    };
}

/// Helpers shared by every script: `k(...)` builds a key under the prefix,
/// `need(key, type)` aborts when a key holds another type, `claim(write)`
/// aborts unless the prefix holds our format (and, with `write`, marks it
/// ours), `ended(...)` does what every final end of a task does besides
/// its status: free its uniqueness key, wake its waiters; `poke()` wakes
/// the slots flow control holds back; `tally(...)` counts an ending in the
/// history (see `history`). Starting a task is in `start`, only in the
/// scripts of a task's path.
macro_rules! prelude {
    () => {
        concat!("local P = ARGV[1]\n", helpers_lua!())
    };
}

/// [`prelude!`] without setting the prefix `P` (declared, not set): the
/// helpers as a function library defines them once (see `library`).
macro_rules! helpers_lua {
    () => {
        concat!(
            "local SCHEMA = '",
            schema_marker!(),
            "'\n",
            r#"
-- Joined by hand up to four parts: a table for `table.concat` cost more
-- Redis time than the rest of a key's making.
local function k(a, b, c, d, ...)
  if ... then return P .. ':' .. table.concat({a, b, c, d, ...}, ':') end
  if d then return P .. ':' .. a .. ':' .. b .. ':' .. c .. ':' .. d end
  if c then return P .. ':' .. a .. ':' .. b .. ':' .. c end
  if b then return P .. ':' .. a .. ':' .. b end
  return P .. ':' .. a
end
local function need(key, want)
  local found = redis.call('TYPE', key).ok
  if found ~= 'none' and found ~= want then
    error({err = 'RTWRONGTYPE ' .. key .. ' ' .. found .. ' ' .. want})
  end
end
local function is(key, want) return redis.call('TYPE', key).ok == want end
local function ours(tk) return redis.call('HEXISTS', tk, 'task') == 1 end
-- The JSON array text `old` (a record's field: maybe missing, maybe
-- anything) with the JSON text `item` appended, and whether `old` was an
-- array; anything else starts a new one. Linear in #old: no pattern
-- backtracks over runs of spaces a producer may pad a field with.
local function appended(old, item)
  if type(old) ~= 'string' then return '[' .. item .. ']', false end
  local i, j = string.find(old, '%S'), #old
  while j > 0 and string.find(' \t\n\r\v\f', string.sub(old, j, j), 1, true) do j = j - 1 end
  if not i or i == j or string.byte(old, i) ~= 91 or string.byte(old, j) ~= 93 then
    return '[' .. item .. ']', false
  end
  if string.find(old, '%S', i + 1) == j then return '[' .. item .. ']', true end
  return string.sub(old, i, j - 1) .. ',' .. item .. ']', true
end
local function claim(write)
  local sk = k('schema')
  need(sk, 'string')
  local m = redis.call('GET', sk)
  if m == SCHEMA then return end
  if m then error({err = 'RTSCHEMA ' .. sk .. ' ' .. m}) end
  -- Defined here, so that only an unmarked prefix pays for it.
  -- Evidence that the prefix holds data of the Python original (or another
  -- program using its layout): a key only that layout has, or a record in a
  -- shared-name key in its shape. Returns the key at fault, or false.
  local function foreign()
    for _, name in ipairs({'finished_tasks', 'failed_tasks'}) do
      if redis.call('EXISTS', k(name)) == 1 then return k(name) end
    end
    if is(k('queues'), 'set') then
      for _, q in ipairs(redis.call('SMEMBERS', k('queues'))) do
        if redis.call('EXISTS', k('unblock_queue', q)) == 1 then return k('unblock_queue', q) end
        if is(k('queue', q), 'list') then
          local ids = redis.call('LRANGE', k('queue', q), 0, 4)
          for _, id in ipairs(redis.call('LRANGE', k('queue', q), -5, -1)) do ids[#ids + 1] = id end
          for _, id in ipairs(ids) do
            local tk = k('task', id)
            if is(tk, 'hash') and not ours(tk) then return tk end
          end
        end
      end
    end
    if is(k('workers'), 'zset') then
      for _, w in ipairs(redis.call('ZRANGE', k('workers'), 0, 99)) do
        if redis.call('EXISTS', k('worker_task', w)) == 1 then return k('worker_task', w) end
        local wk = k('worker', w)
        if is(wk, 'hash') and redis.call('HEXISTS', wk, 'supervisor') == 0 then return wk end
      end
    end
    return false
  end
  local f = foreign()
  if f then error({err = 'RTFOREIGN ' .. f}) end
  if write then redis.call('SET', sk, SCHEMA) end
end
-- The uniqueness key of task hash tk, freed if it still names id.
local function free_unique(tk, id)
  local u = redis.call('HGET', tk, 'unique')
  if not u or u == '' then return end
  local uk = k('unique', u)
  if is(uk, 'string') and redis.call('GET', uk) == id then redis.call('DEL', uk) end
end
-- Task id has ended for good with status st: free its uniqueness key and
-- wake whoever waits on P:done:<id> (kept ttl seconds). `u`, when given,
-- is the record's `unique` field already read by the caller (false or ''
-- for none). A done key of another type is left alone.
local function ended(tk, id, st, ttl, u)
  if u == nil then
    free_unique(tk, id)
  elseif u and u ~= '' then
    local uk = k('unique', u)
    if is(uk, 'string') and redis.call('GET', uk) == id then redis.call('DEL', uk) end
  end
  if st == 'canceled' then redis.pcall('INCR', k('stats', 'canceled')) end
  local dk = k('done', id)
  local n = redis.pcall('RPUSH', dk, st)
  if type(n) ~= 'number' then return end
  if n > 1 then redis.call('LTRIM', dk, -1, -1) end
  redis.call('EXPIRE', dk, ttl)
end
-- Wakes the slots waiting because flow control held back their queues
-- (docs/flow-control.md, "Waiting"): each slot in P:flow:waiting gets a
-- token on P:flow:wake:<slot> (kept 1 s) and leaves the set (its next held
-- fetch puts it back). Called by every step that puts a task in a queue or
-- frees a permit; one SPOP of nothing when no slot waits.
local function poke()
  local slots = redis.pcall('SPOP', k('flow', 'waiting'), 1000)
  if type(slots) ~= 'table' or slots.err then return end
  for _, slot in ipairs(slots) do
    local wk = k('flow', 'wake', slot)
    if type(redis.pcall('RPUSH', wk, '1')) == 'number' then redis.call('PEXPIRE', wk, 1000) end
  end
end
-- Seconds since the epoch of an RFC 3339 time (`Z` or a `+hh:mm` offset),
-- or nil when the text is not one.
local function epoch(text)
  -- No time is longer; and the pattern backtracks over long runs of
  -- spaces (20 KB of them held Redis for seconds).
  if type(text) ~= 'string' or #text > 64 then return nil end
  local y, mo, d, h, mi, sec, frac, zone = string.match(text,
    '^%s*(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.-)%s*$')
  if not y then return nil end
  local off = 0
  if zone ~= 'Z' and zone ~= 'z' then
    local sign, oh, om = string.match(zone, '^([%+%-])(%d%d):?(%d%d)$')
    if not sign then return nil end
    off = tonumber(oh) * 3600 + tonumber(om) * 60
    if sign == '-' then off = -off end
  end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  local f = tonumber('0' .. frac) or 0
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) + f - off
end
"#,
            history_lua!()
        )
    };
}

/// Task graphs (docs/graphs.md), shared by the graph scripts and by every
/// script that records a final end, so that a node's end moves its graph
/// on in the same atomic step as its own outcome. `graph()` builds the
/// helpers on first use (every `local function` costs Redis time on every
/// call of a script, and most endings are not a graph's): `gneed` checks
/// the keys of a node to enqueue, `genq` enqueues a node (with its
/// parents' outcomes in its arguments when it asked for them), `gplan`
/// reads what a node's end changes and checks every key it will write
/// (nothing written yet), and `gapply` writes it. `gplan_of` and
/// `gapply_of` do the same for a task record's end. A task record names
/// its node in the fields `graph` and `graph_node`.
macro_rules! graph_lua {
    () => {
        r#"
local GRAPH
-- The graph helpers, built once per script call by the first step that
-- meets a graph (a task outside any graph never builds them).
local function graph()
  if GRAPH then return GRAPH end
  local function gspec(g, name)
    return cjson.decode(redis.call('HGET', g, 'node:' .. name))
  end
  -- {"<parent>": {"status": ..., "result": ..., "error": ...}, ...}: the
  -- results are JSON text already and are spliced in as they are.
  local function gparents(g, spec)
    local parts = {}
    for _, p in ipairs(spec.after or {}) do
      local pid = redis.call('HGET', g, 'id:' .. p) or ''
      local st = redis.call('HGET', g, 'state:' .. p) or 'waiting'
      local f = redis.call('HMGET', k('task', pid), 'result', 'error')
      local res = f[1]
      if not res or res == '' then res = 'null' end
      local err = 'null'
      if f[2] and f[2] ~= '' then err = cjson.encode(f[2]) end
      parts[#parts + 1] = cjson.encode(p) .. ':{"status":' .. cjson.encode(st) ..
        ',"result":' .. res .. ',"error":' .. err .. '}'
    end
    return '{' .. table.concat(parts, ',') .. '}'
  end
  local function genq(g, name, qset, now)
    local spec = gspec(g, name)
    local id = redis.call('HGET', g, 'id:' .. name)
    local args = spec.args
    if spec.inputs then
      -- An object without a `parents` key (checked at enqueue).
      local ps = gparents(g, spec)
      if string.match(args, '^{%s*}$') then args = '{"parents":' .. ps .. '}'
      else args = '{"parents":' .. ps .. ',' .. string.sub(args, 2) end
    end
    local tk = k('task', id)
    redis.call('HSET', tk, 'task', spec.task, 'args', args,
      'status', 'queued', 'queue', spec.queue, 'description', spec.description,
      'enqueued_at', now, 'meta', spec.meta)
    if spec.graph then redis.call('HSET', tk, 'graph', spec.graph, 'graph_node', name) end
    redis.call('RPUSH', k('queue', spec.queue), id)
    redis.call('SADD', qset, spec.queue)
    redis.call('HSET', g, 'state:' .. name, 'queued')
  end
  local function gneed(g, name)
    local spec = gspec(g, name)
    need(k('task', redis.call('HGET', g, 'id:' .. name)), 'hash')
    need(k('queue', spec.queue), 'list')
  end
  -- What the end of `node` (task id, `result`: finished, failed or
  -- canceled) changes in graph hash g: false and why ('gone', 'stale', or
  -- the state it had ended with) when nothing; else the plan for `gapply`.
  -- A finished node (or any, under the `run` policy) counts down its
  -- dependents; under `cancel` a failed node cancels its waiting
  -- descendants, except fan-in nodes, which count the ended parent instead
  -- and run once all their parents ended.
  local function gplan(g, node, id, result)
    need(g, 'hash')
    if redis.call('EXISTS', g) == 0 then return false, 'gone' end
    if redis.call('HGET', g, 'id:' .. node) ~= id then return false, 'stale' end
    local st = redis.call('HGET', g, 'state:' .. node)
    if st ~= 'queued' then return false, st or '' end
    local spec = gspec(g, node)
    local plan = {order = {}, dec = {}, left = {}, enq = {}, cancel = {}}
    local function ended_before(s)
      if not plan.dec[s] then plan.order[#plan.order + 1] = s; plan.dec[s] = 0 end
      plan.dec[s] = plan.dec[s] + 1
    end
    if result == 'finished' or redis.call('HGET', g, 'on_failure') == 'run' then
      for _, s in ipairs(spec.before) do ended_before(s) end
    else
      local stack, seen = {}, {}
      for _, s in ipairs(spec.before) do stack[#stack + 1] = s end
      while #stack > 0 do
        local s = table.remove(stack)
        local sp = gspec(g, s)
        if sp.fan_in then
          ended_before(s)
        elseif not seen[s] then
          seen[s] = true
          if redis.call('HGET', g, 'state:' .. s) == 'waiting' then
            plan.cancel[#plan.cancel + 1] = s
            for _, d in ipairs(sp.before) do stack[#stack + 1] = d end
          end
        end
      end
    end
    for _, s in ipairs(plan.order) do
      local l = tonumber(redis.call('HGET', g, 'left:' .. s)) - plan.dec[s]
      plan.left[#plan.left + 1] = {s, l}
      if l <= 0 and redis.call('HGET', g, 'state:' .. s) == 'waiting' then
        plan.enq[#plan.enq + 1] = s
      end
    end
    for _, s in ipairs(plan.enq) do gneed(g, s) end
    return plan
  end
  -- Writes a plan of `gplan`; returns the graph's status after it.
  local function gapply(g, node, plan, result, qset, now)
    redis.call('HSET', g, 'state:' .. node, result, 'ended:' .. node, now)
    if result ~= 'finished' then redis.call('HINCRBY', g, 'failed', 1) end
    for _, e in ipairs(plan.left) do redis.call('HSET', g, 'left:' .. e[1], e[2]) end
    for _, s in ipairs(plan.cancel) do
      redis.call('HSET', g, 'state:' .. s, 'canceled', 'ended:' .. s, now)
    end
    for _, s in ipairs(plan.enq) do genq(g, s, qset, now) end
    if #plan.enq > 0 then poke() end
    local open = redis.call('HINCRBY', g, 'open', -(1 + #plan.cancel))
    local status = 'running'
    if open <= 0 then
      status = 'finished'
      if tonumber(redis.call('HGET', g, 'failed') or '0') > 0 then status = 'failed' end
      redis.call('HSET', g, 'status', status, 'ended_at', now)
    end
    local ttl = tonumber(redis.call('HGET', g, 'ttl') or '0')
    if ttl and ttl > 0 then redis.call('EXPIRE', g, ttl) end
    return status
  end
  GRAPH = {gneed = gneed, genq = genq, gplan = gplan, gapply = gapply}
  return GRAPH
end
-- The graph plan of a task record's end (fields graph and graph_node
-- already read by the caller): the graph key and the plan, or false.
local function gplan_of(gid, node, id, result)
  if not gid or gid == '' or not node then return false end
  local g = k('graph', gid)
  need(k('queues'), 'set')
  local plan = graph().gplan(g, node, id, result)
  if not plan then return false end
  return {g = g, node = node, plan = plan, result = result}
end
local function gapply_of(p, now)
  if p then graph().gapply(p.g, p.node, p.plan, p.result, k('queues'), now) end
end
"#
    };
}

/// A script with the graph helpers: one that may end a graph node.
macro_rules! graph_script {
    ($name:ident, $doc:literal, $body:literal) => {
        #[doc = $doc]
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!(prelude!(), graph_lua!(), $body)));
    };
}

macro_rules! script {
    ($name:ident, $doc:literal, $body:literal) => {
        #[doc = $doc]
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!(prelude!(), $body)));
    };
}

mod admin;
mod delayed;
#[macro_use]
mod flow;
mod graph;
mod producer;
mod schedule;
mod schema;
mod slots;
#[macro_use]
mod transitions;
mod library;
mod unique;

pub(crate) use admin::*;
pub(crate) use delayed::*;
pub(crate) use flow::*;
pub(crate) use graph::*;
pub(crate) use library::{Library, TASK_PATH};
pub(crate) use producer::*;
pub(crate) use schedule::*;
pub(crate) use schema::*;
pub(crate) use slots::*;
pub(crate) use transitions::*;
pub(crate) use unique::*;
