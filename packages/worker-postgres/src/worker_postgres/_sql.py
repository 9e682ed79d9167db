"""Every statement the backend runs, each one round trip, rendered once per schema.

Times are the server's (``clock_timestamp()``; the claim compares with ``statement_timestamp()``, which an index
scan can use), so nodes with skewed clocks agree on expiries. For a leased task ``available_at`` is its lease
expiry, for a ready one its ready time: the claim reads due tasks and expired leases through two partial
indexes, so neither scan walks over the other state's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

__all__ = ("Statements",)

_ENQUEUE = """
WITH input AS (
    SELECT * FROM unnest(
        %(ids)s::uuid[], %(queues)s::text[], %(handlers)s::text[], %(payloads)s::bytea[], %(priorities)s::int[],
        %(weights)s::int[], %(retries)s::int[], %(delays)s::float8[], %(metadata)s::text[], %(keys)s::text[],
        %(run_at)s::float8[]
    ) WITH ORDINALITY AS i(id, queue, handler, payload, priority, weight, retries, retry_delay, metadata,
                           idempotency_key, run_at, ord)
),
known AS (INSERT INTO {s}.queues (name) SELECT DISTINCT queue FROM input ON CONFLICT DO NOTHING)
INSERT INTO {s}.tasks (id, queue, handler, payload, priority, weight, retries, retry_delay, metadata,
                       idempotency_key, available_at, ready_at)
SELECT id, queue, handler, payload, priority, weight, retries, retry_delay, metadata::jsonb, idempotency_key,
       at, at
FROM (
    SELECT *, CASE WHEN run_at IS NULL THEN clock_timestamp()
                   ELSE greatest(clock_timestamp(), to_timestamp(run_at)) END AS at
    FROM input
) AS timed ORDER BY ord
ON CONFLICT DO NOTHING
RETURNING id
"""

_ONE_AT = "greatest(clock_timestamp(), coalesce(to_timestamp(%(run_at)s::float8), clock_timestamp()))"

_ENQUEUE_ONE = (
    """
INSERT INTO {s}.tasks (id, queue, handler, payload, priority, weight, retries, retry_delay, metadata,
                       idempotency_key, available_at, ready_at)
VALUES (%(id)s, %(queue)s, %(handler)s, %(payload)s, %(priority)s, %(weight)s, %(retries)s, %(delay)s,
        %(metadata)s::jsonb, %(key)s, """
    + _ONE_AT
    + ", "
    + _ONE_AT
    + """)
ON CONFLICT DO NOTHING
RETURNING id
"""
)

_ENQUEUE_ONE_NEW_QUEUE = (
    "WITH known AS (INSERT INTO {s}.queues (name) VALUES (%(queue)s) ON CONFLICT DO NOTHING)" + _ENQUEUE_ONE
)

# Dead-letter retention, a CTE of every statement that dead-letters (`{when}`: it did): up to %(prune)s of the
# oldest dead tasks that failed more than %(dead_ttl)s seconds ago are deleted (NULL: none), locked ones skipped.
# The statement's snapshot predates its own dead-lettering, so the task it just failed is never among them.
_PRUNE = """
pruned AS (
    DELETE FROM {s}.tasks WHERE seq IN (
        SELECT seq FROM {s}.tasks
        WHERE state = 'dead' AND failed_at < clock_timestamp() - make_interval(secs => %(dead_ttl)s::float8)
          AND EXISTS ({when})
        ORDER BY failed_at, seq LIMIT %(prune)s FOR UPDATE SKIP LOCKED
    )
)
"""

# The claim: the unpaused queues that have ready or leased tasks (found by a skip-scan of the partial indexes,
# one index seek per such queue: walking every queue name ever used made a claim take 41 ms with 10,000 drained
# queues), with weights and this node's round-robin position passed in, up to `limit` due
# rows per queue locked with SKIP LOCKED, ordered by round (a queue serves `weight` tasks per round), then
# queue rotation, then rank; the first `limit` are leased, or dead-lettered past the delivery limit.
_CLAIM = (
    """
