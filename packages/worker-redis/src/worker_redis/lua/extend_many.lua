-- extend_many.lua: renew every lease a node holds in one call (ours; go-worker extends one lease per call).
--
-- KEYS[1]  P:queues         SET   not written; routes the call to the deployment's slot
-- ARGV[1]  "P:"             key prefix; task and processing keys are built from it (same slot)
-- ARGV[2]  now_ms           updated_at_ms
-- ARGV[3]  lease_at_ms      the new expiry of every lease
-- ARGV[4]  node             "" or a node id: its heartbeat (P:nodes, P:node:<id>) is refreshed in the same call
-- ARGV[5]  node ttl ms      how long the node's record lives without another heartbeat
-- ARGV[6]  node fields      "" or a JSON object of the node's description (written when not ""), running count
-- ARGV[7..] per lease, 4 values: id, queue, fencing token, attempts
-- Touches: P:processing:<queue> (ZADD), P:task:<id> (HSET lease_at_ms, updated_at_ms), P:nodes, P:node:<id>;
--          with a node, reads P:queues and each queue's P:ready:<q> (at most 100 queues) for the backlog.
-- Safe to run twice: it only sets expiries.
-- Returns {renewed, backlog}: renewed has one integer per lease, 1 renewed or 0 lost (not in processing, or
-- another token/attempts: unchanged); backlog is, with a node, a flat list of queue, due ready count, oldest
-- due ready-at ms (-1: none) (nodes whose heartbeat expired are dropped from P:nodes on the way).
local p = ARGV[1]
local now = ARGV[2]
local until_ms = ARGV[3]
local out = {}
for i = 7, #ARGV, 4 do
  local id = ARGV[i]
  local pk = p .. 'processing:' .. ARGV[i + 1]
  local tk = p .. 'task:' .. id
  local ok = 0
  if redis.call('ZSCORE', pk, id) then
    local f = redis.pcall('HMGET', tk, 'lease_token', 'attempts')
    if not f.err and f[1] == ARGV[i + 2] and f[2] == ARGV[i + 3] then
      redis.call('ZADD', pk, until_ms, id)
      redis.call('HSET', tk, 'lease_at_ms', until_ms, 'updated_at_ms', now)
      ok = 1
    end
  end
  out[#out + 1] = ok
end
local node = ARGV[4]
local backlog = {}
if node ~= '' then
  local ttl = tonumber(ARGV[5])
  local t = tonumber(now)
  -- The heartbeat is best effort: a foreign value at P:nodes or at the node's key must never fail the renewal
  -- above (already written), which the caller would take for lost leases.
  if type(redis.pcall('ZREMRANGEBYSCORE', p .. 'nodes', '-inf', t)) ~= 'table' then
    redis.call('ZADD', p .. 'nodes', t + ttl, node)
  end
  local nk = p .. 'node:' .. node
  if type(redis.pcall('HSET', nk, 'last_seen_ms', now, 'leases', #out)) ~= 'table' then
    if ARGV[6] ~= '' then redis.call('HSET', nk, 'info', ARGV[6]) end
    redis.call('PEXPIRE', nk, ttl)
  end
  if redis.call('SCARD', p .. 'queues') <= 100 then
    for _, q in ipairs(redis.call('SMEMBERS', p .. 'queues')) do
      local rk = p .. 'ready:' .. q
      local due = redis.pcall('ZCOUNT', rk, '-inf', t)
      if type(due) == 'number' then
        local first = redis.call('ZRANGEBYSCORE', rk, '-inf', t, 'WITHSCORES', 'LIMIT', 0, 1)
        backlog[#backlog + 1] = q
        backlog[#backlog + 1] = due
        backlog[#backlog + 1] = first[2] and tonumber(first[2]) or -1
      end
    end
  end
end
return {out, backlog}
