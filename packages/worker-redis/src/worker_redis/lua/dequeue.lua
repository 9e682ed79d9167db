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
-- ARGV[7]  request id       unique per call, "<node id>/<random>"; fencing token of the n-th lease of this call:
--                           "<request>:<n>" (so a token starts with the id of the node holding the lease)
-- ARGV[8]  extra deliveries a task is delivered at most retries + 1 + this many times (then dead-lettered)
-- ARGV[9]  dead ttl ms      0: keep dead tasks forever; else, when this call dead-lettered a task, prune_dead
--                           (dead_prune.lua, prepended) deletes up to ARGV[10] that failed before now - ttl
-- ARGV[10] prune bound
-- ARGV[11] k                0: lease from every queue; else only from the k queues that follow
-- ARGV[12..11+k]            those queue names
-- ARGV[12+k..] per queue with a weight or a current weight, 3 values: name, weight, smooth-WRR current weight
--               (the caller sends its configured queues and the busy queues of its last call)
-- Touches: queues, queues:idle, queues:forgotten, paused, paused_queues, P:ready:<q>, P:processing:<q>,
--          P:task:<id>, P:dead, P:quarantine, P:dequeue:<request>, P:idem:<key> (of pruned dead tasks).
--
-- 0. A call re-sent with the same request id (the client retried after a lost reply) returns the leases the
--    first run made that are still held, and changes nothing else.
-- 1. Expired leases of EVERY queue (paused ones too) go back to ready at their ready_at_ms (or now), their
--    lease token cleared. Ids whose hash is gone are dropped. A queue with no ready, delayed or leased task
--    that is neither paused nor the default is marked in P:queues:idle, and leaves P:queues once it has been
--    so for 15 minutes (ours: go-worker never forgets a queue name, so each call walked every name ever
--    used: 10,000 drained queues cost 91 ms of Redis time per dequeue). Giving the queue a task clears the mark,
--    and so does a dequeue that finds a marked queue with a task (one a go-worker client enqueued).
--    Until then, marked queues whose ready and processing keys are both absent are checked 500 at a time with
--    one EXISTS instead of being walked (0b below).
-- 2. Global pause: nothing is leased. Paused queues (and, with a filter, queues not listed) are skipped.
-- 3. Each active queue offers its due entries (score <= now, oldest first, at most max(window, limit)),
--    ordered by priority (lower first), then weight (higher first), then age. Orphans (an id without a
--    hash, or a stub hash without a handler) are removed from the ready set, never left to stall it.
-- 4. Slots go to queues by smooth weighted round robin over the queues that still have work.
-- 5. Each picked task is checked before it is leased; one that cannot be served is moved aside and the slot
--    goes to the next candidate, so one bad record never stalls a queue nor starves its neighbours:
--    - a task key that is not a hash: its id leaves the ready set, P:quarantine[<task key>] = reason;
--    - a hash whose id is not a UUID, whose handler or queue name is not UTF-8 (or empty), whose numbers are
--      not integers (retries=1e400, say), or without a payload: dead-lettered with the reason;
--    - a task already delivered retries + 1 + extra times without being settled (its worker died each
--      time): dead-lettered with reason "delivery limit: ...", so a task that kills its process ends.
--    Dead-lettering here writes last_error, dead_reason, failed_at_ms, updated_at_ms and LPUSHes P:dead.
-- 6. Each leased task: ready -> processing (score now+lease), attempts+1, lease_at_ms, updated_at_ms,
--    lease_token (ours, additive). The ids go to P:dequeue:<request> (a list kept for lease_ms).
-- Returns {leases, next_ms, wrr, moved} where leases is a flat list of 13 values per lease: id, handler,
-- payload, priority, retries, retry_delay_ms, attempts, metadata, queue, weight, token, ready_at_ms,
-- idempotency_key ("" when none); next_ms is
-- the earliest future ready score or lease expiry (-1 when none); wrr is a flat list of name, current (of the
-- queues that had work); moved
-- is a flat list of id, reason for every record this call dead-lettered or quarantined.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local request = ARGV[7]
local extra = tonumber(ARGV[8])
local dead_ttl = tonumber(ARGV[9])
local prune_bound = tonumber(ARGV[10])
local only_n = tonumber(ARGV[11])
local dead_key = p .. 'dead'
local quarantine = p .. 'quarantine'  -- written with pcall: a foreign value there never stops a dequeue
local request_key = p .. 'dequeue:' .. request

