-- dequeue.lua: lease up to `limit` tasks across every queue in one call (go-worker's dequeue, batched).
--
-- KEYS[1]  P:queues         SET     known queue names (also routes the call to the deployment's slot)
-- KEYS[2]  P:paused         STRING  "1" pauses every dequeue
-- KEYS[3]  P:paused_queues  SET     paused queue names
-- ARGV[1]  "P:"             key prefix; task, ready and processing keys are built from it (same slot)
-- ARGV[2]  now_ms
-- ARGV[3]  lease_ms
-- ARGV[4]  limit            leases to return at most
-- ARGV[5]  window           ready/expired entries one queue inspects per call (go-worker's batch, 50)
-- ARGV[6]  default queue    always scanned, even when absent from P:queues
-- ARGV[7]  token seed       fencing token of the n-th lease of this call: "<seed>:<n>"
-- ARGV[8..] per configured queue, 3 values: name, weight, smooth-WRR current weight (state kept by the caller)
-- Touches: queues, paused, paused_queues, P:ready:<q>, P:processing:<q>, P:task:<id>.
--
-- 1. Expired leases of EVERY queue (paused ones too) go back to ready at their ready_at_ms (or now).
--    Ids whose hash is gone are dropped.
-- 2. Global pause: nothing is leased. Paused queues are skipped.
-- 3. Each active queue offers its due entries (score <= now, oldest first, at most max(window, limit)),
--    ordered by priority (lower first), then weight (higher first), then age. Orphans (an id without a
--    hash, or a stub hash without a handler) are removed from the ready set, never left to stall it.
-- 4. Slots go to queues by smooth weighted round robin over the queues that still have work.
-- 5. Each leased task: ready -> processing (score now+lease), attempts+1, lease_at_ms, updated_at_ms,
--    lease_token (ours, additive).
-- Returns {leases, next_ms, wrr} where leases is a flat list of 12 values per lease: id, handler, payload,
-- priority, retries, retry_delay_ms, attempts, metadata, queue, weight, token, ready_at_ms; next_ms is the
-- earliest future ready score or lease expiry (-1 when none) and wrr is a flat list of name, current.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local seed = ARGV[7]

local weight_of = {}
local current = {}
local seen = {}
local names = {}
local function add_queue(q)
  if not seen[q] then
    seen[q] = true
    names[#names + 1] = q
  end
end
for i = 8, #ARGV, 3 do
  local q = ARGV[i]
  weight_of[q] = tonumber(ARGV[i + 1])
  current[q] = tonumber(ARGV[i + 2])
  add_queue(q)
end
add_queue(ARGV[6])
for _, q in ipairs(redis.call('SMEMBERS', KEYS[1])) do add_queue(q) end
table.sort(names)

local next_ms = -1
local function consider(score)
  if score and (next_ms < 0 or score < next_ms) then next_ms = score end
end

-- 1. expired leases, every queue
for _, q in ipairs(names) do
  local pk = p .. 'processing:' .. q
  local expired = redis.call('ZRANGEBYSCORE', pk, '-inf', now, 'LIMIT', 0, window)
  if #expired > 0 then
    local rk = p .. 'ready:' .. q
    for _, id in ipairs(expired) do
      redis.call('ZREM', pk, id)
      local tk = p .. 'task:' .. id
      if redis.call('EXISTS', tk) == 1 then
        local at = tonumber(redis.call('HGET', tk, 'ready_at_ms')) or now
        redis.call('ZADD', rk, at, id)
      end
    end
  end
  local first = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
  if first[2] then consider(tonumber(first[2])) end
end

-- 2. pause
if redis.call('GET', KEYS[2]) == '1' then
  return {{}, next_ms, {}}
end
local paused = {}
for _, q in ipairs(redis.call('SMEMBERS', KEYS[3])) do paused[q] = true end

-- 3. candidates per active queue
local scan = math.max(window, limit)
local active = {}
local cands = {}
for _, q in ipairs(names) do
  if not paused[q] then
    local rk = p .. 'ready:' .. q
    local ids = redis.call('ZRANGEBYSCORE', rk, '-inf', now, 'LIMIT', 0, scan)
    local list = {}
    for idx, id in ipairs(ids) do
      local tk = p .. 'task:' .. id
      local f = redis.call('HMGET', tk, 'priority', 'weight', 'handler')
      if not f[3] then
        -- Orphan: no hash, or a stub without a handler (go-worker's nack/delete of a missing id).
        redis.call('ZREM', rk, id)
        if redis.call('HEXISTS', tk, 'payload') == 0 then redis.call('DEL', tk) end
      else
        list[#list + 1] = {id, tonumber(f[1]) or 0, tonumber(f[2]) or 1, idx}
      end
    end
    if #list > 0 then
      table.sort(list, function(a, b)
        if a[2] ~= b[2] then return a[2] < b[2] end
        if a[3] ~= b[3] then return a[3] > b[3] end
        return a[4] < b[4]
      end)
      cands[q] = {list = list, pos = 1}
      active[#active + 1] = q
      if not weight_of[q] then weight_of[q] = 1 end
      if not current[q] then current[q] = 0 end
    end
    if #list < scan then
      -- nothing more is due now: the next due entry (if any) bounds an idle worker's wait
      local nxt = redis.call('ZRANGEBYSCORE', rk, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      if nxt[2] then consider(tonumber(nxt[2])) end
    else
      consider(now)
    end
  end
end

-- 4. smooth weighted round robin over queues that still have candidates
local picks = {}
while #picks < limit and #active > 0 do
  local total = 0
  local best = nil
  for _, q in ipairs(active) do
    local w = weight_of[q]
    total = total + w
    current[q] = current[q] + w
    if best == nil or current[q] > current[best] then best = q end
  end
  current[best] = current[best] - total
  local c = cands[best]
  picks[#picks + 1] = {best, c.list[c.pos][1]}
  c.pos = c.pos + 1
  if c.pos > #c.list then
    local rest = {}
    for _, q in ipairs(active) do if q ~= best then rest[#rest + 1] = q end end
    active = rest
  end
end
if #active > 0 then consider(now) end

-- 5. lease
local out = {}
local lease_at = now + lease_ms
for n, pick in ipairs(picks) do
  local q, id = pick[1], pick[2]
  local tk = p .. 'task:' .. id
  redis.call('ZREM', p .. 'ready:' .. q, id)
  redis.call('ZADD', p .. 'processing:' .. q, lease_at, id)
  local attempts = redis.call('HINCRBY', tk, 'attempts', 1)
  local token = seed .. ':' .. n
  redis.call('HSET', tk, 'lease_at_ms', lease_at, 'updated_at_ms', now, 'lease_token', token)
  local f = redis.call('HMGET', tk, 'handler', 'payload', 'priority', 'retries', 'retry_delay_ms', 'metadata',
    'queue', 'weight', 'ready_at_ms')
  out[#out + 1] = id
  out[#out + 1] = f[1]
  out[#out + 1] = f[2] or ''
  out[#out + 1] = f[3] or '0'
  out[#out + 1] = f[4] or '0'
  out[#out + 1] = f[5] or '0'
  out[#out + 1] = attempts
  out[#out + 1] = f[6] or ''
  out[#out + 1] = q
  out[#out + 1] = f[8] or '1'
  out[#out + 1] = token
  out[#out + 1] = f[9] or ''
end
if #picks > 0 then consider(lease_at) end

local wrr = {}
for q, c in pairs(current) do
  wrr[#wrr + 1] = q
  wrr[#wrr + 1] = c
end
return {out, next_ms, wrr}