WITH RECURSIVE ready_q(name) AS (
    (SELECT queue FROM {s}.tasks WHERE state = 'ready' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue FROM {s}.tasks t WHERE t.state = 'ready' AND t.queue > r.name ORDER BY t.queue LIMIT 1)
    FROM ready_q r WHERE r.name IS NOT NULL
),
leased_q(name) AS (
    (SELECT queue FROM {s}.tasks WHERE state = 'leased' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue FROM {s}.tasks t WHERE t.state = 'leased' AND t.queue > r.name ORDER BY t.queue LIMIT 1)
    FROM leased_q r WHERE r.name IS NOT NULL
),
live AS (
    SELECT name FROM ready_q WHERE name IS NOT NULL UNION SELECT name FROM leased_q WHERE name IS NOT NULL
),
q AS (
    SELECT qu.name, coalesce(w.weight, 1) AS weight, coalesce(w.offs, 0) AS offs,
           CASE WHEN qu.name > %(cursor)s OR (qu.name = %(cursor)s AND NOT %(after)s) THEN 0 ELSE 1 END AS wrap
    FROM {s}.queues qu
    JOIN live ON live.name = qu.name
    LEFT JOIN unnest(%(wnames)s::text[], %(wweights)s::int[], %(woffs)s::int[]) AS w(name, weight, offs)
        ON w.name = qu.name
    WHERE NOT qu.paused
      AND NOT (SELECT paused FROM {s}.control WHERE id = 1)
      AND (%(only)s::text[] IS NULL OR qu.name = ANY(%(only)s::text[]))
),
due AS (
    SELECT q.name AS queue, q.weight, q.offs, q.wrap, c.* FROM q CROSS JOIN LATERAL (
        SELECT t.id, t.priority, t.weight AS task_weight, t.ready_at, t.seq FROM {s}.tasks t
        WHERE t.queue = q.name AND t.state = 'ready' AND t.available_at <= statement_timestamp()
        ORDER BY t.priority, t.weight DESC, t.ready_at, t.seq
        LIMIT %(limit)s
        FOR UPDATE OF t SKIP LOCKED
    ) c
),
expired AS (
    SELECT q.name AS queue, q.weight, q.offs, q.wrap, c.* FROM q CROSS JOIN LATERAL (
        SELECT t.id, t.priority, t.weight AS task_weight, t.ready_at, t.seq FROM {s}.tasks t
        WHERE t.queue = q.name AND t.state = 'leased' AND t.available_at <= statement_timestamp()
        ORDER BY t.available_at
        LIMIT %(limit)s
        FOR UPDATE OF t SKIP LOCKED
    ) c
),
cand AS (
    SELECT id, queue, weight, offs, wrap,
           row_number() OVER (PARTITION BY queue ORDER BY priority, task_weight DESC, ready_at, seq) AS rn
    FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS both_states
),
pick AS (
    SELECT id, queue, rn, row_number() OVER (ORDER BY (rn - 1 + offs) / weight, wrap, queue, rn) AS ord
    FROM cand ORDER BY ord LIMIT %(limit)s
),
upd AS (
    UPDATE {s}.tasks t SET
        state = CASE WHEN t.attempts >= greatest(t.retries, 0) + 1 + %(extra)s THEN 'dead' ELSE 'leased' END,
        attempts = CASE WHEN t.attempts >= greatest(t.retries, 0) + 1 + %(extra)s
                        THEN t.attempts ELSE t.attempts + 1 END,
        token = CASE WHEN t.attempts >= greatest(t.retries, 0) + 1 + %(extra)s
                     THEN NULL ELSE %(node)s || '/' || gen_random_uuid()::text END,
        available_at = clock_timestamp() + make_interval(secs => %(lease)s),
        updated_at = clock_timestamp(),
        last_error = CASE WHEN t.attempts >= greatest(t.retries, 0) + 1 + %(extra)s
                          THEN 'delivery limit: delivered ' || t.attempts || ' times without settling'
                          ELSE t.last_error END,
        error_type = CASE WHEN t.attempts >= greatest(t.retries, 0) + 1 + %(extra)s
                          THEN '' ELSE t.error_type END,
        failed_at = CASE WHEN t.attempts >= greatest(t.retries, 0) + 1 + %(extra)s
                         THEN clock_timestamp() ELSE t.failed_at END
    FROM pick WHERE t.id = pick.id
    RETURNING pick.ord, pick.queue AS picked_queue, t.id, t.queue, t.handler, t.payload, t.priority, t.weight,
              t.retries, t.retry_delay, t.metadata, t.attempts, t.token, t.state,
              extract(epoch FROM t.available_at)::float8 AS expires, t.idempotency_key
),
"""
    + _PRUNE.replace("{when}", "SELECT 1 FROM upd WHERE upd.state = 'dead'")
    + """,
