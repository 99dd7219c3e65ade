//! Scripts of the operator's actions that the admin command line and the
//! dashboard share beyond those of the producer.

use std::sync::LazyLock;

use redis::Script;

script!(
    DELETE_ENDED,
    "Delete ended tasks: their registry entries and their records, each \
     only while it is in the registry (failed, canceled...). KEYS: registry. ARGV: \
     prefix, ids. Returns how many were deleted (ids not in the registry \
     are left alone).",
    r#"
need(KEYS[1], 'zset')
local n = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', k('task', ARGV[i]))
    n = n + 1
  end
end
return n
"#
);

script!(
    FILTER_LISTING,
    "The ids among a window of a listing (a registry, the delayed set, a \
     queue) whose records match a filter, looked at in a direction and up \
     to a number of matches. KEYS: listing. ARGV: prefix, key type (zset \
     or list), first rank, last rank, direction (asc or desc), most \
     matches, queue, task name, text the error contains, text the error or \
     the description contains, time source ('' none, 'score' the entry's \
     score, else a record field holding an RFC 3339 time), earliest and \
     latest time (numbers for a score, text cut to the second for a field; \
     empty: open). An error or description over 1 MiB is not searched. \
     Returns {entries looked at, id, rank, id, rank...}. Reads only.",
    r#"
need(KEYS[1], ARGV[2])
local lo, hi = tonumber(ARGV[3]), tonumber(ARGV[4])
local desc, most = ARGV[5] == 'desc', tonumber(ARGV[6])
local tsrc, from, to = ARGV[11], ARGV[12], ARGV[13]
local ids, scores = {}, {}
if ARGV[2] == 'list' then
  ids = redis.call('LRANGE', KEYS[1], lo, hi)
else
  local flat = redis.call('ZRANGE', KEYS[1], lo, hi, 'WITHSCORES')
  for i = 1, #flat, 2 do
    ids[#ids + 1] = flat[i]
    scores[#scores + 1] = tonumber(flat[i + 1])
  end
end
local function has(v, text)
  return type(v) == 'string' and string.find(v, text, 1, true) ~= nil
end
-- A text field to search, unless it is too big to load (a raw writer's
-- huge error is not searched rather than copied into the script).
local function text_of(tk, field)
  if redis.call('HSTRLEN', tk, field) > 1048576 then return nil end
  return redis.call('HGET', tk, field)
end
local function in_time(i, f)
  if tsrc == '' then return true end
  if tsrc == 'score' then
    local s = scores[i]
    return s ~= nil and (from == '' or s >= tonumber(from)) and (to == '' or s <= tonumber(to))
  end
  if type(f) ~= 'string' then return false end
  local v = string.sub(f, 1, 19)
  return (from == '' or v >= from) and (to == '' or v <= to)
end
local tfield = (tsrc ~= '' and tsrc ~= 'score') and tsrc or 'queue'
local out = {0}
local looked, found = 0, 0
local first, last, step = 1, #ids, 1
if desc then first, last, step = #ids, 1, -1 end
for i = first, last, step do
  if found >= most then break end
  looked = looked + 1
  local id = ids[i]
  local tk = k('task', id)
  local f = redis.pcall('HMGET', tk, 'queue', 'task', tfield)
  if type(f) == 'table' and not f.err then
    local ok = (ARGV[7] == '' or f[1] == ARGV[7]) and (ARGV[8] == '' or f[2] == ARGV[8])
    if ok then ok = in_time(i, f[3]) end
    if ok and ARGV[9] ~= '' then ok = has(text_of(tk, 'error'), ARGV[9]) end
    if ok and ARGV[10] ~= '' then
      ok = has(text_of(tk, 'error'), ARGV[10]) or has(text_of(tk, 'description'), ARGV[10])
    end
    if ok then
      out[#out + 1] = id
      out[#out + 1] = lo + i - 1
      found = found + 1
    end
  end
end
out[1] = looked
return out
"#
);

script!(
    SET_PROGRESS,
    "Store a running task's progress report (JSON) in its record's \
     `progress` field; a task that is not running (ended, requeued, gone) \
     is left alone. KEYS: task. ARGV: prefix, progress JSON. Returns 1 when \
     stored, else 0.",
    r#"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then
  return 0
end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
"#
);

script!(
    CLIPPED_RECORD,
    "A task record with every field value cut to a size, for pages and \
     listings: a producer's 100 MB argument must not be loaded by the \
     dashboard or the admin command line to show one line. KEYS: task. \
     ARGV: prefix, largest value in bytes, most fields. Returns a flat \
     array of field, value (cut), full size in bytes; an empty array for a \
     missing key; the error RTCLIPPED when the hash has more fields than \
     allowed (RTWRONGTYPE when the key is not a hash).",
    r#"
need(KEYS[1], 'hash')
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local cap = tonumber(ARGV[2])
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[3]) then
  return redis.error_reply('RTCLIPPED the task record has more fields than any of ours')
end
local out = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local n = redis.call('HSTRLEN', KEYS[1], f)
  local v = redis.call('HGET', KEYS[1], f)
  if n > cap then v = string.sub(v, 1, cap) end
  out[#out + 1] = f
  out[#out + 1] = v
  out[#out + 1] = n
end
return out
"#
);

script!(
    CLIPPED_FIELD,
    "One field of a task record cut to a size (the raw value downloaded on \
     its own). KEYS: task. ARGV: prefix, field, largest value in bytes. \
     Returns {} for a missing record, {0} for a missing field, else \
     {1, value (cut), full size in bytes}.",
    r#"
need(KEYS[1], 'hash')
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return {0} end
local n = redis.call('HSTRLEN', KEYS[1], ARGV[2])
local v = redis.call('HGET', KEYS[1], ARGV[2])
local cap = tonumber(ARGV[3])
if n > cap then v = string.sub(v, 1, cap) end
return {1, v, n}
"#
);