local function utf8_ok(s)
  if not s:find('[\128-\255]') then return true end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    if c < 0x80 then
      i = i + 1
    elseif c >= 0xC2 and c <= 0xDF then
      local c2 = s:byte(i + 1)
      if not c2 or c2 < 0x80 or c2 > 0xBF then return false end
      i = i + 2
    elseif c >= 0xE0 and c <= 0xEF then
      local c2, c3 = s:byte(i + 1, i + 2)
      if not c3 or c2 < 0x80 or c2 > 0xBF or c3 < 0x80 or c3 > 0xBF then return false end
      if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then return false end
      i = i + 3
    elseif c >= 0xF0 and c <= 0xF4 then
      local c2, c3, c4 = s:byte(i + 1, i + 3)
      if not c4 or c2 < 0x80 or c2 > 0xBF or c3 < 0x80 or c3 > 0xBF or c4 < 0x80 or c4 > 0xBF then return false end
      if (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then return false end
      i = i + 4
    else
      return false
    end
  end
  return true
end

-- A decimal integer of at most 15 digits (what go-worker and we write), else nil.
local function int_of(v)
  if v == false or v == nil then return nil end
  if #v > 16 or not v:find('^%-?%d+$') then return nil end
  return tonumber(v)
end

local function is_uuid(id)
  return #id == 36 and id:find('^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$') ~= nil
end

local moved = {}
local function dead(q, id, tk, reason)
  redis.call('ZREM', p .. 'ready:' .. q, id)
  redis.call('HSET', tk, 'last_error', reason, 'dead_reason', reason, 'failed_at_ms', now, 'updated_at_ms', now,
    'lease_token', '')
  redis.call('LPUSH', dead_key, id)
  moved[#moved + 1] = id
  moved[#moved + 1] = reason
end
local function aside(zkey, id, tk, reason)
  redis.call('ZREM', zkey, id)
  redis.pcall('HSET', quarantine, tk, reason)
  moved[#moved + 1] = id
  moved[#moved + 1] = reason
end
local function wrong_type(tk)
  return 'task key is a ' .. redis.call('TYPE', tk).ok .. ', not a hash: moved aside'
end

-- 0. a re-sent call
if redis.call('EXISTS', request_key) == 1 then
  local out = {}
  local held = redis.call('LRANGE', request_key, 0, -1)
  for n = 1, #held, 2 do
    local id, q = held[n], held[n + 1]
    local tk = p .. 'task:' .. id
    local token = request .. ':' .. ((n + 1) / 2)
    local f = redis.pcall('HMGET', tk, 'handler', 'payload', 'priority', 'retries', 'retry_delay_ms', 'metadata',
      'queue', 'weight', 'ready_at_ms', 'lease_token', 'attempts', 'idempotency_key')
    if not f.err and f[10] == token and redis.call('ZSCORE', p .. 'processing:' .. q, id) then
      out[#out + 1] = id
      out[#out + 1] = f[1]
      out[#out + 1] = f[2] or ''
      out[#out + 1] = f[3] or '0'
      out[#out + 1] = f[4] or '0'
      out[#out + 1] = f[5] or '0'
      out[#out + 1] = tonumber(f[11])
      out[#out + 1] = f[6] or ''
      out[#out + 1] = q
      out[#out + 1] = f[8] or '1'
      out[#out + 1] = token
      out[#out + 1] = f[9] or ''
      out[#out + 1] = f[12] or ''
    end
  end
  return {out, now, {}, {}}
end

local only = nil
if only_n > 0 then
  only = {}
  for i = 12, 11 + only_n do only[ARGV[i]] = true end
end
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
for i = 12 + only_n, #ARGV, 3 do
  local q = ARGV[i]
  weight_of[q] = tonumber(ARGV[i + 1])
  current[q] = tonumber(ARGV[i + 2])
  add_queue(q)
end
add_queue(ARGV[6])
for _, q in ipairs(redis.call('SMEMBERS', KEYS[1])) do add_queue(q) end

local next_ms = -1
local function consider(score)
  if score and (next_ms < 0 or score < next_ms) then next_ms = score end
end

local paused = {}
for _, q in ipairs(redis.call('SMEMBERS', KEYS[3])) do paused[q] = true end
local idle_key = KEYS[1] .. ':idle'
local forgotten_key = KEYS[1] .. ':forgotten'
local FORGOTTEN_KEEP_MS = 30 * 86400000
local FORGOTTEN_MAX = 10000
local QUEUE_IDLE_MS = 900000

local function forget(q)
  redis.call('SREM', KEYS[1], q)
  redis.call('HDEL', idle_key, q)
  -- still recognised by an admin pause (admin_pause_queue.lua), never walked here: bounded by age and
  -- count; best effort, as the mark: a foreign value at that key costs the admin this memory, not a dequeue
  if type(redis.pcall('ZADD', forgotten_key, now, q)) ~= 'table' then
    redis.call('ZREMRANGEBYSCORE', forgotten_key, '-inf', now - FORGOTTEN_KEEP_MS)
    redis.call('ZREMRANGEBYRANK', forgotten_key, 0, -FORGOTTEN_MAX - 1)
  end
end

-- 0b. queues marked idle (neither paused nor the default) whose ready and processing keys are both still
--     absent are checked many at a time: one EXISTS per IDLE_CHUNK queues, and a chunk in which any key
--     exists is walked as usual. A drained queue costs a key lookup per call, not six commands (10,000
--     drained queues made every dequeue of their first 15 minutes cost ~75 ms of Redis time). Any task,
--     however it got there (a go-worker client's enqueue clears no mark), makes its key exist: nothing
--     is skipped that the walk below would see.
local IDLE_CHUNK = 500
local marks = redis.pcall('HGETALL', idle_key)
local walk = names
local since_of = {}
if type(marks) == 'table' and not marks.err and #marks > 0 then
  for i = 1, #marks, 2 do since_of[marks[i]] = tonumber(marks[i + 1]) end
  walk = {}
  local quiet = {}
  for _, q in ipairs(names) do
    if since_of[q] and q ~= ARGV[6] and not paused[q] then
      quiet[#quiet + 1] = q
    else
      walk[#walk + 1] = q
    end
  end
  for first = 1, #quiet, IDLE_CHUNK do
    local last = math.min(first + IDLE_CHUNK - 1, #quiet)
    local ks = {}
    for i = first, last do
      ks[#ks + 1] = p .. 'ready:' .. quiet[i]
      ks[#ks + 1] = p .. 'processing:' .. quiet[i]
    end
    if redis.call('EXISTS', unpack(ks)) == 0 then
      for i = first, last do
        local q = quiet[i]
        if now - since_of[q] >= QUEUE_IDLE_MS then forget(q) end
      end
    else
      for i = first, last do walk[#walk + 1] = quiet[i] end
    end
  end
end
names = walk
table.sort(names)

-- 1. expired leases, every queue; a queue with no task for 15 minutes (and not paused) leaves P:queues, so
--    that every call does not walk every queue name ever used (enqueue and every admin move SADD it back)
for _, q in ipairs(names) do
  local pk = p .. 'processing:' .. q
  local expired = redis.pcall('ZRANGEBYSCORE', pk, '-inf', now, 'LIMIT', 0, window)
  if expired.err then
    redis.pcall('HSET', quarantine, pk, 'processing key is not a sorted set: queue skipped')
    expired = {}
  else
    local rk = p .. 'ready:' .. q
    for _, id in ipairs(expired) do
      redis.call('ZREM', pk, id)
      local tk = p .. 'task:' .. id
      local at = redis.pcall('HGET', tk, 'ready_at_ms')
      if type(at) == 'table' and at.err then
        redis.pcall('HSET', quarantine, tk, wrong_type(tk))
      elseif at then
        local when = int_of(at) or now
        redis.pcall('ZADD', rk, when, id)
        redis.call('HSET', tk, 'lease_token', '')
      end
    end
    local first = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
    if first[2] then
      consider(tonumber(first[2]))
      if since_of[q] then redis.pcall('HDEL', idle_key, q) end  -- it has work again (a go-worker enqueue)
    elseif q ~= ARGV[6] and not paused[q] and redis.call('EXISTS', rk) == 0 then
      -- empty: marked idle the first time, forgotten once idle for QUEUE_IDLE_MS (the mark is cleared by
      -- whatever gives the queue a task again: enqueue and every admin move)
      local mark = redis.pcall('HGET', idle_key, q)
      if type(mark) ~= 'table' then  -- an error reply (a foreign value at the key): nothing marked nor forgotten
        local since = tonumber(mark)
        if not since then
          redis.call('HSET', idle_key, q, now)
        elseif now - since >= QUEUE_IDLE_MS then
          forget(q)
        end
      end
    elseif since_of[q] and redis.call('EXISTS', rk) == 1 then
      redis.pcall('HDEL', idle_key, q)  -- marked, and it has a task again (one a go-worker client enqueued)
    end
  end
end

-- 2. pause
if redis.call('GET', KEYS[2]) == '1' then
  return {{}, next_ms, {}, moved}
end

-- 3. candidates per active queue
local scan = math.max(window, limit)
local active = {}
local cands = {}
for _, q in ipairs(names) do
  if not paused[q] and (only == nil or only[q]) then
    local rk = p .. 'ready:' .. q
    local ids = redis.pcall('ZRANGEBYSCORE', rk, '-inf', now, 'LIMIT', 0, scan)
    if ids.err then
      redis.pcall('HSET', quarantine, rk, 'ready key is not a sorted set: queue skipped')
      ids = {}
    end
    local good_name = utf8_ok(q) and q ~= ''
    local list = {}
    for idx, id in ipairs(ids) do
      local tk = p .. 'task:' .. id
      local f = redis.pcall('HMGET', tk, 'priority', 'weight', 'handler')
      if f.err then
        aside(rk, id, tk, wrong_type(tk))
      elseif not f[3] then
        -- Orphan: no hash, or a stub without a handler (go-worker's nack/delete of a missing id).
        redis.call('ZREM', rk, id)
        if redis.call('HEXISTS', tk, 'payload') == 0 then redis.call('DEL', tk) end
      elseif not good_name then
        dead(q, id, tk, 'corrupt record: queue name is not UTF-8')
      else
        local prio, weight = int_of(f[1] or '0'), int_of(f[2] or '1')
        if prio == nil or weight == nil then
          dead(q, id, tk, 'corrupt record: priority and weight must be integers')
        else
          list[#list + 1] = {id, prio, weight, idx}
        end
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
    if #ids < scan then
      -- nothing more is due now: the next due entry (if any) bounds an idle worker's wait
      local nxt = redis.pcall('ZRANGEBYSCORE', rk, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      if not nxt.err and nxt[2] then consider(tonumber(nxt[2])) end
    else
      consider(now)
    end
  end
end

-- 5. why a picked task cannot be leased (nil: it can)
local function unfit(id, f)
  if not is_uuid(id) then return 'corrupt record: task id is not a UUID' end
  if not f[1] or f[1] == '' or not utf8_ok(f[1]) then return 'corrupt record: handler name is empty or not UTF-8' end
  if f[7] and not utf8_ok(f[7]) then return 'corrupt record: queue name is not UTF-8' end
  if not f[2] then return 'corrupt record: payload missing' end
  local retries, delay, attempts = int_of(f[4] or '0'), int_of(f[5] or '0'), int_of(f[10] or '0')
  if retries == nil or retries < 0 or delay == nil or attempts == nil then
    return 'corrupt record: retries, retry_delay_ms and attempts must be integers'
  end
  if f[9] and f[9] ~= '' and int_of(f[9]) == nil then return 'corrupt record: ready_at_ms must be an integer' end
  if attempts + 1 > retries + 1 + extra then
    return 'delivery limit: delivered ' .. attempts .. ' times without settling (retries ' .. retries
      .. ', extra deliveries ' .. extra .. ')'
  end
  return nil
end

-- 4 + 5 + 6. smooth weighted round robin over queues that still have candidates; check and lease each pick
local out = {}
local held = {}
local lease_at = now + lease_ms
local n = 0
while n < limit and #active > 0 do
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
  local id = c.list[c.pos][1]
  c.pos = c.pos + 1
  if c.pos > #c.list then
    local rest = {}
    for _, q in ipairs(active) do if q ~= best then rest[#rest + 1] = q end end
    active = rest
  end
  local q = best
  local tk = p .. 'task:' .. id
  local f = redis.call('HMGET', tk, 'handler', 'payload', 'priority', 'retries', 'retry_delay_ms', 'metadata',
    'queue', 'weight', 'ready_at_ms', 'attempts', 'idempotency_key')
  local why = unfit(id, f)
  if why then
    dead(q, id, tk, why)
  else
    n = n + 1
    redis.call('ZREM', p .. 'ready:' .. q, id)
    redis.call('ZADD', p .. 'processing:' .. q, lease_at, id)
    local attempts = redis.call('HINCRBY', tk, 'attempts', 1)
    local token = request .. ':' .. n
    redis.call('HSET', tk, 'lease_at_ms', lease_at, 'updated_at_ms', now, 'lease_token', token)
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3] or '0'
    out[#out + 1] = f[4] or '0'
    out[#out + 1] = f[5] or '0'
    out[#out + 1] = attempts
    out[#out + 1] = f[6] or ''
    out[#out + 1] = q
    out[#out + 1] = f[8] or '1'
    out[#out + 1] = token
    out[#out + 1] = f[9] or ''
    out[#out + 1] = f[11] or ''
    held[#held + 1] = id
    held[#held + 1] = q
  end
end
if #active > 0 then consider(now) end
if n > 0 then
  consider(lease_at)
  redis.call('RPUSH', request_key, unpack(held))
  redis.call('PEXPIRE', request_key, lease_ms)
end

if #moved > 0 and dead_ttl > 0 then prune_dead(p, dead_key, now - dead_ttl, prune_bound) end

-- Only the queues that had work this call carry their current weight to the next call (an idle queue starts
-- again from 0): the state the caller keeps and sends back stays as small as the set of busy queues.
local wrr = {}
for _, q in ipairs(active) do
  wrr[#wrr + 1] = q
  wrr[#wrr + 1] = current[q]
end
return {out, next_ms, wrr, moved}
