-- nack.lua: the attempt failed and may be retried: ready again at ready_at_ms (go-worker's nack, fenced).
--
-- KEYS[1]  P:processing:<queue>  ZSET
-- KEYS[2]  P:ready:<queue>       ZSET
-- KEYS[3]  P:task:<id>           HASH
-- KEYS[4]  P:wake                LIST  wake-up tokens (ours): an idle worker re-reads the next ready time
-- ARGV[1]  id
-- ARGV[2]  fencing token
-- ARGV[3]  attempts              of the lease
-- ARGV[4]  ready_at_ms           now + delay
-- ARGV[5]  now_ms                updated_at_ms (go-worker writes ready_at_ms there, a quirk we do not copy)
-- ARGV[6]  wake cap
-- Touches: the four keys above.
-- Safe to run twice: when the task is no longer in processing but is ready with this lease's token and attempts
-- still in its hash, this lease's own nack already ran (a re-lease, an expiry requeue and a release all change or
-- clear the token): 1, nothing changed.
-- Returns 1, or 0 when the lease is lost (nothing changed; go-worker would recreate a stub hash).
local f = redis.pcall('HMGET', KEYS[3], 'lease_token', 'attempts')
if f.err or f[1] ~= ARGV[2] or f[2] ~= ARGV[3] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 1 end
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'ready_at_ms', ARGV[4], 'updated_at_ms', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.pcall('LPUSH', KEYS[4], '1')
redis.pcall('LTRIM', KEYS[4], 0, tonumber(ARGV[6]) - 1)
return 1
