-- name: load
-- FOR UPDATE, in id order: the batch's view of these tasks cannot go stale before it commits,
-- and two batches locking overlapping sets lock them in the same order.
SELECT {columns} FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE

-- name: ready
-- SKIP LOCKED: rows another node is claiming right now are passed over, never claimed twice.
-- $1: the queues served, or NULL for all; $2: the task types served, likewise. The filters
-- only narrow the walk down tasks_ready, whose order is the claim order.
SELECT {columns} FROM tasks WHERE state = 'queued'
AND ($1::text[] IS NULL OR queue = ANY($1::text[]))
AND ($2::text[] IS NULL OR type = ANY($2::text[]))
ORDER BY priority DESC, run_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED

-- name: _unlimited_ready
-- A fragment (the leading "_": rows.table_queries puts it where its name stands in braces):
-- the CTEs of a claim's first read. "limited": whether any queue the claim serves ($1, or NULL for
-- all) limits claims (paused, a concurrency or a rate limit; queue_limits reads those, locked).
-- "picked": unless one does, up to $3 ready tasks of types $2 as `ready` takes them, locked.
limited AS MATERIALIZED (
    SELECT EXISTS (
        SELECT 1 FROM queues
        WHERE (paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
        AND ($1::text[] IS NULL OR name = ANY($1::text[]))
    ) AS yes
), picked AS MATERIALIZED (
    SELECT {columns} FROM tasks WHERE state = 'queued'
    AND ($1::text[] IS NULL OR queue = ANY($1::text[]))
    AND ($2::text[] IS NULL OR type = ANY($2::text[]))
    AND NOT (SELECT yes FROM limited)
    ORDER BY priority DESC, run_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED
)

-- name: claim_ready
-- A claim's first read, in one round trip: whether any queue it serves limits claims (paused,
-- a concurrency or a rate limit: then it takes nothing, and the claim reads those limits
-- locked, see queue_limits), else up to $3 ready tasks as `ready` takes them, each with a
-- journal number drawn after its row is locked (and so after the transaction's xid, as
-- allocate takes care to). One row with nulls when nothing is ready or a limit applies.
WITH {unlimited_ready}
SELECT limited.yes, CASE WHEN picked.id IS NOT NULL AND pg_current_xact_id() IS NOT NULL
    THEN nextval('journal_seq') END, picked.*
FROM limited LEFT JOIN picked ON true

-- name: claim_now
-- A lone claim in one statement, on its own (autocommit): what claim_ready takes, and the
-- claimed events and task updates BatchRun would write for it (lifecycle.claimed_event, then
-- its fold: see actorq/journal/pg_claim.py). $1 queues and $2 types (NULL: any), $3 how many,
-- $4 the workers, one per row in the claim's order, $5 the time, $6 the node (the events'
-- actor too), $7 the end of the lease, $8 the events' data (the same for every row). Each
-- row's number is drawn after its lock and after the transaction's xid (see allocate). One
-- row, "limited", and nothing written when a served queue limits claims; nulls when nothing
-- is ready.
WITH {unlimited_ready}, numbered AS MATERIALIZED (
    SELECT row_number() OVER (ORDER BY p.priority DESC, p.run_at, p.seq) AS k,
           p.id AS task_id
    FROM picked AS p
), drawn AS MATERIALIZED (
    SELECT n.k, n.task_id, ($4::text[])[n.k] AS worker, nextval('journal_seq') AS seq
    FROM numbered AS n WHERE pg_current_xact_id() IS NOT NULL
), new_events AS (
    INSERT INTO journal (seq, at, task_id, kind, node, worker, data, actor)
    SELECT d.seq, $5::float8, d.task_id, 'claimed', $6::text, d.worker, $8::text, $6::text
    FROM drawn AS d
), changed AS (
    UPDATE tasks AS t SET
        state = 'claimed', worker = d.worker, lease_expires_at = $7::float8,
        started_at = NULL, updated_at = $5::float8, seq = d.seq
    FROM drawn AS d
    WHERE t.id = d.task_id
)
SELECT limited.yes, d.seq, d.k, p.*
FROM limited LEFT JOIN (drawn AS d JOIN picked AS p ON p.id = d.task_id) ON true
ORDER BY d.k

