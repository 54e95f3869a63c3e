-- The journal: append-only, the truth. Nothing updates or deletes a row.
CREATE TABLE journal (
    seq     INTEGER PRIMARY KEY,
    at      REAL    NOT NULL,
    task_id TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    node    TEXT    NOT NULL,
    worker  TEXT,
    data    TEXT    NOT NULL
);
CREATE INDEX journal_task ON journal (task_id, seq);

CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;

-- The projection: each task's current state, written in the same transaction as its events.
CREATE TABLE tasks (
    id               TEXT    PRIMARY KEY,
    type             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    timeout          REAL,
    run_at           REAL    NOT NULL,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    seq              INTEGER NOT NULL,
    metadata         TEXT    NOT NULL,
    idempotency_key  TEXT,
    result           TEXT    NOT NULL,
    error            TEXT,
    started_at       REAL,
    finished_at      REAL,
    worker           TEXT,
    lease_expires_at REAL
);
-- Partial indexes keep each hot path's index as small as the work it finds.
CREATE INDEX tasks_ready ON tasks (priority DESC, run_at, seq) WHERE state = 'queued';
CREATE INDEX tasks_due ON tasks (run_at) WHERE state = 'scheduled';
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state = 'running';
CREATE UNIQUE INDEX tasks_live_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_state_created ON tasks (state, created_at, id);

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('projection_seq', '0');
