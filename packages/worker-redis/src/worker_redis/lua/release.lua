-- release.lua: hand leases back at once (graceful shutdown) without counting the delivery (ours).
--
-- KEYS[1]  P:wake           LIST  wake-up tokens: another worker may take the tasks at once
-- ARGV[1]  "P:"             key prefix; task, ready and processing keys are built from it (same slot)
-- ARGV[2]  now_ms
-- ARGV[3]  wake cap
-- ARGV[4..] per lease, 4 values: id, queue, fencing token, attempts
-- Touches: P:processing:<q>, P:ready:<q>, P:task:<id>, wake.
-- Each held lease: processing -> ready at min(ready_at_ms, now) (its place in line is kept),
-- attempts - 1, lease_token cleared. A lost lease is skipped.
-- Returns the number of tasks released.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local released = 0
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  local q = ARGV[i + 1]
  local pk = p .. 'processing:' .. q
  local tk = p .. 'task:' .. id
  if redis.call('ZSCORE', pk, id) then
    local f = redis.call('HMGET', tk, 'lease_token', 'attempts', 'ready_at_ms')
    if f[1] == ARGV[i + 2] and f[2] == ARGV[i + 3] then
      local at = math.min(tonumber(f[3]) or now, now)
      redis.call('ZREM', pk, id)
      redis.call('ZADD', p .. 'ready:' .. q, at, id)
      redis.call('HINCRBY', tk, 'attempts', -1)
      redis.call('HSET', tk, 'lease_token', '', 'updated_at_ms', now)
      released = released + 1
    end
  end
end
if released > 0 then
  redis.pcall('LPUSH', KEYS[1], '1')
  redis.pcall('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
end
return released
