-- Seals: the journal's tamper evidence (actorq/journal/seals.py; README "Audit trail"). Each
-- seal covers the consecutive seqs first_seq..last_seq, holds the hash of the rows in that
-- range (canonical encoding) chained to the previous seal's hash, and a digest of each row
-- so a verify can name the first row that differs. Seals are never changed or removed.
CREATE TABLE seals (
    last_seq  INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    fields    TEXT    NOT NULL,
    prev      TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    keyed     INTEGER NOT NULL,
    at        REAL    NOT NULL,
    node      TEXT    NOT NULL,
    digests   BLOB    NOT NULL
);
CREATE TRIGGER seals_no_update BEFORE UPDATE ON seals
BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END;
CREATE TRIGGER seals_no_delete BEFORE DELETE ON seals
BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END;

-- Sealed ranges moved to archive segments (actorq/journal/archive.py), one row per seal.
-- Recording a range here, in the transaction that deletes its rows, is the one way rows
-- leave the journal: the delete trigger lets through only rows of an archived sealed range.
CREATE TABLE archived (
    last_seq  INTEGER PRIMARY KEY REFERENCES seals (last_seq),
    first_seq INTEGER NOT NULL,
    segment   TEXT    NOT NULL,
    at        REAL    NOT NULL
);
CREATE TRIGGER archived_no_update BEFORE UPDATE ON archived
BEGIN SELECT RAISE(ABORT, 'archive records are append-only'); END;
CREATE TRIGGER archived_no_delete BEFORE DELETE ON archived
BEGIN SELECT RAISE(ABORT, 'archive records are append-only'); END;

DROP TRIGGER journal_no_delete;
CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
WHEN NOT EXISTS (
    SELECT 1 FROM archived WHERE last_seq >= OLD.seq AND first_seq <= OLD.seq
)
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;

-- The outcome of each `actorq journal verify`, newest last: what the dashboard shows.
CREATE TABLE verifications (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    ok      INTEGER NOT NULL,
    head    INTEGER NOT NULL,
    report  TEXT NOT NULL
);
