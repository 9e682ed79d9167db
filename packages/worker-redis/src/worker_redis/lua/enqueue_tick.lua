-- enqueue_tick.lua: enqueue one schedule tick's task exactly once, whichever nodes fire the tick (ours).
--
-- KEYS[1]  P:queues         SET   known queue names (also routes the call to the deployment's slot)
-- KEYS[2]  P:wake           LIST  wake-up tokens for idle workers
-- ARGV[1]  "P:"             key prefix; every other key is built from it (same hash tag, same slot)
-- ARGV[2]  now_ms           updated_at_ms
-- ARGV[3]  wake cap         the wake list is trimmed to this many tokens
-- ARGV[4]  schedule name
-- ARGV[5]  tick_ms          the tick (epoch ms) this task is for
-- ARGV[6]  marker TTL ms
-- ARGV[7]  event JSON       pushed on the schedule's event list when the task is stored
-- ARGV[8]  event limit      the event list is trimmed to this many
-- ARGV[9]  task id           ARGV[10] queue             ARGV[11] ready_at_ms
-- ARGV[12] handler           ARGV[13] payload           ARGV[14] priority
-- ARGV[15] retries           ARGV[16] retry_delay_ms    ARGV[17] metadata (JSON object or "")
-- ARGV[18] weight            (the 10 values enqueue.lua takes per task, in its order)
-- Touches: P:schedule:paused (SISMEMBER), P:schedule:tick:<name>:<tick_ms> (SET PX), P:task:<id> (HSET),
--          P:ready:<queue> (ZADD), queues (SADD), wake (LPUSH + LTRIM), P:schedule:last (HSET),
--          P:admin:schedule_events:<name> (LPUSH + LTRIM).
-- Returns 1 enqueued, 0 duplicate (the tick's marker or the task exists), 2 paused.
local p = ARGV[1]
local name = ARGV[4]
if redis.call('SISMEMBER', p .. 'schedule:paused', name) == 1 then
  return 2
end
local marker = p .. 'schedule:tick:' .. name .. ':' .. ARGV[5]
local id = ARGV[9]
local tk = p .. 'task:' .. id
if redis.call('EXISTS', marker) == 1 or redis.call('EXISTS', tk) == 1 then
  return 0
end
redis.call('SET', marker, id, 'PX', ARGV[6])
local q = ARGV[10]
redis.call('HSET', tk,
  'handler', ARGV[12], 'payload', ARGV[13], 'priority', ARGV[14], 'queue', q,
  'weight', ARGV[18], 'retries', ARGV[15], 'retry_delay_ms', ARGV[16], 'attempts', 0,
  'ready_at_ms', ARGV[11], 'updated_at_ms', ARGV[2], 'metadata', ARGV[17])
redis.call('SADD', KEYS[1], q)
redis.pcall('HDEL', KEYS[1] .. ':idle', q)  -- the queue has a task again: not idle
redis.call('ZADD', p .. 'ready:' .. q, ARGV[11], id)
redis.pcall('LPUSH', KEYS[2], '1')
redis.pcall('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
local last_key = p .. 'schedule:last'
local last = tonumber(redis.call('HGET', last_key, name) or '-1')
if tonumber(ARGV[5]) > last then
  redis.call('HSET', last_key, name, ARGV[5])
end
local events = p .. 'admin:schedule_events:' .. name
redis.call('LPUSH', events, ARGV[7])
redis.call('LTRIM', events, 0, tonumber(ARGV[8]) - 1)
return 1
