//! Scripts of a task's path through a slot: fetch and start, finish, requeue, reclaim from a dead slot.

use std::sync::LazyLock;

use redis::Script;

script!(
    FETCH,
    "Take the head of the first non-empty queue into a slot and start it. \
     KEYS: slot list, slot hash, queue keys. ARGV: prefix, slot, now, score, \
     five size limits (args, description, meta, result, whole record), \
     queue names. Returns nil, {'busy', ids}, {'task', id, fields, queue} \
     or {'oversize', id, queue, field, size, limit index}.",
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
    local rec = start(list, hash, ARGV[2], id, ARGV[i + 7], ARGV[3], ARGV[4],
      {ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]})
    if rec then return rec end
  end
end
return false
"#
);

script!(
    START,
    "Start a task a blocking move put into the slot's list. KEYS: slot list, \
     slot hash. ARGV: prefix, slot, id, now, score, queue, five size limits \
     (as FETCH). Returns what FETCH does for a task, {'missing'}, or nil \
     when the id is not there.",
    r#"
need(KEYS[2], 'hash')
need(k('failed'), 'zset')
if not redis.call('LPOS', KEYS[1], ARGV[3]) then return false end
local rec = start(KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[6], ARGV[4], ARGV[5],
  {ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]})
if rec then return rec end
return {'missing'}
"#
);

script!(
    FINISH,
    "Record the end of a run, fenced on the slot's list. KEYS: slot list, \
     slot hash, task, registry. ARGV: prefix, id, status, now, score, error, \
     result (JSON text, empty for none; optional), ttl of the done key \
     (optional). Returns 1, or 0 when the slot does not hold the id.",
    r#"
need(KEYS[1], 'list')
need(KEYS[2], 'hash')
need(KEYS[3], 'hash')
need(KEYS[4], 'zset')
if redis.call('LREM', KEYS[1], 0, ARGV[2]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then
  -- A task that was retried keeps every attempt: add the last one.
  local past = redis.call('HGET', KEYS[3], 'attempts')
  if past and string.match(past, '^%s*%[.*%]%s*$') then
    local started = redis.call('HGET', KEYS[3], 'started_at')
    if not started or started == '' then started = cjson.null end
    local err = cjson.null
    if ARGV[6] ~= '' then err = ARGV[6] end
    local item = cjson.encode({started_at = started, ended_at = ARGV[4], status = ARGV[3],
      error = err, next_attempt_at = cjson.null})
    past = string.match(past, '^%s*(.-)%s*$')
    if string.match(past, '^%[%s*%]$') then past = '[' .. item .. ']'
    else past = string.sub(past, 1, -2) .. ',' .. item .. ']' end
    redis.call('HSET', KEYS[3], 'attempts', past)
  end
  redis.call('HSET', KEYS[3], 'status', ARGV[3], 'ended_at', ARGV[4])
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[3], 'error', ARGV[6])
  else
    redis.call('HDEL', KEYS[3], 'error')
  end
  if ARGV[7] and ARGV[7] ~= '' then
    redis.call('HSET', KEYS[3], 'result', ARGV[7])
  else
    redis.call('HDEL', KEYS[3], 'result')
  end
  redis.call('HDEL', KEYS[3], 'worker')
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
  ended(KEYS[3], ARGV[2], ARGV[3], ARGV[8] or 604800)
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
