//! The Lua scripts behind every state change that is more than one command.
//!
//! Redis runs a script as one atomic step, so a task id can never be seen in
//! two places or in none. Each script first checks the Redis type of every
//! key it will write (the `need` helper) and only then writes, so a foreign
//! key of the wrong type under our prefix aborts the script with nothing
//! changed and an `RTWRONGTYPE <key> <found> <expected>` error that the Rust
//! side turns into [`StoreError::WrongType`](super::StoreError::WrongType).
//!
//! Every script takes the key prefix as `ARGV[1]` and builds from it the keys
//! it only learns while running (the record of a task id it pops from a
//! queue). Keys built inside a script are not declared in `KEYS`, so these
//! scripts are not Redis Cluster safe; the schema targets a single server.
//!
//! redis-rs sends each script by its SHA1 (`EVALSHA`) and loads it on the
//! first `NOSCRIPT`.

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by every script: `k(...)` builds a key under the prefix,
/// `need(key, type)` aborts when a key holds another type, and `start(...)`
/// marks a task that was just moved into a slot's list as running.
macro_rules! prelude {
    () => {
        r#"
local P = ARGV[1]
local function k(...) return P .. ':' .. table.concat({...}, ':') end
local function need(key, want)
  local found = redis.call('TYPE', key).ok
  if found ~= 'none' and found ~= want then
    error({err = 'RTWRONGTYPE ' .. key .. ' ' .. found .. ' ' .. want})
  end
end
local function bury(id, q, now, score)
  redis.call('HSET', k('task', id), 'task', '(missing)', 'args', 'null',
    'status', 'failed', 'queue', q, 'description', '(task record missing)',
    'enqueued_at', now, 'ended_at', now, 'error', 'task record missing')
  redis.call('ZADD', k('failed'), score, id)
end
local function start(list, hash, slot, id, q, now, score)
  local tk = k('task', id)
  local t = redis.call('TYPE', tk).ok
  if t ~= 'hash' then
    redis.call('LREM', list, 0, id)
    if t == 'none' then
      bury(id, q, now, score)
    else
      redis.call('ZADD', k('failed'), score, id)
    end
    return false
  end
  redis.call('HSET', tk, 'status', 'running', 'started_at', now, 'worker', slot)
  redis.call('HDEL', tk, 'ended_at')
  if redis.call('EXISTS', hash) == 1 then
    redis.call('HSET', hash, 'state', 'busy', 'current_task', id)
  end
  return {'task', id, redis.call('HGETALL', tk)}
end
"#
    };
}

macro_rules! script {
    ($name:ident, $doc:literal, $body:literal) => {
        #[doc = $doc]
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!(prelude!(), $body)));
    };
}

script!(
    ENQUEUE,
    "Enqueue a batch. KEYS: queues set. ARGV: prefix, then per task \
     id, task, args, queue, description, enqueued_at. Returns the count.",
    r#"
need(KEYS[1], 'set')
for i = 2, #ARGV, 6 do
  need(k('task', ARGV[i]), 'hash')
  need(k('queue', ARGV[i + 3]), 'list')
end
local n = 0
for i = 2, #ARGV, 6 do
  local id, q = ARGV[i], ARGV[i + 3]
  redis.call('HSET', k('task', id), 'task', ARGV[i + 1], 'args', ARGV[i + 2],
    'status', 'queued', 'queue', q, 'description', ARGV[i + 4],
    'enqueued_at', ARGV[i + 5])
  redis.call('RPUSH', k('queue', q), id)
  redis.call('SADD', KEYS[1], q)
  n = n + 1
end
return n
"#
);

script!(
    CANCEL,
    "Cancel a queued task still in its queue. KEYS: task. ARGV: prefix, id, \
     ended_at, ttl. Returns {'ok'}, {'missing'}, {'status', s}, {'noqueue'} \
     or {'taken'}.",
    r#"
local tk = KEYS[1]
need(tk, 'hash')
local st = redis.call('HGET', tk, 'status')
if redis.call('EXISTS', tk) == 0 then return {'missing'} end
if not st then return {'status', ''} end
if st ~= 'queued' then return {'status', st} end
local q = redis.call('HGET', tk, 'queue')
if not q or q == '' then return {'noqueue'} end
local qk = k('queue', q)
need(qk, 'list')
if redis.call('LREM', qk, 0, ARGV[2]) == 0 then return {'taken'} end
redis.call('HSET', tk, 'status', 'canceled', 'ended_at', ARGV[3])
redis.call('EXPIRE', tk, ARGV[4])
return {'ok'}
"#
);

