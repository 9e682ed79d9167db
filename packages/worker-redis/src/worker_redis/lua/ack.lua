-- ack.lua: the tasks succeeded: remove them (go-worker's ack, batched and fenced).
--
-- KEYS[1]  P:queues         SET   not written; routes the call to the deployment's slot
-- ARGV[1]  "P:"             key prefix; task and processing keys are built from it (same slot)
-- ARGV[2]  request id       unique per call: P:ack:<request> keeps this call's result for 60 s, and a call
--                           re-sent with the same id (the client retried after a lost reply) returns it unchanged
-- ARGV[3..] per lease, 4 values: id, queue, fencing token, attempts
-- Touches: P:processing:<queue> (ZREM), P:task:<id> (DEL), P:ack:<request>.
-- A lease is honoured only while its id is in the processing set and the hash still carries its token and
-- attempts (a redelivery, by us or by go-worker, changes attempts; ours also changes the token).
-- Returns one integer per lease: 1 acked, 0 lease lost (nothing changed).
local p = ARGV[1]
local request_key = p .. 'ack:' .. ARGV[2]
local earlier = redis.call('GET', request_key)
if earlier then
  local out = {}
  for j = 1, #earlier do out[j] = tonumber(earlier:sub(j, j)) end
  return out
end
local out = {}
local acked = 0
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  local pk = p .. 'processing:' .. ARGV[i + 1]
  local tk = p .. 'task:' .. id
  local ok = 0
  if redis.call('ZSCORE', pk, id) then
    local f = redis.call('HMGET', tk, 'lease_token', 'attempts')
    if f[1] == ARGV[i + 2] and f[2] == ARGV[i + 3] then
      redis.call('ZREM', pk, id)
      redis.call('DEL', tk)
      ok = 1
      acked = acked + 1
    end
  end
  out[#out + 1] = ok
end
-- (a call that acked nothing changed nothing: run again, it answers the same)
if acked > 0 then redis.call('SET', request_key, table.concat(out), 'PX', 60000) end
return out