-- name: peek_ready
-- The best ready task, read without a lock: whether a held task must give way at its start
-- (see migration 014).
SELECT {columns} FROM peek_ready($1::text[], $2::text[])

-- name: due
SELECT {columns} FROM tasks WHERE state = 'scheduled' AND run_at <= $1
ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED

-- name: expired
-- A lease is set only while a worker holds the task (claimed or running).
SELECT {columns} FROM tasks WHERE lease_expires_at <= $1
ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED

-- name: live_key_owner
SELECT id FROM tasks WHERE idempotency_key = $1
AND state IN ('scheduled', 'queued', 'claimed', 'running')

-- name: extend
UPDATE tasks SET lease_expires_at = $1
WHERE id IN (
    SELECT id FROM tasks WHERE id = ANY($2::text[]) AND state IN ('claimed', 'running')
    ORDER BY id FOR UPDATE
)

-- name: allocate
-- The transaction takes its xid before its first number (the one-time filter runs first), so a
-- sealer that waits for every xid it saw to end knows no number it saw drawn is still in flight
-- (see PostgresJournal.seal_mark).
SELECT nextval('journal_seq') FROM generate_series(1, $1) WHERE pg_current_xact_id() IS NOT NULL

-- name: write
-- A whole flush in one statement (one round trip): the new events, the changed tasks, then
-- the new tasks, each as one set-based statement over an array of rows (migration 015). The
-- new tasks go in only after the updates (the one-time filter reads "changed" first): a task
-- that finished earlier in the batch must have given up its idempotency key before a new task
-- takes it.
WITH new_events AS (
    INSERT INTO journal (seq, at, task_id, kind, node, worker, data, actor)
    SELECT * FROM unnest($1::journal_in[])
), changed AS (
    UPDATE tasks AS t SET
        state = u.state, attempt = u.attempt, run_at = u.run_at, updated_at = u.updated_at,
        seq = u.seq, result = u.result, error = u.error, started_at = u.started_at,
        finished_at = u.finished_at, worker = u.worker, lease_expires_at = u.lease_expires_at,
        progress = u.progress
    FROM unnest($3::task_change[]) AS u
    WHERE t.id = u.id
    RETURNING 1
), new_tasks AS (
    INSERT INTO tasks ({columns})
    SELECT * FROM unnest($2::task_in[])
    WHERE (SELECT count(*) FROM changed) >= 0
)
SELECT 1

-- name: set_path
SELECT set_config('search_path', $1, true)

-- name: notify
SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n

-- name: set_floor
UPDATE meta SET value = $1 WHERE key = 'projection_floor'

-- name: head
-- One statement, one snapshot: both numbers describe the same moment.
SELECT
    (SELECT coalesce(max(seq), 0) FROM journal),
    greatest(
        (SELECT coalesce(max(seq), 0) FROM tasks),
        (SELECT coalesce(max(seq), 0) FROM queues),
        (SELECT coalesce(max(seq), 0) FROM schedules),
        (SELECT value::bigint FROM meta WHERE key = 'projection_floor')
    )

-- name: get
SELECT {columns} FROM tasks WHERE id = $1

-- name: get_many
SELECT {columns} FROM tasks WHERE id = ANY($1::text[])

-- name: history
SELECT seq, at, task_id, kind, node, worker, data, actor FROM journal WHERE task_id = $1 ORDER BY seq

-- name: events
SELECT seq, at, task_id, kind, node, worker, data, actor FROM journal WHERE seq > $1
ORDER BY seq LIMIT $2

-- name: all_tasks
SELECT {columns} FROM tasks WHERE id > $1 ORDER BY id LIMIT $2

-- name: counts
SELECT queue, state, count(*) FROM tasks GROUP BY queue, state

-- name: next_due
SELECT min(run_at) FROM tasks WHERE state = 'scheduled'

-- name: next_lease_expiry
SELECT min(lease_expires_at) FROM tasks WHERE lease_expires_at IS NOT NULL

-- name: running_on
SELECT {columns} FROM tasks WHERE state IN ('claimed', 'running') AND worker LIKE $1 ESCAPE '\'

