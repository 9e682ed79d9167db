-- global_rate.lua: cluster-wide token bucket (go-worker's global rate script, plus a refund).
--
-- KEYS[1]  prefix:global_rate  HASH  tokens, ts (go-worker's key: raw prefix, no hash tag)
-- ARGV[1]  now_ms
-- ARGV[2]  rate                tokens per second
-- ARGV[3]  burst
-- ARGV[4]  requested           > 0: take up to this many tokens; < 0: give -requested tokens back
-- ARGV[5]  ttl_ms              PEXPIRE of the bucket
-- ARGV[6]  request id          unique per call: {prefix:global_rate}:<request> (the bucket's slot) keeps the
--                              answer for 60 s, so a call re-sent after a lost reply takes or gives back nothing
--                              more and answers the same
-- Touches: KEYS[1] and that request key.
-- Returns the tokens taken (0 when rate, burst or requested <= 0), or the tokens given back.
-- The caller takes `limit` tokens before a dequeue and gives back what it did not lease, so tokens are
-- spent only on tasks actually leased (go-worker spends them even when the queues are empty).
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local requested = tonumber(ARGV[4])
if rate <= 0 or burst <= 0 or requested == 0 then return 0 end
local request_key = '{' .. KEYS[1] .. '}:' .. ARGV[6]
local earlier = redis.call('GET', request_key)
if earlier then return tonumber(earlier) end
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
local last = tonumber(redis.call('HGET', KEYS[1], 'ts'))
if tokens == nil then tokens = burst end
if last == nil then last = now end
local elapsed = now - last
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + (elapsed / 1000) * rate)
local result
if requested > 0 then
  result = math.min(requested, math.floor(tokens))
  tokens = tokens - result
else
  result = -requested
  tokens = math.min(burst, tokens + result)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SET', request_key, result, 'PX', 60000)
return result
