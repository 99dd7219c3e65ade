//! Scripts of slot registration, heartbeats and fleet-wide locks.

use std::sync::LazyLock;

use redis::Script;

script!(
    REGISTER_SLOT,
    "Register a slot. KEYS: workers zset, slot hash. ARGV: prefix, slot, \
     score, then field/value pairs.",
    r#"
need(KEYS[1], 'zset')
need(KEYS[2], 'hash')
claim(true)
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
    BURY_SLOT,
    "Remove a recovered dead slot from the live ones but keep its hash, \
     marked dead, for a while. KEYS: slot list, slot hash, workers zset, \
     dead workers zset. ARGV: prefix, slot, now, score, ttl seconds. \
     Returns {'ok'} or {'busy', ids}.",
    r#"
need(KEYS[1], 'list')
need(KEYS[2], 'hash')
need(KEYS[3], 'zset')
need(KEYS[4], 'zset')
local held = redis.call('LRANGE', KEYS[1], 0, -1)
if #held > 0 then return {'busy', held} end
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'state', 'dead', 'died_at', ARGV[3])
  redis.call('HDEL', KEYS[2], 'current_task')
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
end
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
