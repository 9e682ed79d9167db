-- admin_overview.lua: pause flags, DLQ length and per-queue counts in one consistent read.
--
-- KEYS[1]  P:paused         STRING "1" = global pause
-- KEYS[2]  P:paused_queues  SET
-- KEYS[3]  P:queues         SET
-- KEYS[4]  P:dead           LIST
-- ARGV[1]  "P:"             key prefix (ready and processing keys are built from it)
-- ARGV[2]  default queue    listed when no queue is known
-- ARGV[3]  max queues       a larger queue set is an error (never an unbounded read)
-- ARGV[4]  now_ms           what "due" means: ready entries whose score is at most this
-- ARGV[5..] queue names     when given, only these queues (unvalidated, as go-worker's --queue)
-- Touches (reads only): the four keys above, P:ready:<q>, P:processing:<q>.
-- Returns {paused (0/1), dead length, {paused queue names}, {name, ready, processing, paused, due, oldest due
-- ready-at ms (-1: none)} flattened}. A ready or processing key of another type counts 0.
local p = ARGV[1]
local now = tonumber(ARGV[4])
local names = {}
for i = 5, #ARGV do names[#names + 1] = ARGV[i] end
if #names == 0 then
  if redis.call('SCARD', KEYS[3]) > tonumber(ARGV[3]) then
    return redis.error_reply('ERR too many queues to list')
  end
  names = redis.call('SMEMBERS', KEYS[3])
  if #names == 0 then names = {ARGV[2]} end
end
if redis.call('SCARD', KEYS[2]) > tonumber(ARGV[3]) then
  return redis.error_reply('ERR too many paused queues to list')
end
local paused_names = redis.call('SMEMBERS', KEYS[2])
local out = {}
local function count(reply)
  if type(reply) == 'table' and reply.err then return 0 end
  return reply
end
for _, q in ipairs(names) do
  local rk = p .. 'ready:' .. q
  out[#out + 1] = q
  out[#out + 1] = count(redis.pcall('ZCARD', rk))
  out[#out + 1] = count(redis.pcall('ZCARD', p .. 'processing:' .. q))
  out[#out + 1] = redis.call('SISMEMBER', KEYS[2], q)
  out[#out + 1] = count(redis.pcall('ZCOUNT', rk, '-inf', now))
  local first = redis.pcall('ZRANGEBYSCORE', rk, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if first.err or not first[2] then out[#out + 1] = -1 else out[#out + 1] = tonumber(first[2]) end
end
local paused = 0
if redis.call('GET', KEYS[1]) == '1' then paused = 1 end
return {paused, redis.call('LLEN', KEYS[4]), paused_names, out}
