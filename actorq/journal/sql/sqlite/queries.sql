-- name: load
SELECT {columns} FROM tasks WHERE id IN (SELECT value FROM json_each(?))

-- name: ready
-- INDEXED BY: the planner would otherwise pick tasks_state_created and sort every queued row.
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
INSERT INTO journal (seq, at, task_id, kind, node, worker, data) VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: insert_task
INSERT INTO tasks ({columns}) VALUES ({placeholders})

-- name: update_task
UPDATE tasks SET state = ?2, attempt = ?3, run_at = ?4, updated_at = ?5, seq = ?6,
result = ?7, error = ?8, started_at = ?9, finished_at = ?10, worker = ?11,
lease_expires_at = ?12
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
SELECT seq, at, task_id, kind, node, worker, data FROM journal WHERE task_id = ? ORDER BY seq

-- name: events
SELECT seq, at, task_id, kind, node, worker, data FROM journal WHERE seq > ? ORDER BY seq LIMIT ?

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
-- Registering again is the heartbeat: the whole row is written, so a node whose row was
-- removed (it looked dead) comes back with its next heartbeat.
INSERT INTO nodes (node, host, pid, started_at, last_heartbeat, types, queues)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (node) DO UPDATE SET host = excluded.host, pid = excluded.pid,
started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat,
types = excluded.types, queues = excluded.queues

-- name: remove_node
DELETE FROM nodes WHERE node = ?

-- name: live_nodes
SELECT node, host, pid, started_at, last_heartbeat, types, queues FROM nodes
WHERE last_heartbeat >= ? ORDER BY node

-- name: queued_by_type
-- Walks only the queued rows (tasks_state_created leads with state), never finished ones.
SELECT queue, type, count(*) FROM tasks WHERE state = 'queued' GROUP BY queue, type

-- name: dead
-- Dead letters for a bulk retry or purge, in (created_at, id) order after a position.
-- ?1 queue or NULL; ?2 type or NULL; ?3, ?4 the last (created_at, id) seen, or NULL.
SELECT {columns} FROM tasks INDEXED BY tasks_state_created WHERE state = 'dead'
AND (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR type = ?2)
AND (?3 IS NULL OR (created_at, id) > (?3, ?4))
ORDER BY created_at, id LIMIT ?5

-- name: dead_ids
-- The dead letters among the ids named (JSON array), through the primary key.
SELECT {columns} FROM tasks WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'dead'
AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR type = ?3)
ORDER BY created_at, id

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
