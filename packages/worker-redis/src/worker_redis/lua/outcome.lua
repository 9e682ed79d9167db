-- outcome.lua: store the outcome of a task the dequeue script dead-lettered itself (delivery limit, an
-- unreadable record), so that whoever awaits the task learns it failed instead of waiting out its timeout.
-- The same writes as the outcome part of fail.lua.
--
-- KEYS[1]  P:result:<id>         STRING  the outcome, PX ttl (not overwritten when one is stored already)
-- KEYS[2]  P:recent:<queue>      LIST    ids of recent outcomes, newest at the head, bounded
-- ARGV[1]  id
-- ARGV[2]  outcome               JSON
-- ARGV[3]  ttl ms
-- ARGV[4]  recent bound          ids kept in KEYS[2]
-- ARGV[5]  channel               P:done:<id>: SPUBLISH (or PUBLISH without sharded pub/sub) the outcome there
-- Touches: the keys above and the channel.
-- Safe to run twice: an outcome already stored is kept.
-- Returns 1 when it stored the outcome, 0 when one was stored already (nothing changed).
if redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') == false then return 0 end
if type(redis.pcall('LPUSH', KEYS[2], ARGV[1])) ~= 'table' then  -- a foreign value there: stored, not listed
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
local sent = redis.pcall('SPUBLISH', ARGV[5], ARGV[2])
if type(sent) == 'table' and sent.err then redis.call('PUBLISH', ARGV[5], ARGV[2]) end
return 1
