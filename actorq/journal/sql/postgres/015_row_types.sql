-- Row types for the batch's write (queries.sql, "write"): the rows go as one array of rows per
-- table, not one array per column. The driver checks every element of an array it sends for
-- nesting; a row is one element where its columns were one each, which halved the client's
-- cost per row sent (about 2.9 to 1.4 microseconds for a task's 13 changing columns).
-- Fields in the order of rows.EVENT_COLUMNS, rows.TASK_COLUMNS and rows.update_row: a
-- migration that changes those changes these types too.
CREATE TYPE journal_in AS (
    seq bigint, at float8, task_id text, kind text, node text, worker text, data text,
    actor text
);
CREATE TYPE task_in AS (
    id text, type text, queue text, payload text, priority bigint, state text, attempt int,
    max_attempts int, timeout float8, run_at float8, created_at float8, updated_at float8,
    seq bigint, metadata text, idempotency_key text, result text, error text,
    started_at float8, finished_at float8, worker text, lease_expires_at float8, retry text,
    progress text
);
CREATE TYPE task_change AS (
    id text, state text, attempt int, run_at float8, updated_at float8, seq bigint,
    result text, error text, started_at float8, finished_at float8, worker text,
    lease_expires_at float8, progress text
);
