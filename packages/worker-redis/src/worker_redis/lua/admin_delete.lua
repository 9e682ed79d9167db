-- admin_delete.lua: remove tasks from every state (workerctl delete).
--
-- KEYS[1]  P:dead           LIST  dead-lettered ids
-- ARGV[1]  "P:"             key prefix (task, ready and processing keys are built from it)
-- ARGV[2]  now_ms           updated_at_ms of a kept hash
-- ARGV[3]  queue override   "" = the task's own queue
-- ARGV[4]  default queue    for tasks whose hash has no queue
-- ARGV[5]  delete hash      "1" deletes the task hash too
-- ARGV[6]  token seed       a kept hash gets lease_token "<seed>:<id>", so a worker holding it cannot ack it
-- ARGV[7..] task ids
-- Touches: P:task:<id>, P:ready:<q>, P:processing:<q> (q = the task's queue and the override), dead.
-- Unlike go-worker, an id that exists nowhere is not counted and no stub hash is created.
-- Returns {deleted, {missing ids}}.
local p = ARGV[1]
local deleted = 0
local missing = {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local tk = p .. 'task:' .. id
  local exists = redis.call('EXISTS', tk)
  local cur = nil
  if exists == 1 then cur = redis.call('HGET', tk, 'queue') end
  if not cur or cur == '' then cur = ARGV[4] end
  local removed = redis.call('ZREM', p .. 'ready:' .. cur, id) + redis.call('ZREM', p .. 'processing:' .. cur, id)
  if ARGV[3] ~= '' and ARGV[3] ~= cur then
    removed = removed + redis.call('ZREM', p .. 'ready:' .. ARGV[3], id)
    removed = removed + redis.call('ZREM', p .. 'processing:' .. ARGV[3], id)
  end
  if removed == 0 then
    removed = redis.call('LREM', KEYS[1], 0, id)
  end
  if exists == 1 then
    if ARGV[5] == '1' then
      redis.call('DEL', tk)
    else
      redis.call('HSET', tk, 'updated_at_ms', ARGV[2], 'lease_token', ARGV[6] .. ':' .. id)
    end
  end
  if exists == 1 or removed > 0 then
    deleted = deleted + 1
  else
    missing[#missing + 1] = id
  end
end
return {deleted, missing}
