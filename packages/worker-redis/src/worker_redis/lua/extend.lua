-- extend.lua: push a lease's expiry to lease_at_ms (go-worker's extend, fenced).
--
-- KEYS[1]  P:processing:<queue>  ZSET
-- KEYS[2]  P:task:<id>           HASH
-- ARGV[1]  id
-- ARGV[2]  fencing token
-- ARGV[3]  attempts              of the lease
-- ARGV[4]  lease_at_ms           the new expiry
-- ARGV[5]  now_ms                updated_at_ms
-- Touches: the two keys above.
-- Returns 1, or 0 when the lease is lost (go-worker: ErrDurableLeaseNotFound; nothing changed).
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local f = redis.call('HMGET', KEYS[2], 'lease_token', 'attempts')
if f[1] ~= ARGV[2] or f[2] ~= ARGV[3] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[2], 'lease_at_ms', ARGV[4], 'updated_at_ms', ARGV[5])
return 1
