-- schedule_runs.lua: list or take the pending run requests ("trigger now") of schedules (ours).
--
-- KEYS[1]  P:schedule:runs  HASH  schedule name -> requested-at epoch ms
-- ARGV     none: list the pending names (HKEYS; nothing is taken). Names: take those pending (HDEL).
-- Touches: KEYS[1]. Atomic: of the nodes that take the same name, exactly one gets it.
-- Returns the names listed, or the names taken.
if #ARGV == 0 then
  return redis.call('HKEYS', KEYS[1])
end
local taken = {}
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    taken[#taken + 1] = ARGV[i]
  end
end
return taken