script!(
    FETCH,
    "Take the head of the first non-empty queue into a slot and start it. \
     KEYS: slot list, slot hash, queue keys. ARGV: prefix, slot, now, score, \
     queue names. Returns nil, {'busy', ids} or {'task', id, fields}.",
    r#"
local list, hash = KEYS[1], KEYS[2]
need(list, 'list')
need(hash, 'hash')
need(k('failed'), 'zset')
for i = 3, #KEYS do need(KEYS[i], 'list') end
local held = redis.call('LRANGE', list, 0, -1)
if #held > 0 then return {'busy', held} end
for i = 3, #KEYS do
  while true do
    local id = redis.call('LMOVE', KEYS[i], list, 'LEFT', 'RIGHT')
    if not id then break end
    local rec = start(list, hash, ARGV[2], id, ARGV[i + 2], ARGV[3], ARGV[4])
    if rec then return rec end
  end
end
return false
"#
);

script!(
    START,
    "Start a task a blocking move put into the slot's list. KEYS: slot list, \
     slot hash. ARGV: prefix, slot, id, now, score, queue. Returns \
     {'task', id, fields}, {'missing'} or nil when the id is not there.",
    r#"
need(KEYS[2], 'hash')
need(k('failed'), 'zset')
if not redis.call('LPOS', KEYS[1], ARGV[3]) then return false end
local rec = start(KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[6], ARGV[4], ARGV[5])
if rec then return rec end
return {'missing'}
"#
);

script!(
    FINISH,
    "Record the end of a run, fenced on the slot's list. KEYS: slot list, \
     slot hash, task, registry. ARGV: prefix, id, status, now, score, error. \
     Returns 1, or 0 when the slot does not hold the id.",
    r#"
need(KEYS[1], 'list')
need(KEYS[2], 'hash')
need(KEYS[3], 'hash')
need(KEYS[4], 'zset')
if redis.call('LREM', KEYS[1], 0, ARGV[2]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'status', ARGV[3], 'ended_at', ARGV[4])
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[3], 'error', ARGV[6])
  else
    redis.call('HDEL', KEYS[3], 'error')
  end
  redis.call('HDEL', KEYS[3], 'worker')
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'state', 'idle', 'current_task', '')
end
return 1
"#
);

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

script!(
    REGISTER_SLOT,
    "Register a slot. KEYS: workers zset, slot hash. ARGV: prefix, slot, \
     score, then field/value pairs.",
    r#"
need(KEYS[1], 'zset')
need(KEYS[2], 'hash')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"#
);

script!(
    HEARTBEAT,
    "Heartbeat slots. KEYS: workers zset. ARGV: prefix, now, score, slots. \
     Returns the slots whose hash is gone (they need registering again).",
    r#"
need(KEYS[1], 'zset')
for i = 4, #ARGV do need(k('worker', ARGV[i]), 'hash') end
local lost = {}
for i = 4, #ARGV do
  local h = k('worker', ARGV[i])
  if redis.call('EXISTS', h) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i])
    redis.call('HSET', h, 'heartbeat_at', ARGV[2])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"#
);

script!(
    DEREGISTER_SLOT,
    "Remove an idle slot. KEYS: slot list, slot hash, workers zset. ARGV: \
     prefix, slot. Returns {'ok'} or {'busy', ids}.",
    r#"
need(KEYS[1], 'list')
need(KEYS[3], 'zset')
local held = redis.call('LRANGE', KEYS[1], 0, -1)
if #held > 0 then return {'busy', held} end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return {'ok'}
"#
);