-- name: clear_tasks
DELETE FROM tasks

-- name: lock_tasks
-- A rebuild swaps the whole projection: writers wait, readers go on.
LOCK TABLE tasks IN EXCLUSIVE MODE

-- name: horizon
-- Every transaction with a smaller xid has finished: rows below it can no longer appear.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint

-- name: tail
SELECT xid::text::bigint, seq, at, task_id, kind, node, worker, data, actor FROM journal
WHERE xid >= $1::bigint::text::xid8 AND xid < $2::bigint::text::xid8
ORDER BY xid, seq LIMIT $3

-- name: xid_of
SELECT xid::text::bigint FROM journal WHERE seq = $1

-- name: missed
-- A stream reader's missed events (PostgresJournal.missed), a page in seq order.
SELECT seq, at, task_id, kind, node, worker, data, actor FROM journal
WHERE xid < $4::bigint::text::xid8 AND seq > $5
AND ((xid >= $2::bigint::text::xid8 AND seq > $1) OR xid >= $3::bigint::text::xid8)
ORDER BY seq LIMIT $6

-- name: tail_floor
-- The lowest seq committed by a transaction the caller has not been handed yet.
SELECT min(seq) FROM journal WHERE xid >= $1::bigint::text::xid8

-- name: register_node
-- Registering again is the heartbeat: the node's own columns are written whole, so a node
-- whose row was removed (it looked dead) comes back with its next heartbeat. An operator's
-- wishes (paused, drain) are kept, unless the node starts ($11): a new process starts
-- afresh. Answers the wishes, so the heartbeat is how the node hears them.
INSERT INTO nodes (node, host, pid, started_at, last_heartbeat, types, queues, version,
                   concurrency, running)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (node) DO UPDATE SET host = excluded.host, pid = excluded.pid,
started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat,
types = excluded.types, queues = excluded.queues, version = excluded.version,
concurrency = excluded.concurrency, running = excluded.running, gone_at = NULL,
paused = CASE WHEN $11 THEN false ELSE nodes.paused END,
drain = CASE WHEN $11 THEN false ELSE nodes.drain END
RETURNING paused, drain

-- name: remove_node
DELETE FROM nodes WHERE node = $1

-- name: leave_node
-- A goodbye: the row stays, marked gone, until forget_nodes drops it.
UPDATE nodes SET gone_at = $2, running = '[]' WHERE node = $1

-- name: forget_nodes
DELETE FROM nodes WHERE last_heartbeat < $1

-- name: live_nodes
SELECT node, host, pid, started_at, last_heartbeat, types, queues, version, concurrency, running, paused, drain, gone_at FROM nodes
WHERE last_heartbeat >= $1 AND gone_at IS NULL ORDER BY node

-- name: list_nodes
-- Live nodes and those gone (by goodbye or silence) since the horizon.
SELECT node, host, pid, started_at, last_heartbeat, types, queues, version, concurrency, running, paused, drain, gone_at FROM nodes
WHERE last_heartbeat >= $1 ORDER BY node

-- name: get_node
SELECT node, host, pid, started_at, last_heartbeat, types, queues, version, concurrency, running, paused, drain, gone_at FROM nodes WHERE node = $1

-- name: command_node
-- An operator's wish: NULL leaves a column as it is; a drain once asked stays asked.
UPDATE nodes SET paused = COALESCE($2, paused), drain = (drain OR $3)
WHERE node = $1

-- name: queued_by_type
-- Walks only the queued rows (the partial index tasks_ready), never finished ones.
SELECT queue, type, count(*) FROM tasks WHERE state = 'queued' GROUP BY queue, type

-- name: dead
-- Dead letters for a bulk retry or purge, in id (creation) order after a position; rows
-- another batch is settling are passed over.
SELECT {columns} FROM tasks WHERE state = 'dead'
AND ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR type = $2)
AND ($3::text IS NULL OR id > $3)
ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED

-- name: dead_ids
SELECT {columns} FROM tasks WHERE id = ANY($1::text[]) AND state = 'dead'
AND ($2::text IS NULL OR queue = $2) AND ($3::text IS NULL OR type = $3)
ORDER BY id FOR UPDATE SKIP LOCKED

