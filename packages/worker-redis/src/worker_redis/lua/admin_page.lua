-- admin_page.lua: one bounded page of a ready/processing set or of the DLQ, with the tasks' fields.
--
-- KEYS[1]  P:ready:<q> | P:processing:<q> (ZSET, by score) | P:dead (LIST, newest first)
-- ARGV[1]  "zset" | "list"
-- ARGV[2]  start rank
-- ARGV[3]  stop rank (inclusive; the caller keeps pages small)
-- ARGV[4]  "P:task:"        task key prefix
-- ARGV[5..] field names to read with HMGET; none = HGETALL
-- Touches (reads only): KEYS[1], P:task:<id>.
-- Returns {id, score ("" for the DLQ), exists (0/1), {values}} flattened, one quadruple per entry.
local out = {}
local entries
if ARGV[1] == 'zset' then
  entries = redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3], 'WITHSCORES')
else
  local ids = redis.call('LRANGE', KEYS[1], ARGV[2], ARGV[3])
  entries = {}
  for _, id in ipairs(ids) do
    entries[#entries + 1] = id
    entries[#entries + 1] = ''
  end
end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
for i = 1, #entries, 2 do
  local id = entries[i]
  local tk = ARGV[4] .. id
  local exists = redis.call('EXISTS', tk)
  local values
  if exists == 0 then
    values = {}
  elseif #fields == 0 then
    values = redis.call('HGETALL', tk)
  else
    values = redis.call('HMGET', tk, unpack(fields))
  end
  out[#out + 1] = id
  out[#out + 1] = entries[i + 1]
  out[#out + 1] = exists
  out[#out + 1] = values
end
return out
