-- Schedules (recurring tasks): a projection of the journal's schedule:NAME events, written in
-- the same transaction as they are. next_run_at is NULL while a schedule is paused.
CREATE TABLE schedules (
    name         TEXT    PRIMARY KEY,
    cron         TEXT,
    every        REAL,
    timezone     TEXT    NOT NULL,
    task         TEXT    NOT NULL,  -- JSON: type, payload, queue, priority, max_attempts, timeout
    paused       INTEGER NOT NULL,
    misfire      TEXT    NOT NULL,
    next_run_at  REAL,
    last_run_at  REAL,
    last_task_id TEXT,
    fired        INTEGER NOT NULL,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL,
    anchor       REAL    NOT NULL,
    seq          INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;