-- name: finished
-- Finished tasks past a cutoff, oldest first: what the retention sweepers expire. SKIP
-- LOCKED: two nodes sweeping at once take different rows, so each task expires once.
SELECT {columns} FROM tasks
WHERE state IN ('succeeded', 'dead', 'cancelled') AND finished_at <= $1
AND ($2::text[] IS NULL OR queue = ANY($2::text[])) AND NOT (queue = ANY($3::text[]))
ORDER BY finished_at LIMIT $4 FOR UPDATE SKIP LOCKED

-- name: remove
-- The projection's watermark is max(seq) of its rows: a removed row takes its seq with it,
-- so the floor keeps the watermark where the removal left it.
WITH gone AS (DELETE FROM tasks WHERE id = ANY($1::text[]) RETURNING 1)
UPDATE meta SET value = greatest(value::bigint, $2::bigint)::text
WHERE key = 'projection_floor' AND (SELECT count(*) FROM gone) >= 0

-- name: last_kind
SELECT kind FROM journal WHERE task_id = $1 ORDER BY seq DESC LIMIT 1
-- name: ready_except
-- The ready walk of a claim some of whose queues may give no more now (paused, at their
-- concurrency or rate limit): $3 names them.
SELECT {columns} FROM tasks WHERE state = 'queued'
AND ($1::text[] IS NULL OR queue = ANY($1::text[]))
AND ($2::text[] IS NULL OR type = ANY($2::text[]))
AND queue <> ALL($3::text[])
ORDER BY priority DESC, run_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED

