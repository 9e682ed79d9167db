-- admin_import.lua: write one snapshot entry (workerctl snapshot import --apply).
--
-- KEYS[1]  P:task:<id>          HASH  replaced by the snapshot's fields
-- KEYS[2]  P:ready:<queue>      ZSET
-- KEYS[3]  P:processing:<queue> ZSET
-- KEYS[4]  P:dead               LIST
-- KEYS[5]  P:queues             SET
-- KEYS[6]  P:wake               LIST
-- ARGV[1]  id
-- ARGV[2]  status               "ready" | "processing" | "dead"
-- ARGV[3]  score                ready-at or lease-expiry epoch ms (already defaulted by the caller)
-- ARGV[4]  lease token          fresh: nobody holds an imported lease
-- ARGV[5]  wake cap
-- ARGV[6..] field, value pairs  (the queue field is always among them)
-- Returns 1.
redis.call('DEL', KEYS[1])
local pairs_ = {}
for i = 6, #ARGV do pairs_[#pairs_ + 1] = ARGV[i] end
if #pairs_ > 0 then redis.call('HSET', KEYS[1], unpack(pairs_)) end
redis.call('HSET', KEYS[1], 'lease_token', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('LREM', KEYS[4], 0, ARGV[1])
if ARGV[2] == 'dead' then
  redis.call('RPUSH', KEYS[4], ARGV[1])
elseif ARGV[2] == 'processing' then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  redis.pcall('LPUSH', KEYS[6], '1')
  redis.pcall('LTRIM', KEYS[6], 0, tonumber(ARGV[5]) - 1)
end
local queue = redis.call('HGET', KEYS[1], 'queue')
redis.call('SADD', KEYS[5], queue)
redis.pcall('HDEL', KEYS[5] .. ':idle', queue)  -- the queue has a task again: not idle
return 1
