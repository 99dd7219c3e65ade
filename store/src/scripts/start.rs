//! The Lua that starts a task a slot just took: the common case inline,
//! the rare ones (missing, foreign, large or expired records) built on
//! first use.

/// `start(...)` marks a task that was just moved into a slot's list as
/// running and returns its fields, the queue it came from, or why it is too
/// large to load (`oversize`). It first ends a task whose `expires_at` has
/// passed (Redis's clock) as `expired` instead (noted in `EXPIRED` for the
/// script's reply, see `with_expired`).
///
/// Every `local function` a script defines costs Redis time on every call
/// of the script, used or not (about 0.3 µs each). So the helpers of the
/// rare cases live in one table that `slow()` builds the first time a
/// call needs it: a fetch of a small record of ours defines three
/// functions here, not nine.
macro_rules! start_lua {
    () => {
        r#"
-- Tasks this script call ended as expired, {id, queue, fields} each, for
-- its reply (`with_expired`); DONE_TTL: how long their done keys live
-- (set by the scripts that start tasks).
local EXPIRED, DONE_TTL = {}, 604800
-- The smallest of the size limits (lim: limits of args, description,
-- meta, result, and of the whole record, in bytes): a record that takes
-- less memory than that is under every limit.
local function least(lim)
  return math.min(tonumber(lim[1]), tonumber(lim[2]), tonumber(lim[3]), tonumber(lim[4]),
    tonumber(lim[5]))
end
local SLOW
-- The helpers of a start's rare cases, built once per script call.
local function slow()
  if SLOW then return SLOW end
  local s = {}
  -- A failed record in place of the missing record of task id.
  local function bury(id, q, now, score)
    redis.call('HSET', k('task', id), 'task', '(missing)', 'args', 'null',
      'status', 'failed', 'queue', q, 'description', '(task record missing)',
      'enqueued_at', now, 'ended_at', now, 'error', 'task record missing')
    redis.call('ZADD', k('failed'), score, id)
  end
  -- The first of a record's large fields over its limit, as {field,
  -- size, limit index}, or false. The sizes are read without loading any
  -- value.
  local function oversize(tk, lim)
    local used = redis.call('MEMORY', 'USAGE', tk, 'SAMPLES', 0)
    if not used or used <= least(lim) then return false end
    for i, f in ipairs({'args', 'description', 'meta', 'result'}) do
      local n = redis.call('HSTRLEN', tk, f)
      if n > tonumber(lim[i]) then return {f, n, i} end
    end
    if used and used > tonumber(lim[5]) then return {'(whole record)', used, 5} end
    return false
  end
  -- Aborts when registry key rk holds another type than a zset, after
  -- handing id (just moved into the slot's list from queue q) back to the
  -- front of its queue: bad data changes nothing.
  local function registry_or_hand_back(rk, list, id, q)
    local t = redis.call('TYPE', rk).ok
    if t ~= 'none' and t ~= 'zset' then
      redis.call('LREM', list, 0, id)
      redis.call('LPUSH', k('queue', q), id)
      error({err = 'RTWRONGTYPE ' .. rk .. ' ' .. t .. ' zset'})
    end
  end
  -- Redis's clock in seconds; the caller's (`score`) when the ACL user
  -- may not call TIME.
  local function clock_s(score)
    local t = redis.pcall('TIME')
    if type(t) ~= 'table' or t.err then return tonumber(score) end
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  -- Task id (record tk, just moved into the slot's list from queue q)
  -- with expiry `at`: when that has passed, the task leaves the slot's
  -- list and ends `expired` (the registry P:expired, its uniqueness key
  -- freed, its waiters woken), is noted in EXPIRED with its fields
  -- (`out`, as `start` read them, or the small ones read here: a note
  -- without `args` reads as unreadable), and true is returned. An expiry
  -- that does not read as a time is left to the record's reader to
  -- report.
  function s.expire_due(list, tk, id, q, at, now, score, out)
    local due = epoch(at)
    if not due or clock_s(score) < due then return false end
    local ek = k('expired')
    registry_or_hand_back(ek, list, id, q)
    redis.call('LREM', list, 0, id)
    redis.call('HSET', tk, 'status', 'expired', 'ended_at', now)
    redis.call('HDEL', tk, 'worker', 'started_at')
    redis.call('ZADD', ek, score, id)
    ended(tk, id, 'expired', DONE_TTL)
    if not out then
      -- A record over the size limits: its small fields only (never the
      -- large ones, which the limits keep out of memory).
      out = {}
      local names = {'task', 'queue', 'enqueued_at', 'expires_at', 'unique', 'timeout',
        'retry', 'run_at', 'error', 'attempts', 'aborted_runs'}
      local f = redis.call('HMGET', tk, unpack(names))
      for i, name in ipairs(names) do
        if f[i] then out[#out + 1] = name; out[#out + 1] = f[i] end
      end
    end
    out[#out + 1] = 'status'; out[#out + 1] = 'expired'
    out[#out + 1] = 'ended_at'; out[#out + 1] = now
    EXPIRED[#EXPIRED + 1] = {id, q, out}
    return true
  end
  -- Marks id, just moved into the slot's list, as running, as `start`
  -- does, looking at each case in turn. Key types are checked where a
  -- command can meet them, not up front: HEXISTS tells a record of ours
  -- in one command, and the failed registry is checked on the rare path
  -- that writes it (the id then goes back to its queue).
  function s.start_checked(list, hash, registered, slot, id, q, now, score, lim)
    local tk = k('task', id)
    if redis.pcall('HEXISTS', tk, 'task') ~= 1 then
      local t = redis.call('TYPE', tk).ok
      if t == 'hash' then
        redis.call('LREM', list, 0, id)
        redis.call('LPUSH', k('queue', q), id)
        return {'foreign', id, q}
      end
      local fk = k('failed')
      registry_or_hand_back(fk, list, id, q)
      redis.call('LREM', list, 0, id)
      if t == 'none' then
        bury(id, q, now, score)
      else
        redis.call('ZADD', fk, score, id)
      end
      return false
    end
    local expires = redis.call('HGET', tk, 'expires_at')
    if expires and s.expire_due(list, tk, id, q, expires, now, score, nil) then return false end
    redis.call('HSET', tk, 'status', 'running', 'started_at', now, 'worker', slot)
    redis.call('HDEL', tk, 'ended_at')
    if registered then
      redis.call('HSET', hash, 'state', 'busy', 'current_task', id)
    end
    local big = oversize(tk, lim)
    if big then return {'oversize', id, q, big[1], big[2], big[3]} end
    return {'task', id, redis.call('HGETALL', tk), q}
  end
  SLOW = s
  return s
end
-- Marks id, just moved into the slot's list from queue q, as running.
-- `registered`: whether the slot's hash exists (read by the caller before
-- any write, so a slot hash of the wrong type aborts with nothing
-- changed). The common case (a record of ours smaller than every limit,
-- not expired) costs four commands: its size, its fields, the writes of
-- the record and the slot's hash; anything else takes
-- `slow().start_checked`.
local function start(list, hash, registered, slot, id, q, now, score, lim)
  local tk = k('task', id)
  local used = redis.call('MEMORY', 'USAGE', tk, 'SAMPLES', 0)
  if used and used <= least(lim) then
    local f = redis.pcall('HGETALL', tk)
    if not f.err then
      local out, ours, ended, expires = {}, false, false, false
      for i = 1, #f, 2 do
        local name = f[i]
        if name == 'task' then ours = true end
        if name == 'expires_at' then expires = f[i + 1] end
        if name == 'ended_at' then ended = true
        elseif name ~= 'status' and name ~= 'started_at' and name ~= 'worker' then
          out[#out + 1] = name
          out[#out + 1] = f[i + 1]
        end
      end
      if ours and expires and slow().expire_due(list, tk, id, q, expires, now, score, out) then
        return false
      end
      if ours then
        redis.call('HSET', tk, 'status', 'running', 'started_at', now, 'worker', slot)
        if ended then redis.call('HDEL', tk, 'ended_at') end
        if registered then
          redis.call('HSET', hash, 'state', 'busy', 'current_task', id)
        end
        out[#out + 1] = 'status'; out[#out + 1] = 'running'
        out[#out + 1] = 'started_at'; out[#out + 1] = now
        out[#out + 1] = 'worker'; out[#out + 1] = slot
        return {'task', id, out, q}
      end
    end
  end
  return slow().start_checked(list, hash, registered, slot, id, q, now, score, lim)
end
-- A script's reply `rec`, with the tasks it expired when there are any:
-- {'expired', {{id, queue, fields}...}, rec}.
local function with_expired(rec)
  if #EXPIRED == 0 then return rec end
  return {'expired', EXPIRED, rec}
end
"#
    };
}