script!(
    SLOTS_OF_SUPERVISOR,
    "Slots registered by one supervisor. KEYS: workers zset. ARGV: prefix, \
     supervisor id.",
    r#"
need(KEYS[1], 'zset')
local out = {}
for _, slot in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = k('worker', slot)
  if redis.call('TYPE', h).ok == 'hash' and redis.call('HGET', h, 'supervisor') == ARGV[2] then
    out[#out + 1] = slot
  end
end
return out
"#
);

script!(
    TRY_LOCK,
    "Take or extend a lock. KEYS: lock. ARGV: prefix, token, ttl ms. \
     Returns 1 when the caller holds it.",
    r#"
need(KEYS[1], 'string')
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#
);

script!(
    RELEASE_LOCK,
    "Release a lock held by this token. KEYS: lock. ARGV: prefix, token. \
     Returns 1 when released.",
    r#"
need(KEYS[1], 'string')
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#
);

script!(
    REQUEUE_FAILED,
    "Requeue failed tasks. KEYS: failed zset, queues set. ARGV: prefix, ids. \
     Returns id/reason pairs; an empty reason means requeued.",
    r#"
need(KEYS[1], 'zset')
need(KEYS[2], 'set')
local plan = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local tk = k('task', id)
  local why, q = false, false
  if not redis.call('ZSCORE', KEYS[1], id) then
    why = 'not in the failed registry'
  else
    local t = redis.call('TYPE', tk).ok
    if t == 'none' then
      why = 'task record missing'
    elseif t ~= 'hash' then
      why = 'redis key ' .. tk .. ' holds a ' .. t
    else
      local st = redis.call('HGET', tk, 'status')
      q = redis.call('HGET', tk, 'queue')
      if st ~= 'failed' then
        why = 'status is ' .. (st or 'missing') .. ', not failed'
      elseif not q or q == '' then
        why = 'task record names no queue'
      else
        local qt = redis.call('TYPE', k('queue', q)).ok
        if qt ~= 'none' and qt ~= 'list' then
          why = 'redis key ' .. k('queue', q) .. ' holds a ' .. qt
        end
      end
    end
  end
  plan[#plan + 1] = {id, q, why}
end
local out = {}
for _, e in ipairs(plan) do
  local id, q, why = e[1], e[2], e[3]
  if why then
    out[#out + 1] = id
    out[#out + 1] = why
  elseif redis.call('ZREM', KEYS[1], id) == 1 then
    local tk = k('task', id)
    redis.call('HSET', tk, 'status', 'queued')
    redis.call('HDEL', tk, 'error', 'started_at', 'ended_at', 'worker')
    redis.call('RPUSH', k('queue', q), id)
    redis.call('SADD', KEYS[2], q)
    out[#out + 1] = id
    out[#out + 1] = ''
  else
    out[#out + 1] = id
    out[#out + 1] = 'listed twice'
  end
end
return out
"#
);

script!(
    EMPTY_QUEUE,
    "Pop a batch of ids from a queue and delete their records. KEYS: queue. \
     ARGV: prefix, batch. Returns how many were removed.",
    r#"
need(KEYS[1], 'list')
local ids = redis.call('LPOP', KEYS[1], ARGV[2])
if not ids then return 0 end
for _, id in ipairs(ids) do redis.call('DEL', k('task', id)) end
return #ids
"#
);

script!(
    FORGET_QUEUE,
    "Drop a queue name from the set when its list is empty. KEYS: queue, \
     queues set. ARGV: prefix, name. Returns 1 when dropped.",
    r#"
need(KEYS[1], 'list')
need(KEYS[2], 'set')
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
return redis.call('SREM', KEYS[2], ARGV[2])
"#
);

script!(
    TRIM_REGISTRY,
    "Remove a batch of registry entries scored below a bound (all when the \
     bound is +inf) with their records. KEYS: registry. ARGV: prefix, max \
     score (exclusive), batch. Returns how many were removed.",
    r#"
need(KEYS[1], 'zset')
local max = ARGV[2]
if max ~= '+inf' then max = '(' .. max end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', max, 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  redis.call('DEL', k('task', id))
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"#
);

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

/// Helpers of the graph scripts: `genq(...)` enqueues one node of a graph
/// from its stored spec (the caller checked the key types first).
macro_rules! graph_prelude {
    () => {
        r#"
local function gspec(g, name)
  return cjson.decode(redis.call('HGET', g, 'node:' .. name))
end
local function genq(g, name, qset, now)
  local spec = gspec(g, name)
  local id = redis.call('HGET', g, 'id:' .. name)
  redis.call('HSET', k('task', id), 'task', spec.task, 'args', spec.args,
    'status', 'queued', 'queue', spec.queue, 'description', spec.description,
    'enqueued_at', now, 'meta', spec.meta)
  redis.call('RPUSH', k('queue', spec.queue), id)
  redis.call('SADD', qset, spec.queue)
  redis.call('HSET', g, 'state:' .. name, 'queued')
end
local function gneed(g, name)
  local spec = gspec(g, name)
  need(k('task', redis.call('HGET', g, 'id:' .. name)), 'hash')
  need(k('queue', spec.queue), 'list')
end
"#
    };
}

macro_rules! graph_script {
    ($name:ident, $doc:literal, $body:literal) => {
        #[doc = $doc]
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!(prelude!(), graph_prelude!(), $body)));
    };
}

graph_script!(
    GRAPH_ENQUEUE,
    "Store a task graph and enqueue its nodes without predecessors. KEYS: \
     graph hash, queues set, middleware marker. ARGV: prefix, now, ttl secs, \
     then field/value pairs of the graph hash; the roots are the nodes \
     whose `left:` field is 0. Returns {'ok', roots...}, {'exists'} or \
     {'nomiddleware'}.",
    r#"
local g = KEYS[1]
need(g, 'hash')
need(KEYS[2], 'set')
if redis.call('EXISTS', KEYS[3]) == 0 then return {'nomiddleware'} end
if redis.call('EXISTS', g) == 1 then return {'exists'} end
for i = 4, #ARGV, 2 do redis.call('HSET', g, ARGV[i], ARGV[i + 1]) end
local roots = {}
for i = 4, #ARGV, 2 do
  local name = string.match(ARGV[i], '^left:(.*)$')
  if name and ARGV[i + 1] == '0' then roots[#roots + 1] = name end
end
for _, name in ipairs(roots) do gneed(g, name) end
for _, name in ipairs(roots) do genq(g, name, KEYS[2], ARGV[2]) end
redis.call('EXPIRE', g, ARGV[3])
return {'ok', unpack(roots)}
"#
);

graph_script!(
    GRAPH_ADVANCE,
    "Record the end of a graph node and enqueue the dependents whose \
     predecessors have all ended; with the `cancel` failure policy a failed \
     node's waiting descendants are canceled instead. KEYS: graph hash, \
     queues set. ARGV: prefix, node, task id, \
     result (finished/failed), now. Returns {'gone'}, {'stale'}, \
     {'done', state} or {'advanced', status, enqueued..., '', canceled...}.",
    r#"
local g, node, result = KEYS[1], ARGV[2], ARGV[4]
need(g, 'hash')
need(KEYS[2], 'set')
if redis.call('EXISTS', g) == 0 then return {'gone'} end
if redis.call('HGET', g, 'id:' .. node) ~= ARGV[3] then return {'stale'} end
local st = redis.call('HGET', g, 'state:' .. node)
if st ~= 'queued' then return {'done', st or ''} end
local spec = gspec(g, node)
local left, enq, cancel = {}, {}, {}
if result == 'finished' or redis.call('HGET', g, 'on_failure') == 'run' then
  for _, s in ipairs(spec.before) do
    local l = tonumber(redis.call('HGET', g, 'left:' .. s)) - 1
    left[#left + 1] = {s, l}
    if l == 0 and redis.call('HGET', g, 'state:' .. s) == 'waiting' then
      enq[#enq + 1] = s
    end
  end
else
  local stack, seen = {}, {}
  for _, s in ipairs(spec.before) do stack[#stack + 1] = s end
  while #stack > 0 do
    local s = table.remove(stack)
    if not seen[s] then
      seen[s] = true
      if redis.call('HGET', g, 'state:' .. s) == 'waiting' then
        cancel[#cancel + 1] = s
        for _, d in ipairs(gspec(g, s).before) do stack[#stack + 1] = d end
      end
    end
  end
end
for _, s in ipairs(enq) do gneed(g, s) end
redis.call('HSET', g, 'state:' .. node, result, 'ended:' .. node, ARGV[5])
if result == 'failed' then redis.call('HINCRBY', g, 'failed', 1) end
for _, e in ipairs(left) do redis.call('HSET', g, 'left:' .. e[1], e[2]) end
for _, s in ipairs(enq) do genq(g, s, KEYS[2], ARGV[5]) end
for _, s in ipairs(cancel) do
  redis.call('HSET', g, 'state:' .. s, 'canceled', 'ended:' .. s, ARGV[5])
end
local open = redis.call('HINCRBY', g, 'open', -(1 + #cancel))
local status = 'running'
if open <= 0 then
  status = 'finished'
  if tonumber(redis.call('HGET', g, 'failed') or '0') > 0 then status = 'failed' end
  redis.call('HSET', g, 'status', status, 'ended_at', ARGV[5])
end
local ttl = tonumber(redis.call('HGET', g, 'ttl') or '0')
if ttl and ttl > 0 then
  redis.call('EXPIRE', g, ttl)
end
local out = {'advanced', status}
for _, s in ipairs(enq) do out[#out + 1] = s end
out[#out + 1] = ''
for _, s in ipairs(cancel) do out[#out + 1] = s end
return out
"#
);