nxt AS (
    SELECT extract(epoch FROM min(x.at) - clock_timestamp())::float8 AS due_in FROM q CROSS JOIN LATERAL (
        (
            SELECT t.available_at AS at FROM {s}.tasks t
            WHERE t.queue = q.name AND t.state = 'ready' AND t.id NOT IN (SELECT id FROM pick)
            ORDER BY t.available_at LIMIT 1
        )
        UNION ALL
        (
            SELECT t.available_at AS at FROM {s}.tasks t
            WHERE t.queue = q.name AND t.state = 'leased' AND t.id NOT IN (SELECT id FROM pick)
            ORDER BY t.available_at LIMIT 1
        )
    ) x
)
SELECT nxt.due_in, upd.* FROM nxt LEFT JOIN upd ON true ORDER BY upd.ord
"""
)

_FENCE = "id = %(id)s AND token = %(token)s AND state = 'leased'"

_STORE = """
INSERT INTO {s}.outcomes AS o (id, queue, expires_at, data)
SELECT id, queue, clock_timestamp() + make_interval(secs => %(ttl)s), %(data)s FROM settled
ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, finished_at = EXCLUDED.finished_at,
    expires_at = EXCLUDED.expires_at, data = EXCLUDED.data
RETURNING 1
"""

# Many acks, with or without an outcome each, in one statement; the ids of the tasks it deleted.
_ACK_MANY = """
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::text[], %(ttls)s::float8[], %(data)s::bytea[])
        AS i(id, token, ttl, data)
),
settled AS (
    DELETE FROM {s}.tasks t USING input i WHERE t.id = i.id AND t.token = i.token AND t.state = 'leased'
    RETURNING t.id, t.queue
),
stored AS (
    INSERT INTO {s}.outcomes AS o (id, queue, expires_at, data)
    SELECT d.id, d.queue, clock_timestamp() + make_interval(secs => i.ttl), i.data
    FROM settled d JOIN input i ON i.id = d.id WHERE i.data IS NOT NULL
    ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, finished_at = EXCLUDED.finished_at,
        expires_at = EXCLUDED.expires_at, data = EXCLUDED.data
)
SELECT id::text FROM settled
"""


_NACK = (
    """
UPDATE {s}.tasks SET state = 'ready', token = NULL, updated_at = clock_timestamp(),
    available_at = clock_timestamp() + make_interval(secs => %(delay)s),
    ready_at = clock_timestamp() + make_interval(secs => %(delay)s)
WHERE """
    + _FENCE
    + " RETURNING 1"
)

_FAIL_SET = (
    """
UPDATE {s}.tasks SET state = 'dead', token = NULL, updated_at = clock_timestamp(), failed_at = clock_timestamp(),
    last_error = %(error)s, error_type = %(error_type)s, traceback = %(traceback)s
WHERE """
    + _FENCE
)

_FAIL = (
    "WITH settled AS ("
    + _FAIL_SET
    + " RETURNING 1), "
    + _PRUNE.replace("{when}", "SELECT 1 FROM settled")
    + "SELECT 1 FROM settled"
)

_FAIL_OUTCOME = (
    "WITH settled AS ("
    + _FAIL_SET
    + " RETURNING id, queue), "
    + _PRUNE.replace("{when}", "SELECT 1 FROM settled")
    + _STORE
)

_EXTEND = (
    """
UPDATE {s}.tasks SET available_at = clock_timestamp() + make_interval(secs => %(duration)s),
    updated_at = clock_timestamp()
WHERE """
    + _FENCE
    + " RETURNING extract(epoch FROM available_at)::float8"
)

# Renew a node's leases, refresh its heartbeat, drop long-dead nodes and a bounded batch of expired outcomes.
_EXTEND_MANY = """
WITH held AS (
    UPDATE {s}.tasks t SET available_at = clock_timestamp() + make_interval(secs => %(duration)s),
        updated_at = clock_timestamp()
    FROM unnest(%(ids)s::uuid[], %(tokens)s::text[]) AS l(id, token)
    WHERE t.id = l.id AND t.token = l.token AND t.state = 'leased'
    RETURNING t.id, extract(epoch FROM t.available_at)::float8 AS expires
),
beat AS (
    INSERT INTO {s}.nodes (id, info, last_seen, expires_at)
    SELECT %(node)s, %(info)s::jsonb, clock_timestamp(), clock_timestamp() + make_interval(secs => %(node_ttl)s)
    WHERE %(node)s <> ''
    ON CONFLICT (id) DO UPDATE SET info = EXCLUDED.info, last_seen = EXCLUDED.last_seen,
        expires_at = EXCLUDED.expires_at
),
gone AS (DELETE FROM {s}.nodes WHERE expires_at < clock_timestamp() - interval '1 hour'),
expired AS (
    DELETE FROM {s}.outcomes WHERE id IN (
        SELECT id FROM {s}.outcomes WHERE expires_at <= clock_timestamp()
        ORDER BY expires_at LIMIT %(cleanup)s FOR UPDATE SKIP LOCKED
    )
)
SELECT coalesce(array_agg(id::text), '{{}}'), coalesce(max(expires), 0) FROM held
"""

_RELEASE = """
UPDATE {s}.tasks t SET state = 'ready', token = NULL, attempts = greatest(t.attempts - 1, 0),
    available_at = clock_timestamp(), updated_at = clock_timestamp()
