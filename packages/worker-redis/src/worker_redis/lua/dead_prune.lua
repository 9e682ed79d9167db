-- dead_prune.lua: a function the fail and dequeue scripts share (prepended to them, not a script of its own).
--
-- prune_dead(p, dead_key, cutoff_ms, bound): delete at most `bound` of the oldest dead tasks (the tail of P:dead,
-- newest at the head) whose failed_at_ms is older than cutoff_ms, with their hash P:task:<id> and the
-- P:idem:<key> that still names them (the result P:result:<id> keeps its own TTL). Stops at the first dead task
-- that is young enough. Entries that are not dead tasks any more are dropped from the list without touching the
-- task: an id without a hash, a key that is not a hash, and an id whose task is ready or processing again.
-- A hash without a readable failed_at_ms (nor updated_at_ms) moves to the head: kept, and never blocks pruning.
-- Returns how many entries left the tail.
local function prune_dead(p, dead_key, cutoff_ms, bound)
  local n = 0
  while n < bound do
    local id = redis.call('LINDEX', dead_key, -1)
    if not id then break end
    local tk = p .. 'task:' .. id
    local f = redis.pcall('HMGET', tk, 'failed_at_ms', 'updated_at_ms', 'queue', 'idempotency_key')
    if f.err or (not f[1] and not f[2] and not f[3]) then
      redis.call('RPOP', dead_key)
    elseif f[3] and (redis.call('ZSCORE', p .. 'ready:' .. f[3], id) or redis.call('ZSCORE', p .. 'processing:' .. f[3], id)) then
      redis.call('RPOP', dead_key)
    else
      local at = tonumber(f[1] or f[2] or '')
      if at == nil then
        redis.call('RPOPLPUSH', dead_key, dead_key)
      elseif at >= cutoff_ms then
        break
      else
        redis.call('RPOP', dead_key)
        redis.call('DEL', tk)
        if f[4] and f[4] ~= '' and redis.call('GET', p .. 'idem:' .. f[4]) == id then
          redis.call('DEL', p .. 'idem:' .. f[4])
        end
      end
    end
    n = n + 1
  end
  return n
end
