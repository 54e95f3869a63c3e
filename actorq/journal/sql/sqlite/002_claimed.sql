-- A worker may hold a task before its handler starts (state 'claimed'): it holds a lease
-- and its idempotency key stays taken, as a running task's does.
DROP INDEX tasks_lease;
CREATE INDEX tasks_held ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
DROP INDEX tasks_live_key;
CREATE UNIQUE INDEX tasks_live_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND state IN ('scheduled', 'queued', 'claimed', 'running');