FROM unnest(%(ids)s::uuid[], %(tokens)s::text[]) AS l(id, token)
WHERE t.id = l.id AND t.token = l.token AND t.state = 'leased'
"""

_CLEANUP = """
WITH expired AS (
    DELETE FROM {s}.outcomes WHERE id IN (
        SELECT id FROM {s}.outcomes WHERE expires_at <= clock_timestamp()
        ORDER BY expires_at LIMIT %(cleanup)s FOR UPDATE SKIP LOCKED
    ) RETURNING 1
) SELECT count(*) FROM expired
"""

_STORE_MANY = """
INSERT INTO {s}.outcomes (id, queue, expires_at, data)
SELECT id, queue, clock_timestamp() + make_interval(secs => %(ttl)s), data
FROM unnest(%(ids)s::uuid[], %(queues)s::text[], %(data)s::bytea[]) AS o(id, queue, data)
ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, finished_at = EXCLUDED.finished_at,
    expires_at = EXCLUDED.expires_at, data = EXCLUDED.data
"""

_GET_OUTCOME = "SELECT data FROM {s}.outcomes WHERE id = %(id)s AND expires_at > clock_timestamp()"

_RECENT = """
SELECT id, data FROM {s}.outcomes WHERE queue = %(queue)s AND expires_at > clock_timestamp()
ORDER BY finished_at DESC LIMIT %(limit)s
"""

_LEAVE = "DELETE FROM {s}.nodes WHERE id = %(node)s"

_PAUSE_ALL = "UPDATE {s}.control SET paused = %(paused)s WHERE id = 1"

_PAUSE_QUEUE = """
INSERT INTO {s}.queues (name, paused) VALUES (%(queue)s, %(paused)s)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused
"""

_WAKE = "SELECT pg_notify(%(channel)s, '')"


@dataclass(frozen=True, slots=True)
class Statements:
    """The statements of one schema, composed once."""

    enqueue: sql.Composed
    enqueue_one: sql.Composed
    enqueue_one_new_queue: sql.Composed
    claim: sql.Composed
    ack_many: sql.Composed
    nack: sql.Composed
    fail: sql.Composed
    fail_outcome: sql.Composed
    extend: sql.Composed
    extend_many: sql.Composed
    release: sql.Composed
    cleanup: sql.Composed
    store_many: sql.Composed
    get_outcome: sql.Composed
    recent: sql.Composed
    leave: sql.Composed
    pause_all: sql.Composed
    pause_queue: sql.Composed
    wake: sql.Composed

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        """Every statement with ``schema`` quoted in."""
        s = sql.Identifier(schema)

        def render(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=s)

        return cls(
            enqueue=render(_ENQUEUE),
            enqueue_one=render(_ENQUEUE_ONE),
            enqueue_one_new_queue=render(_ENQUEUE_ONE_NEW_QUEUE),
            claim=render(_CLAIM),
            ack_many=render(_ACK_MANY),
            nack=render(_NACK),
            fail=render(_FAIL),
            fail_outcome=render(_FAIL_OUTCOME),
            extend=render(_EXTEND),
            extend_many=render(_EXTEND_MANY),
            release=render(_RELEASE),
            cleanup=render(_CLEANUP),
            store_many=render(_STORE_MANY),
            get_outcome=render(_GET_OUTCOME),
            recent=render(_RECENT),
            leave=render(_LEAVE),
            pause_all=render(_PAUSE_ALL),
            pause_queue=render(_PAUSE_QUEUE),
            wake=render(_WAKE),
        )
