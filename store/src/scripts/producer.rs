//! Scripts of the producer side: enqueue, cancel, emptying queues and registries, requeueing failed tasks.

use std::sync::LazyLock;

use redis::Script;

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
claim(true)
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
poke()
return n
"#
);

graph_script!(
    CANCEL,
    "Cancel a queued task still in its queue (or held back by its function's \
     limit), and enter it in the canceled registry. KEYS: task. ARGV: \
     prefix, id, ended_at, ttl, ended_at as a score. Returns {'ok'}, \
     {'missing'}, {'status', s}, {'noqueue'} or {'taken'}.",
    r#"
local tk = KEYS[1]
need(tk, 'hash')
need(k('canceled'), 'zset')
local st = redis.call('HGET', tk, 'status')
if redis.call('EXISTS', tk) == 0 then return {'missing'} end
if not st then return {'status', ''} end
if st ~= 'queued' then return {'status', st} end
local q = redis.call('HGET', tk, 'queue')
if not q or q == '' then return {'noqueue'} end
local qk = k('queue', q)
need(qk, 'list')
-- A task its function's limit holds back waits out of its queue.
local fn = redis.call('HGET', tk, 'task')
local hk = k('task_held', fn or '')
if not redis.call('LPOS', qk, ARGV[2]) then
  if not (fn and is(hk, 'list') and redis.call('LPOS', hk, ARGV[2])) then return {'taken'} end
  qk = hk
end
local gf = redis.call('HMGET', tk, 'graph', 'graph_node')
local gp = gplan_of(gf[1], gf[2], ARGV[2], 'canceled')
redis.call('LREM', qk, 0, ARGV[2])
tally_of(tk, 'canceled', ARGV[5])
redis.call('HSET', tk, 'status', 'canceled', 'ended_at', ARGV[3])
redis.call('EXPIRE', tk, ARGV[4])
redis.call('ZADD', k('canceled'), ARGV[5], ARGV[2])
ended(tk, ARGV[2], 'canceled', ARGV[4])
gapply_of(gp, ARGV[3])
return {'ok'}
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
    redis.call('HDEL', tk, 'error', 'started_at', 'ended_at', 'worker', 'result')
    if is(k('done', id), 'list') then redis.call('DEL', k('done', id)) end
    redis.call('RPUSH', k('queue', q), id)
    redis.call('SADD', KEYS[2], q)
    out[#out + 1] = id
    out[#out + 1] = ''
  else
    out[#out + 1] = id
    out[#out + 1] = 'listed twice'
  end
end
poke()
return out
"#
);

script!(
    EMPTY_QUEUE,
    "Pop a batch of ids from a queue and delete their records. KEYS: queue. \
     ARGV: prefix, batch. Returns how many were removed.",
    r#"
need(KEYS[1], 'list')
claim(true)
local ids = redis.call('LPOP', KEYS[1], ARGV[2])
if not ids then return 0 end
for _, id in ipairs(ids) do
  if is(k('task', id), 'hash') then free_unique(k('task', id), id) end
  redis.call('DEL', k('task', id))
end
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
