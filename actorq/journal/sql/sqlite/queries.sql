-- name: load
SELECT {columns} FROM tasks WHERE id IN (SELECT value FROM json_each(?))

-- name: ready
-- INDEXED BY: the planner would otherwise pick tasks_state and sort every queued row.
-- ?1: the queues served (JSON array) or NULL for all; ?2 the task types served, likewise.
SELECT {columns} FROM tasks INDEXED BY tasks_ready WHERE state = 'queued'
AND (?1 IS NULL OR queue IN (SELECT value FROM json_each(?1)))
AND (?2 IS NULL OR type IN (SELECT value FROM json_each(?2)))
ORDER BY priority DESC, run_at, seq LIMIT ?3

-- name: due
SELECT {columns} FROM tasks INDEXED BY tasks_due
WHERE state = 'scheduled' AND run_at <= ? ORDER BY run_at LIMIT ?

-- name: expired
-- A lease is set only while a worker holds the task (claimed or running).
SELECT {columns} FROM tasks INDEXED BY tasks_held
WHERE lease_expires_at <= ? ORDER BY lease_expires_at LIMIT ?

-- name: live_key_owner
SELECT id FROM tasks WHERE idempotency_key = ?
AND state IN ('scheduled', 'queued', 'claimed', 'running')

-- name: extend
UPDATE tasks SET lease_expires_at = ?
WHERE state IN ('claimed', 'running') AND id IN (SELECT value FROM json_each(?))

-- name: insert_event
INSERT INTO journal (seq, at, task_id, kind, node, worker, data, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_task
INSERT INTO tasks ({columns}) VALUES ({placeholders})

-- name: update_task
UPDATE tasks SET state = ?2, attempt = ?3, run_at = ?4, updated_at = ?5, seq = ?6,
result = ?7, error = ?8, started_at = ?9, finished_at = ?10, worker = ?11,
lease_expires_at = ?12, progress = ?13
WHERE id = ?1

-- name: set_watermark
UPDATE meta SET value = ? WHERE key = 'projection_seq'

-- name: watermark
SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'projection_seq'

-- name: journal_head
SELECT coalesce(max(seq), 0) FROM journal

-- name: get
SELECT {columns} FROM tasks WHERE id = ?

-- name: history
SELECT seq, at, task_id, kind, node, worker, data, actor FROM journal WHERE task_id = ? ORDER BY seq

-- name: events
SELECT seq, at, task_id, kind, node, worker, data, actor FROM journal WHERE seq > ? ORDER BY seq LIMIT ?

-- name: all_tasks
SELECT {columns} FROM tasks WHERE id > ? ORDER BY id LIMIT ?

-- name: counts
SELECT queue, state, count(*) FROM tasks GROUP BY queue, state

-- name: next_due
SELECT min(run_at) FROM tasks WHERE state = 'scheduled'

-- name: next_lease_expiry
SELECT min(lease_expires_at) FROM tasks WHERE lease_expires_at IS NOT NULL

-- name: running_on
SELECT {columns} FROM tasks WHERE state IN ('claimed', 'running') AND worker LIKE ? ESCAPE '\'

-- name: clear_tasks
DELETE FROM tasks

-- name: register_node
-- Registering again is the heartbeat: the node's own columns are written whole, so a node
-- whose row was removed (it looked dead) comes back with its next heartbeat. An operator's
-- wishes (paused, drain) are kept, unless the node starts (?11): a new process starts
-- afresh. Answers the wishes, so the heartbeat is how the node hears them.
INSERT INTO nodes (node, host, pid, started_at, last_heartbeat, types, queues, version,
                   concurrency, running)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (node) DO UPDATE SET host = excluded.host, pid = excluded.pid,
started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat,
types = excluded.types, queues = excluded.queues, version = excluded.version,
concurrency = excluded.concurrency, running = excluded.running, gone_at = NULL,
paused = CASE WHEN ?11 THEN 0 ELSE nodes.paused END,
drain = CASE WHEN ?11 THEN 0 ELSE nodes.drain END
RETURNING paused, drain

-- name: remove_node
DELETE FROM nodes WHERE node = ?

-- name: leave_node
-- A goodbye: the row stays, marked gone, until forget_nodes drops it.
UPDATE nodes SET gone_at = ?2, running = '[]' WHERE node = ?1

-- name: forget_nodes
DELETE FROM nodes WHERE last_heartbeat < ?

-- name: live_nodes
SELECT node, host, pid, started_at, last_heartbeat, types, queues, version, concurrency, running, paused, drain, gone_at FROM nodes
WHERE last_heartbeat >= ? AND gone_at IS NULL ORDER BY node

-- name: list_nodes
-- Live nodes and those gone (by goodbye or silence) since the horizon.
SELECT node, host, pid, started_at, last_heartbeat, types, queues, version, concurrency, running, paused, drain, gone_at FROM nodes
WHERE last_heartbeat >= ? ORDER BY node

-- name: get_node
SELECT node, host, pid, started_at, last_heartbeat, types, queues, version, concurrency, running, paused, drain, gone_at FROM nodes WHERE node = ?

-- name: command_node
-- An operator's wish: NULL leaves a column as it is; a drain once asked stays asked.
UPDATE nodes SET paused = COALESCE(?2, paused), drain = (drain OR ?3)
WHERE node = ?1

-- name: queued_by_type
-- Walks only the queued rows (tasks_state leads with state), never finished ones.
SELECT queue, type, count(*) FROM tasks WHERE state = 'queued' GROUP BY queue, type

-- name: dead
-- Dead letters for a bulk retry or purge, in id (creation) order after a position.
-- ?1 queue or NULL; ?2 type or NULL; ?3 the last id seen, or NULL.
SELECT {columns} FROM tasks INDEXED BY tasks_state WHERE state = 'dead'
AND (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR type = ?2)
AND (?3 IS NULL OR id > ?3)
ORDER BY id LIMIT ?4

-- name: dead_ids
-- The dead letters among the ids named (JSON array), through the primary key.
SELECT {columns} FROM tasks WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'dead'
AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR type = ?3)
ORDER BY id

