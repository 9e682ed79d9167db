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
-- Touches: P:processing:<queue> (ZADD XX), P:task:<id> (HSET lease_at_ms, updated_at_ms), P:nodes, P:node:<id>.
-- Safe to run twice: it only sets expiries.
-- Returns one integer per lease: 1 renewed, 0 lost (not in processing, or another token/attempts: unchanged).
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
if node ~= '' then
  local ttl = tonumber(ARGV[5])
  redis.call('ZADD', p .. 'nodes', tonumber(now) + ttl, node)
  local nk = p .. 'node:' .. node
  if ARGV[6] ~= '' then redis.call('HSET', nk, 'info', ARGV[6]) end
  redis.call('HSET', nk, 'last_seen_ms', now, 'leases', #out)
  redis.call('PEXPIRE', nk, ttl)
end
return out
