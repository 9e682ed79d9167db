-- schedule_runs.lua: take the pending run requests ("trigger now") of the given schedules (ours).
--
-- KEYS[1]  P:schedule:runs  HASH  schedule name -> requested-at epoch ms
-- ARGV     schedule names this node runs
-- Touches: KEYS[1] (HLEN, HDEL). Atomic: of the nodes that poll, exactly one takes each request.
-- Returns the names taken.
if redis.call('HLEN', KEYS[1]) == 0 then
  return {}
end
local taken = {}
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    taken[#taken + 1] = ARGV[i]
  end
end
return taken
