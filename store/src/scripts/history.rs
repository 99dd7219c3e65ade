//! The Lua that keeps the per-minute history of endings (docs/redis-schema.md, "History").

/// `tally(q, status, now_s, started, enqueued, attempts)`: counts one
/// ending of queue `q`'s task (`status`: finished, failed, retried or
/// canceled; others are not counted) at `now_s` (unix seconds, the
/// caller's clock), with its run time (from `started`, the record's
/// `started_at`) and queue wait (from the due time of its retry, the last
/// `next_attempt_at` in `attempts`, else `enqueued`) in log-scale buckets:
/// ONE `HINCRBY` into `P:history:<q>:<unix hour>`, field
/// `<minute>:<kind>:<run>:<wait>`, and an `EXPIREAT` only when that made a
/// new field. Written under `pcall`: a key of the wrong type loses the
/// count, never the ending.
/// `tally_of(tk, status, now_s)` reads those fields from record `tk` first
/// (one `HMGET`), for the ends off the hot path. The busy slot's finish
/// gets its field worked out by the caller instead (history.rs's `Tally`:
/// parsing two times and bucketing them cost about 10 µs of Redis time)
/// and only adds it: `count(key, field, expire_at)`.
macro_rules! history_lua {
    () => {
        r#"
-- One more in field `field` of history hash `key`, which expires at
-- `at` (set when the field is new).
local function count(key, field, at)
  if redis.pcall('HINCRBY', key, field, '1') == 1 then redis.pcall('EXPIREAT', key, at) end
end
local HISTORY
-- The helpers of `tally`, built by its first call in a script call.
local function history_lib()
  if HISTORY then return HISTORY end
  local h = {kinds = {finished = 'f', failed = 'x', retried = 'r', canceled = 'c'}}
  -- Bucket 0: under 1 ms (or not a number); bucket b >= 1: [2^((b-1)/2),
  -- 2^(b/2)) ms, up to 63 (about 35 days and more).
  function h.bucket(s)
    if not s or s ~= s or s < 0.001 then return 0 end
    return math.min(63, math.floor(2 * math.log(s * 1000) / math.log(2)) + 1)
  end
  -- When a run's wait began: the due time of its retry (the last
  -- `next_attempt_at` in `attempts`, as `attempt` encodes it), else
  -- `enqueued`. Plain finds only: a hostile field costs linear time.
  function h.wait_from(enqueued, attempts)
    if type(attempts) ~= 'string' then return enqueued end
    local key, at, from = '"next_attempt_at":"', nil, 1
    while true do
      local i = string.find(attempts, key, from, true)
      if not i then break end
      at, from = i + #key, i + 1
    end
    local due = at and string.match(string.sub(attempts, at, at + 40), '^([^"]*)"')
    return due or enqueued
  end
  HISTORY = h
  return h
end
local function tally(q, status, now_s, started, enqueued, attempts)
  local h = history_lib()
  local kind, t = h.kinds[status], tonumber(now_s)
  if not kind or not t or not (t > 0 and t < 1e11) or type(q) ~= 'string' or q == '' then
    return
  end
  local run, wait = '-', '-'
  if type(started) == 'string' then
    local s, w = epoch(started), epoch(h.wait_from(enqueued, attempts))
    run, wait = 0, 0
    if s then run = h.bucket(t - s) end
    if s and w then wait = h.bucket(s - w) end
  end
  local hour = math.floor(t / 3600)
  local field = (math.floor(t / 60) % 60) .. ':' .. kind .. ':' .. run .. ':' .. wait
  -- 76: history.rs's KEEP_HOURS.
  count(k('history', q, hour), field, (hour + 76) * 3600)
end
local function tally_of(tk, status, now_s)
  local f = redis.pcall('HMGET', tk, 'queue', 'started_at', 'enqueued_at', 'attempts')
  if type(f) ~= 'table' or f.err then return end
  tally(f[1], status, now_s, f[2], f[3], f[4])
end
"#
    };
}
