-- Schedules (recurring tasks): a projection of the journal's schedule:NAME events, written in
-- the same transaction as they are. next_run_at is NULL while a schedule is paused. Every
-- firing rewrites its row: leave room on each page for the new version.
CREATE TABLE schedules (
    name         text COLLATE "C" PRIMARY KEY,
    cron         text,
    every        double precision,
    timezone     text             NOT NULL,
    task         text             NOT NULL,  -- JSON: type, payload, queue, priority, max_attempts, timeout
    paused       boolean          NOT NULL,
    misfire      text             NOT NULL,
    next_run_at  double precision,
    last_run_at  double precision,
    last_task_id text,
    fired        bigint           NOT NULL,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    anchor       double precision NOT NULL,
    seq          bigint           NOT NULL
) WITH (fillfactor = 50);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;
