-- node_leave.lua: a node that stops takes its heartbeat record away (ours).
--
-- KEYS[1]  P:nodes          ZSET  node id -> expiry epoch ms of its last heartbeat
-- KEYS[2]  P:node:<id>      HASH  info (JSON), last_seen_ms, leases
-- ARGV[1]  node id
-- Touches: the two keys above.
-- Returns 1.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
