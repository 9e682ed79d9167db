-- admin_get.lua: one task's hash and where it is (workerctl get).
--
-- KEYS[1]  P:task:<id>      HASH
-- KEYS[2]  P:dead           LIST
-- ARGV[1]  "P:"             key prefix (ready and processing keys are built from it)
-- ARGV[2]  id
-- ARGV[3]  default queue
-- Touches (reads only): the task hash, P:ready:<q>, P:processing:<q>, dead.
-- Returns {} when the hash is missing, else {status, score ("" when none), {HGETALL}}.
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
local q = redis.call('HGET', KEYS[1], 'queue')
if not q or q == '' then q = ARGV[3] end
local score = redis.call('ZSCORE', ARGV[1] .. 'ready:' .. q, ARGV[2])
if score then return {'ready', score, fields} end
score = redis.call('ZSCORE', ARGV[1] .. 'processing:' .. q, ARGV[2])
if score then return {'processing', score, fields} end
if redis.call('LPOS', KEYS[2], ARGV[2]) then return {'dead', '', fields} end
return {'unknown', '', fields}
