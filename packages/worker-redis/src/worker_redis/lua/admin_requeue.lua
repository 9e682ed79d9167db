-- admin_requeue.lua: make tasks ready again (workerctl retry/requeue, replay of DLQ entries by id).
--
-- KEYS[1]  P:dead           LIST  dead-lettered ids
-- KEYS[2]  P:queues         SET   known queue names
-- KEYS[3]  P:wake           LIST  wake-up tokens for idle workers
-- ARGV[1]  "P:"             key prefix; task, ready and processing keys are built from it (same hash tag)
-- ARGV[2]  now_ms           updated_at_ms
-- ARGV[3]  ready_at_ms      score in the ready set and the hash's ready_at_ms
-- ARGV[4]  target queue     "" = the task's own queue
-- ARGV[5]  default queue    for tasks whose hash has no queue
-- ARGV[6]  reset attempts   "1" sets attempts to 0 (a fresh retry budget), "0" keeps them
-- ARGV[7]  token seed       lease_token becomes "<seed>:<id>": the old holder's ack/nack/fail is rejected
-- ARGV[8]  wake cap         the wake list is trimmed to this many tokens
-- ARGV[9..] task ids
-- Touches: P:task:<id>, P:ready:<q>, P:processing:<q> (q = the task's queue and the target), dead, queues, wake,
--          P:result:<id> (deleted: the outcome of the earlier run).
-- An id without a hash is left alone (nothing is created) and reported as missing.
-- Returns {moved, {missing ids}}.
local p = ARGV[1]
local moved = 0
local missing = {}
for i = 9, #ARGV do
  local id = ARGV[i]
  local tk = p .. 'task:' .. id
  if redis.call('EXISTS', tk) == 1 then
    local cur = redis.call('HGET', tk, 'queue')
    if not cur or cur == '' then cur = ARGV[5] end
    local target = ARGV[4]
    if target == '' then target = cur end
    local removed = redis.call('ZREM', p .. 'ready:' .. cur, id) + redis.call('ZREM', p .. 'processing:' .. cur, id)
    if target ~= cur then
      removed = removed + redis.call('ZREM', p .. 'ready:' .. target, id)
      removed = removed + redis.call('ZREM', p .. 'processing:' .. target, id)
    end
    if removed == 0 then
      -- Only a task in no sorted set can be dead: skip the O(n) LREM for ready/processing tasks.
      redis.call('LREM', KEYS[1], 0, id)
    end
    redis.call('DEL', p .. 'result:' .. id)  -- it runs again: a handle waits for the new outcome
    redis.call('HSET', tk, 'queue', target, 'ready_at_ms', ARGV[3], 'updated_at_ms', ARGV[2],
      'lease_token', ARGV[7] .. ':' .. id)
    if ARGV[6] == '1' then
      redis.call('HSET', tk, 'attempts', '0')
    end
    redis.call('ZADD', p .. 'ready:' .. target, ARGV[3], id)
    redis.call('SADD', KEYS[2], target)
    redis.pcall('HDEL', KEYS[2] .. ':idle', target)  -- the queue has a task again: not idle
    moved = moved + 1
  else
    missing[#missing + 1] = id
  end
end
if moved > 0 then
  redis.pcall('LPUSH', KEYS[3], '1')
  redis.pcall('LTRIM', KEYS[3], 0, tonumber(ARGV[8]) - 1)
end
return {moved, missing}
