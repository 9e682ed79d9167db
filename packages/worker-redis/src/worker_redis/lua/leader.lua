-- leader.lua: take or renew the leader lock (go-worker's leader script), or give it up.
--
-- KEYS[1]  prefix:leader  STRING  owner id, PX ttl (go-worker's key: raw prefix, no hash tag)
-- ARGV[1]  owner          this backend's random id
-- ARGV[2]  ttl_ms         > 0: take or renew; 0: release (DEL only when we own it)
-- Touches: KEYS[1] only.
-- Returns 1 when this owner holds the lock after the call (0 after a release).
local ttl = tonumber(ARGV[2])
if ttl <= 0 then
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then return 1 end
return 0