-- name: finished
-- Finished tasks past a cutoff, oldest first: what the retention sweeper expires.
-- ?2: only these queues (JSON array) or NULL; ?3: not these queues (JSON array).
SELECT {columns} FROM tasks INDEXED BY tasks_finished
WHERE state IN ('succeeded', 'dead', 'cancelled') AND finished_at <= ?1
AND (?2 IS NULL OR queue IN (SELECT value FROM json_each(?2)))
AND queue NOT IN (SELECT value FROM json_each(?3))
ORDER BY finished_at LIMIT ?4

-- name: remove_tasks
DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?))

-- name: last_kind
-- How a task's history ends: whether one missing from the projection was purged or expired.
SELECT kind FROM journal WHERE task_id = ? ORDER BY seq DESC LIMIT 1
-- name: ready_except
-- The ready walk of a claim some of whose queues may give no more now (paused, at their
-- concurrency or rate limit): ?3 names them (JSON array).
SELECT {columns} FROM tasks INDEXED BY tasks_ready WHERE state = 'queued'
AND (?1 IS NULL OR queue IN (SELECT value FROM json_each(?1)))
AND (?2 IS NULL OR type IN (SELECT value FROM json_each(?2)))
AND queue NOT IN (SELECT value FROM json_each(?3))
ORDER BY priority DESC, run_at, seq LIMIT ?4