-- name: queue_limits
-- The configured queues among those served ($1, or NULL for all) whose settings limit
-- claims, with their token buckets. Locked, in name order: claims of nodes that share a
-- limited queue take turns, so none overshoots its concurrency or rate limit.
SELECT {queue_columns}, tokens, tokens_at FROM queues
WHERE (paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
AND ($1::text[] IS NULL OR name = ANY($1::text[])) ORDER BY name FOR UPDATE

-- name: queue_rows
SELECT {queue_columns} FROM queues WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE

-- name: all_queues
SELECT {queue_columns} FROM queues ORDER BY name

-- name: depth_limits
SELECT name, max_depth FROM queues WHERE max_depth IS NOT NULL

-- name: held_counts
-- Tasks of these queues a worker holds, claimed or running: those with a lease (tasks_held).
SELECT queue, count(*) FROM tasks
WHERE lease_expires_at IS NOT NULL AND queue = ANY($1::text[]) GROUP BY queue

-- name: depth_counts
-- Queued and scheduled tasks of these queues, from the two partial indexes that hold exactly
-- those (tasks_ready, tasks_due): no index more for every task to keep up.
SELECT queue, count(*) FROM (
    SELECT queue FROM tasks WHERE state = 'queued' AND queue = ANY($1::text[])
    UNION ALL
    SELECT queue FROM tasks WHERE state = 'scheduled' AND queue = ANY($1::text[])
) AS live GROUP BY queue

-- name: save_queue
-- $13: whether the rate limit changed, which fills its bucket again.
INSERT INTO queues ({queue_columns}, tokens, tokens_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
concurrency = excluded.concurrency, rate_limit = excluded.rate_limit,
rate_period = excluded.rate_period, max_depth = excluded.max_depth,
retention = excluded.retention, updated_at = excluded.updated_at, seq = excluded.seq,
retry = excluded.retry,
tokens = CASE WHEN $13 THEN NULL ELSE queues.tokens END,
tokens_at = CASE WHEN $13 THEN NULL ELSE queues.tokens_at END

-- name: spend
UPDATE queues SET tokens = $1, tokens_at = $2 WHERE name = $3

-- name: in_states
SELECT {columns} FROM tasks WHERE queue = $1 AND state = ANY($2::text[])
ORDER BY id LIMIT $3 FOR UPDATE

-- name: oldest_queued
SELECT queue, min(run_at) FROM tasks WHERE state = 'queued' GROUP BY queue

-- name: finished_since
SELECT queue, count(*) FROM tasks WHERE finished_at >= $1 GROUP BY queue

-- name: clear_queues
DELETE FROM queues
-- name: load_schedule
SELECT {schedule_columns} FROM schedules WHERE name = $1 FOR UPDATE

-- name: due_schedules
-- SKIP LOCKED: a row another node is firing right now is passed over; once that node
-- commits, the row's next tick lies ahead and it is not due any more.
SELECT {schedule_columns} FROM schedules
WHERE next_run_at IS NOT NULL AND next_run_at <= $1
ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED

-- name: write_schedules
-- The events, the new rows, the changed rows (guarded on the seq they were read with) and the
-- deleted rows, in one statement; answers how many rows were changed and deleted, which the
-- caller compares with how many it meant to.
WITH new_events AS (
    INSERT INTO journal (seq, at, task_id, kind, node, worker, data, actor)
    SELECT * FROM unnest(
        $1::bigint[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $41::text[]
    )
), inserted AS (
    INSERT INTO schedules ({schedule_columns})
    SELECT * FROM unnest(
        $8::text[], $9::text[], $10::float8[], $11::text[], $12::text[], $13::boolean[],
        $14::text[], $15::float8[], $16::float8[], $17::text[], $18::bigint[], $19::float8[],
        $20::float8[], $21::float8[], $22::bigint[]
    )
), changed AS (
    UPDATE schedules AS s SET
        cron = u.cron, every = u.every, timezone = u.timezone, task = u.task,
        paused = u.paused, misfire = u.misfire, next_run_at = u.next_run_at,
        last_run_at = u.last_run_at, last_task_id = u.last_task_id, fired = u.fired,
        created_at = u.created_at, updated_at = u.updated_at, anchor = u.anchor, seq = u.seq
    FROM unnest(
        $23::text[], $24::text[], $25::float8[], $26::text[], $27::text[], $28::boolean[],
        $29::text[], $30::float8[], $31::float8[], $32::text[], $33::bigint[], $34::float8[],
        $35::float8[], $36::float8[], $37::bigint[], $38::bigint[]
    ) AS u (name, cron, every, timezone, task, paused, misfire, next_run_at, last_run_at,
            last_task_id, fired, created_at, updated_at, anchor, seq, before_seq)
    WHERE s.name = u.name AND s.seq = u.before_seq
    RETURNING 1
), deleted AS (
    DELETE FROM schedules AS s USING unnest($39::text[], $40::bigint[]) AS d (name, seq)
    WHERE s.name = d.name AND s.seq = d.seq
    RETURNING 1
)
SELECT (SELECT count(*) FROM changed) + (SELECT count(*) FROM deleted)

-- name: all_schedules
SELECT {schedule_columns} FROM schedules ORDER BY name

-- name: get_schedule
SELECT {schedule_columns} FROM schedules WHERE name = $1

-- name: next_schedule_due
SELECT min(next_run_at) FROM schedules WHERE next_run_at IS NOT NULL

-- name: clear_schedules
DELETE FROM schedules

-- name: raise_floor
UPDATE meta SET value = greatest(value::bigint, $1::bigint)::text WHERE key = 'projection_floor'

-- name: create_token
-- A name is taken for good: nothing is written if a token (revoked or not) has it.
INSERT INTO tokens (name, scope, hash, created_at, created_by, revoked_at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING name

-- name: all_tokens
SELECT name, scope, hash, created_at, created_by, revoked_at FROM tokens ORDER BY name

-- name: revoke_token
-- Revoking twice keeps the first time.
UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE name = $1
RETURNING name, scope, hash, created_at, created_by, revoked_at

-- name: submit
-- Submissions alone (see migrations 013 and 016): one round trip, run outside an explicit
-- transaction, so it commits with the session's synchronous_commit (on): durable when answered.
SELECT submit_rows($1::submission_in[], $2::text, $3::text[])

-- name: submitted_seqs
-- Which of these tasks have their submitted event, and its seq: whether a batch of
-- submissions whose answer was lost with its connection committed.
SELECT task_id, seq FROM journal WHERE kind = 'submitted' AND task_id = ANY($1::text[])
