-- The journal: append-only, the truth. Nothing updates or deletes a row (the trigger below).
-- seq comes from a sequence without a per-session cache (CACHE 1), so numbers are handed out
-- in time order: a transaction that locks a task and then takes a number always gets a larger
-- one than the transaction that changed that task before it. Numbers still *commit* out of
-- order, so readers that follow the journal live tail it by xid (see PostgresJournal.tail).
CREATE SEQUENCE journal_seq AS bigint CACHE 1;

CREATE TABLE journal (
    seq     bigint           PRIMARY KEY,
    at      double precision NOT NULL,
    task_id text COLLATE "C" NOT NULL,
    kind    text             NOT NULL,
    node    text             NOT NULL,
    worker  text,
    -- JSON kept as the exact text the codec wrote (as in SQLite): jsonb would refuse values
    -- the codec accepts (NaN, "\u0000") and would reorder keys.
    data    text             NOT NULL,
    -- The writing transaction: the safe watermark for tailing readers.
    xid     xid8             NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX journal_task ON journal (task_id, seq);
CREATE INDEX journal_xid ON journal (xid, seq);

CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER journal_no_change BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_append_only();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION journal_append_only();

-- The projection: each task's current state, written in the same transaction as its events.
-- Every event rewrites its task's row, so the table churns: leave room on each page for the
-- new row version and vacuum after a small fraction of the rows changed, not the default 20%.
CREATE TABLE tasks (
    id               text COLLATE "C" PRIMARY KEY,
    type             text             NOT NULL,
    queue            text             NOT NULL,
    payload          text             NOT NULL,
    priority         bigint           NOT NULL,
    state            text             NOT NULL,
    attempt          integer          NOT NULL,
    max_attempts     integer          NOT NULL,
    timeout          double precision,
    run_at           double precision NOT NULL,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    seq              bigint           NOT NULL,
    metadata         text             NOT NULL,
    idempotency_key  text,
    result           text             NOT NULL,
    error            text,
    started_at       double precision,
    finished_at      double precision,
    worker           text,
    lease_expires_at double precision
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 1
);
-- Partial indexes keep each hot path's index as small as the work it finds.
CREATE INDEX tasks_ready ON tasks (priority DESC, run_at, seq) WHERE state = 'queued';
CREATE INDEX tasks_due ON tasks (run_at) WHERE state = 'scheduled';
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state = 'running';
CREATE UNIQUE INDEX tasks_live_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_state_created ON tasks (state, created_at, id);
-- The projection's watermark is max(seq): no single row that every transaction updates
-- (which would serialize all nodes on its lock).
CREATE INDEX tasks_seq ON tasks (seq);

-- Rarely written settings. 'projection_floor' is set only by a rebuild or a catch-up, which
-- may declare the projection current up to a seq no task row carries any more.
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO meta (key, value) VALUES ('projection_floor', '0');