-- name: queue_limits
-- The configured queues among those served (?1, JSON array, or NULL for all) whose settings
-- limit claims, with their token buckets.
SELECT {queue_columns}, tokens, tokens_at FROM queues
WHERE (paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
AND (?1 IS NULL OR name IN (SELECT value FROM json_each(?1))) ORDER BY name

-- name: queue_rows
SELECT {queue_columns} FROM queues WHERE name IN (SELECT value FROM json_each(?)) ORDER BY name

-- name: all_queues
SELECT {queue_columns} FROM queues ORDER BY name

-- name: depth_limits
SELECT name, max_depth FROM queues WHERE max_depth IS NOT NULL

-- name: held_counts
-- Tasks of these queues (JSON array) a worker holds, claimed or running: those with a lease.
SELECT queue, count(*) FROM tasks INDEXED BY tasks_held
WHERE lease_expires_at IS NOT NULL AND queue IN (SELECT value FROM json_each(?1))
GROUP BY queue

-- name: depth_counts
-- Queued and scheduled tasks of these queues (JSON array), from the two partial indexes that
-- hold exactly those: no index more for every task to keep up.
SELECT queue, count(*) FROM (
    SELECT queue FROM tasks INDEXED BY tasks_ready
    WHERE state = 'queued' AND queue IN (SELECT value FROM json_each(?1))
    UNION ALL
    SELECT queue FROM tasks INDEXED BY tasks_due
    WHERE state = 'scheduled' AND queue IN (SELECT value FROM json_each(?1))
) GROUP BY queue

-- name: save_queue
-- ?13: whether the rate limit changed, which fills its bucket again.
INSERT INTO queues ({queue_columns}, tokens, tokens_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
concurrency = excluded.concurrency, rate_limit = excluded.rate_limit,
rate_period = excluded.rate_period, max_depth = excluded.max_depth,
retention = excluded.retention, updated_at = excluded.updated_at, seq = excluded.seq,
retry = excluded.retry,
tokens = CASE WHEN ?13 THEN NULL ELSE queues.tokens END,
tokens_at = CASE WHEN ?13 THEN NULL ELSE queues.tokens_at END

-- name: spend
UPDATE queues SET tokens = ?, tokens_at = ? WHERE name = ?

-- name: in_states
SELECT {columns} FROM tasks WHERE queue = ? AND state IN (SELECT value FROM json_each(?))
ORDER BY id LIMIT ?

-- name: oldest_queued
SELECT queue, min(run_at) FROM tasks WHERE state = 'queued' GROUP BY queue

-- name: finished_since
SELECT queue, count(*) FROM tasks WHERE finished_at >= ? GROUP BY queue

-- name: clear_queues
DELETE FROM queues
-- name: load_schedule
SELECT {schedule_columns} FROM schedules WHERE name = ?

-- name: due_schedules
SELECT {schedule_columns} FROM schedules INDEXED BY schedules_due
WHERE next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at LIMIT ?

-- name: insert_schedule
INSERT INTO schedules ({schedule_columns}) VALUES ({schedule_placeholders})

-- name: update_schedule
-- Guarded on the seq the row was read with: a row changed meanwhile is not overwritten.
UPDATE schedules SET cron = ?2, every = ?3, timezone = ?4, task = ?5, paused = ?6,
misfire = ?7, next_run_at = ?8, last_run_at = ?9, last_task_id = ?10, fired = ?11,
created_at = ?12, updated_at = ?13, anchor = ?14, seq = ?15
WHERE name = ?1 AND seq = ?16

-- name: delete_schedule
DELETE FROM schedules WHERE name = ? AND seq = ?

-- name: all_schedules
SELECT {schedule_columns} FROM schedules ORDER BY name

-- name: get_schedule
SELECT {schedule_columns} FROM schedules WHERE name = ?

-- name: next_schedule_due
SELECT min(next_run_at) FROM schedules WHERE next_run_at IS NOT NULL

-- name: clear_schedules
DELETE FROM schedules

-- name: raise_watermark
UPDATE meta SET value = ?1 WHERE key = 'projection_seq' AND CAST(value AS INTEGER) < ?1

-- name: create_token
-- A name is taken for good: nothing is written if a token (revoked or not) has it.
INSERT INTO tokens (name, scope, hash, created_at, created_by, revoked_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING RETURNING name

-- name: all_tokens
SELECT name, scope, hash, created_at, created_by, revoked_at FROM tokens ORDER BY name

-- name: revoke_token
-- Revoking twice keeps the first time.
UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE name = ?1
RETURNING name, scope, hash, created_at, created_by, revoked_at
