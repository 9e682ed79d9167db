-- admin_pause_queue.lua: pause or resume one queue (go-worker's AdminPauseQueue).
--
-- KEYS[1]  P:queues         SET   known queue names
-- KEYS[2]  P:paused_queues  SET   paused queue names
-- KEYS[3]  P:wake           LIST  wake-up tokens (a resumed queue may have ready work)
-- KEYS[4]  P:queues:forgotten ZSET queues forgotten for want of tasks (still known to an operator)
-- ARGV[1]  queue name
-- ARGV[2]  default queue    always known
-- ARGV[3]  "1" pause, "0" resume
-- ARGV[4]  wake cap
-- Returns 1, or 0 when the queue is unknown (nothing changed).
local forgotten = redis.pcall('ZSCORE', KEYS[4], ARGV[1])  -- a foreign value there: nothing is forgotten
if type(forgotten) == 'table' and forgotten.err then forgotten = false end
if ARGV[1] ~= ARGV[2] and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0
    and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 and not forgotten then
  return 0
end
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.pcall('LPUSH', KEYS[3], '1')
  redis.pcall('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
end
return 1
