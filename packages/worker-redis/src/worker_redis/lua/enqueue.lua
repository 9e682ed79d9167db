-- enqueue.lua: persist one or more tasks exactly as go-worker's enqueue script does (README: "Key layout").
--
-- KEYS[1]  P:queues         SET   known queue names (also routes the call to the deployment's slot)
-- KEYS[2]  P:wake           LIST  wake-up tokens for idle workers (ours, additive)
-- ARGV[1]  "P:"             key prefix; task and ready keys are built from it (same hash tag, same slot)
-- ARGV[2]  now_ms           updated_at_ms
-- ARGV[3]  wake cap         the wake list is trimmed to this many tokens
-- ARGV[4]  request id       unique per call: P:enqueue:<request> keeps this call's result for 60 s, and a call
--                           re-sent with the same id (the client retried after a lost reply) returns it unchanged
-- ARGV[5..] per task, 11 values: id, queue, ready_at_ms, handler, payload, priority, retries,
--           retry_delay_ms, metadata (JSON object or ""), weight, idempotency key ("" when none; ours)
-- Touches: P:task:<id> (HSET), P:ready:<queue> (ZADD), queues (SADD), wake (LPUSH + LTRIM), P:enqueue:<request>,
--          P:idem:<key> (GET, SET PX: the id of the task that took the key; ours).
-- A task whose hash already exists is left alone (go-worker: ErrDurableTaskAlreadyExists). So is a task whose
-- idempotency key names a live task: one in its queue's ready or processing set (dead, acked and deleted
-- tasks free their key). A key is remembered until 24 h after its task's ready time (then it is free again).
-- Returns one integer per task: 1 enqueued, 0 duplicate (its id, or a live task's idempotency key).
local p = ARGV[1]
local touched = {}
local now = ARGV[2]
local request_key = p .. 'enqueue:' .. ARGV[4]
local earlier = redis.call('GET', request_key)
if earlier then
  local out = {}
  for j = 1, #earlier do out[j] = tonumber(earlier:sub(j, j)) end
  return out
end
local out = {}
local added = 0
local function key_held(ik)
  local holder = redis.call('GET', ik)
  if not holder then return false end
  local hq = redis.pcall('HGET', p .. 'task:' .. holder, 'queue')
  if type(hq) ~= 'string' then return false end
  return redis.call('ZSCORE', p .. 'ready:' .. hq, holder) ~= false
    or redis.call('ZSCORE', p .. 'processing:' .. hq, holder) ~= false
end
for i = 5, #ARGV, 11 do
  local id = ARGV[i]
  local tk = p .. 'task:' .. id
  local key = ARGV[i + 10]
  local ik = key ~= '' and (p .. 'idem:' .. key) or nil
  if redis.call('EXISTS', tk) == 1 or (ik and key_held(ik)) then
    out[#out + 1] = 0
  else
    local q = ARGV[i + 1]
    redis.call('HSET', tk,
      'handler', ARGV[i + 3], 'payload', ARGV[i + 4], 'priority', ARGV[i + 5], 'queue', q,
      'weight', ARGV[i + 9], 'retries', ARGV[i + 6], 'retry_delay_ms', ARGV[i + 7], 'attempts', 0,
      'ready_at_ms', ARGV[i + 2], 'updated_at_ms', now, 'metadata', ARGV[i + 8])
    if ik then
      redis.call('HSET', tk, 'idempotency_key', key)
      redis.call('SET', ik, id, 'PX', math.max(tonumber(ARGV[i + 2]) - tonumber(now), 0) + 86400000)
    end
    if not touched[q] then  -- once per queue per call
      touched[q] = true
      redis.call('SADD', KEYS[1], q)
      redis.pcall('HDEL', KEYS[1] .. ':idle', q)  -- the queue has a task again: not idle
    end
    redis.call('ZADD', p .. 'ready:' .. q, ARGV[i + 2], id)
    out[#out + 1] = 1
    added = added + 1
  end
end
if added > 0 then
  -- One token per task, so that as many idle workers wake as there is work; capped.
  local cap = tonumber(ARGV[3])
  local n = math.min(added, cap)
  local tokens = {}
  for j = 1, n do tokens[j] = '1' end
  redis.pcall('LPUSH', KEYS[2], unpack(tokens))
  redis.pcall('LTRIM', KEYS[2], 0, cap - 1)
  -- (a call that stored nothing changed nothing: run again, it answers the same)
  redis.call('SET', request_key, table.concat(out), 'PX', 60000)
end
return out
