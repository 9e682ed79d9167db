-- ack.lua: the tasks succeeded: remove them (go-worker's ack, batched and fenced), storing their outcomes.
--
-- KEYS[1]  P:queues         SET   not written; routes the call to the deployment's slot
-- ARGV[1]  "P:"             key prefix; task, processing and result keys are built from it (same slot)
-- ARGV[2]  request id       unique per call: P:ack:<request> keeps this call's result for 60 s, and a call
--                           re-sent with the same id (the client retried after a lost reply) returns it unchanged
--                           (and stores no outcome a second time)
-- ARGV[3]  recent bound     ids kept per queue in P:recent:<queue>
-- ARGV[4..] per lease, 6 values: id, queue, fencing token, attempts, outcome (JSON; "" = store none), ttl ms
-- Touches: P:processing:<queue> (ZREM), P:task:<id> (DEL), P:ack:<request>; with an outcome also
-- P:result:<id> (SET PX), P:recent:<queue> (LPUSH, LTRIM, PEXPIRE when that
-- lengthens its life: it outlives every outcome it lists) and the channel P:done:<id> (SPUBLISH, or
-- PUBLISH on a server without sharded pub/sub).
-- A lease is honoured only while its id is in the processing set and the hash still carries its token and
-- attempts (a redelivery, by us or by go-worker, changes attempts; ours also changes the token).
-- Returns one integer per lease: 1 acked, 0 lease lost (nothing changed, nothing stored).
local p = ARGV[1]
local request_key = p .. 'ack:' .. ARGV[2]
local earlier = redis.call('GET', request_key)
if earlier then
  local out = {}
  for j = 1, #earlier do out[j] = tonumber(earlier:sub(j, j)) end
  return out
end
local bound = tonumber(ARGV[3])
local out = {}
local acked = 0
for i = 4, #ARGV, 6 do
  local id = ARGV[i]
  local queue = ARGV[i + 1]
  local pk = p .. 'processing:' .. queue
  local tk = p .. 'task:' .. id
  local ok = 0
  if redis.call('ZSCORE', pk, id) then
    local f = redis.call('HMGET', tk, 'lease_token', 'attempts')
    if f[1] == ARGV[i + 2] and f[2] == ARGV[i + 3] then
      redis.call('ZREM', pk, id)
      redis.call('DEL', tk)
      ok = 1
      acked = acked + 1
      local outcome = ARGV[i + 4]
      if outcome ~= '' then
        local ttl = ARGV[i + 5]
        local rk = p .. 'recent:' .. queue
        redis.call('SET', p .. 'result:' .. id, outcome, 'PX', ttl)
        if type(redis.pcall('LPUSH', rk, id)) ~= 'table' then  -- a foreign value there: stored, not listed
          redis.call('LTRIM', rk, 0, bound - 1)
          if redis.call('PTTL', rk) < tonumber(ttl) then redis.call('PEXPIRE', rk, ttl) end
        end
        local sent = redis.pcall('SPUBLISH', p .. 'done:' .. id, outcome)
        if type(sent) == 'table' and sent.err then redis.call('PUBLISH', p .. 'done:' .. id, outcome) end
      end
    end
  end
  out[#out + 1] = ok
end
-- (a call that acked nothing changed nothing: run again, it answers the same)
if acked > 0 then redis.call('SET', request_key, table.concat(out), 'PX', 60000) end
return out
