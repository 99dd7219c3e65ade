//! Scripts of task graphs: storing a graph, and moving it on as its nodes end.

use std::sync::LazyLock;

use redis::Script;

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
local G = graph()
for _, name in ipairs(roots) do G.gneed(g, name) end
for _, name in ipairs(roots) do G.genq(g, name, KEYS[2], ARGV[2]) end
redis.call('EXPIRE', g, ARGV[3])
return {'ok', unpack(roots)}
"#
);

graph_script!(
    GRAPH_ADVANCE,
    "Record the end of a graph node and enqueue the dependents whose \
     predecessors have all ended; with the `cancel` failure policy a failed \
     node's waiting descendants are canceled instead (fan-in nodes count \
     it as ended). The scripts that record a task's final end do the same \
     in the same step; this one is for a node ended outside them. KEYS: \
     graph hash, queues set. ARGV: prefix, node, task id, result \
     (finished/failed/canceled), now. Returns {'gone'}, {'stale'}, {'done', \
     state} or {'advanced', status, enqueued..., '', canceled...}.",
    r#"
need(KEYS[2], 'set')
local G = graph()
local plan, why = G.gplan(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
if not plan then
  if why == 'gone' or why == 'stale' then return {why} end
  return {'done', why}
end
local status = G.gapply(KEYS[1], ARGV[2], plan, ARGV[4], KEYS[2], ARGV[5])
local out = {'advanced', status}
for _, s in ipairs(plan.enq) do out[#out + 1] = s end
out[#out + 1] = ''
for _, s in ipairs(plan.cancel) do out[#out + 1] = s end
return out
"#
);
