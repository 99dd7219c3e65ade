//! Scripts of task graphs: storing a graph, and moving it on as its nodes end.

use std::sync::LazyLock;

use redis::Script;

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
claim(true)
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
