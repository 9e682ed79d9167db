-- fail.lua: the task failed for good: dead-letter it with the reason (go-worker's fail, fenced), storing its
-- outcome.
--
-- KEYS[1]  P:processing:<queue>  ZSET
-- KEYS[2]  P:ready:<queue>       ZSET
-- KEYS[3]  P:dead                LIST  LPUSH: the newest failure is at the head
-- KEYS[4]  P:task:<id>           HASH  kept (payload included) for replay
-- KEYS[5]  P:result:<id>         STRING  the outcome (ours), PX ttl
-- KEYS[6]  P:recent:<queue>      LIST  ids of recent outcomes (ours), newest at the head, bounded
-- ARGV[1]  id
-- ARGV[2]  fencing token
-- ARGV[3]  attempts              of the lease
-- ARGV[4]  now_ms                failed_at_ms and updated_at_ms
-- ARGV[5]  error text            last_error
-- ARGV[6]  error type            error_type (ours; "" when unknown)
-- ARGV[7]  traceback             error_traceback (ours, bounded by the caller; "" when none)
-- ARGV[8]  outcome               JSON ("" or absent: store none)
-- ARGV[9]  ttl ms                of the outcome
-- ARGV[10] recent bound          ids kept in KEYS[6]
-- ARGV[11] channel               P:done:<id>: SPUBLISH (or PUBLISH without sharded pub/sub) the outcome there
-- ARGV[12] "P:"                  key prefix, for pruning
-- ARGV[13] dead ttl ms           0: keep dead tasks forever; else prune_dead (dead_prune.lua, prepended) deletes
--                                up to ARGV[14] dead tasks that failed before now - ttl
-- ARGV[14] prune bound
-- Touches: the keys above and the channel; pruning: P:task:<id>, P:ready:<q>, P:processing:<q> (read),
--          P:idem:<key> of expired dead tasks.
-- Safe to run twice: when the task is in neither the processing nor the ready set and its hash still carries
-- this lease's token and attempts and a failed_at_ms, this lease's own fail already ran: 1, nothing changed
-- (the outcome is not stored again).
-- Returns 1, or 0 when the lease is lost (nothing changed, nothing stored).
local f = redis.pcall('HMGET', KEYS[4], 'lease_token', 'attempts', 'failed_at_ms')
if f.err or f[1] ~= ARGV[2] or f[2] ~= ARGV[3] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if f[3] and not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 1 end
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[4], 'last_error', ARGV[5], 'failed_at_ms', ARGV[4], 'updated_at_ms', ARGV[4],
  'error_type', ARGV[6] or '', 'error_traceback', ARGV[7] or '', 'dead_reason', 'failed')
redis.call('LPUSH', KEYS[3], ARGV[1])
local dead_ttl = tonumber(ARGV[13] or '0')
if dead_ttl > 0 then prune_dead(ARGV[12], KEYS[3], tonumber(ARGV[4]) - dead_ttl, tonumber(ARGV[14])) end
local outcome = ARGV[8]
if outcome and outcome ~= '' then
  redis.call('SET', KEYS[5], outcome, 'PX', ARGV[9])
  if type(redis.pcall('LPUSH', KEYS[6], ARGV[1])) ~= 'table' then  -- a foreign value there: stored, not listed
    redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[10]) - 1)
    if redis.call('PTTL', KEYS[6]) < tonumber(ARGV[9]) then redis.call('PEXPIRE', KEYS[6], ARGV[9]) end
  end
  local sent = redis.pcall('SPUBLISH', ARGV[11], outcome)
  if type(sent) == 'table' and sent.err then redis.call('PUBLISH', ARGV[11], outcome) end
end
return 1
