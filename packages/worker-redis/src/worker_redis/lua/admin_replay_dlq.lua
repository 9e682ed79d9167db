-- admin_replay_dlq.lua: replay the oldest dead-lettered tasks (go-worker's AdminReplayDLQ, fixed CLI copy).
--
-- KEYS[1]  P:dead           LIST  dead-lettered ids, newest at the head: RPOP takes the oldest
-- KEYS[2]  P:queues         SET   known queue names
-- KEYS[3]  P:wake           LIST  wake-up tokens for idle workers
-- ARGV[1]  "P:"             key prefix (task and ready keys are built from it)
-- ARGV[2]  now_ms           new ready_at_ms, updated_at_ms and ready score
-- ARGV[3]  limit            how many ids to pop at most
-- ARGV[4]  default queue    for tasks whose hash has no queue
-- ARGV[5]  reset attempts   "1" sets attempts to 0
-- ARGV[6]  token seed       lease_token becomes "<seed>:<id>"
-- ARGV[7]  wake cap
-- Touches: dead, P:task:<id>, P:ready:<q>, queues, wake, P:result:<id> (deleted: the outcome of the earlier run).
-- Popped ids without a hash are dropped (as in go-worker).
-- Returns {replayed, popped}.
local p = ARGV[1]
local limit = tonumber(ARGV[3])
local replayed = 0
local popped = 0
for _ = 1, limit do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  popped = popped + 1
  local tk = p .. 'task:' .. id
  if redis.call('EXISTS', tk) == 1 then
    local q = redis.call('HGET', tk, 'queue')
    if not q or q == '' then q = ARGV[4] end
    redis.call('DEL', p .. 'result:' .. id)  -- it runs again: a handle waits for the new outcome
    redis.call('HSET', tk, 'queue', q, 'ready_at_ms', ARGV[2], 'updated_at_ms', ARGV[2],
      'lease_token', ARGV[6] .. ':' .. id)
    if ARGV[5] == '1' then
      redis.call('HSET', tk, 'attempts', '0')
    end
    redis.call('ZADD', p .. 'ready:' .. q, ARGV[2], id)
    redis.call('SADD', KEYS[2], q)
    redis.pcall('HDEL', KEYS[2] .. ':idle', q)  -- the queue has a task again: not idle
    replayed = replayed + 1
  end
end
if replayed > 0 then
  redis.pcall('LPUSH', KEYS[3], '1')
  redis.pcall('LTRIM', KEYS[3], 0, tonumber(ARGV[7]) - 1)
end
return {replayed, popped}
