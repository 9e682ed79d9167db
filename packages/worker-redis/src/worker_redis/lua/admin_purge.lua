-- admin_purge.lua: remove up to N entries from the head of one ready/processing set or of the DLQ.
--
-- KEYS[1]  P:ready:<q> | P:processing:<q> (ZSET, lowest scores first) | P:dead (LIST, newest first)
-- ARGV[1]  "zset" | "list"
-- ARGV[2]  n                how many entries to remove at most (the caller loops in bounded batches)
-- ARGV[3]  "P:task:"        task key prefix
-- ARGV[4]  delete hashes    "1" also deletes the removed tasks' hashes
-- Touches: KEYS[1] and, with ARGV[4] = "1", P:task:<id>.
-- Returns the number of entries removed.
local n = tonumber(ARGV[2])
local ids
if ARGV[1] == 'zset' then
  ids = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  if #ids > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1) end
else
  ids = redis.call('LRANGE', KEYS[1], 0, n - 1)
  if #ids > 0 then redis.call('LTRIM', KEYS[1], #ids, -1) end
end
if ARGV[4] == '1' then
  for _, id in ipairs(ids) do
    redis.call('DEL', ARGV[3] .. id)
  end
end
return #ids
