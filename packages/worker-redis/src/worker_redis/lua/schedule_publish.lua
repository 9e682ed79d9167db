-- schedule_publish.lua: record the schedules one node runs, and drop those nobody republished (ours).
--
-- KEYS[1]  P:schedules  HASH  schedule name -> JSON record {"name", "spec", "tz", "queue", "missed", "published_ms"}
-- ARGV[1]  cutoff epoch ms: a record whose "published_ms" is older is deleted
-- ARGV[2..] name, JSON record pairs to set (stamped by the caller)
-- Touches: KEYS[1] only. Atomic: a record republished concurrently is never deleted by another node's pruning.
-- A record without a numeric "published_ms" (written by an older version, or not ours) is kept.
-- Returns the number of records deleted.
local cutoff = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local all = redis.call('HGETALL', KEYS[1])
local dropped = 0
for i = 1, #all, 2 do
  local ok, record = pcall(cjson.decode, all[i + 1])
  if ok and type(record) == 'table' then
    local at = tonumber(record['published_ms'])
    if at and at < cutoff then
      redis.call('HDEL', KEYS[1], all[i])
      dropped = dropped + 1
    end
  end
end
return dropped
