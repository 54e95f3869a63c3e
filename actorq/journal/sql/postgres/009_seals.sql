-- Seals: the journal's tamper evidence (actorq/journal/seals.py; README "Audit trail"). Each
-- seal covers the consecutive seqs first_seq..last_seq, holds the hash of the rows in that
-- range (canonical encoding) chained to the previous seal's hash, and a digest of each row
-- so a verify can name the first row that differs. Seals are never changed or removed.
CREATE TABLE seals (
    last_seq  bigint           PRIMARY KEY,
    first_seq bigint           NOT NULL,
    row_count bigint           NOT NULL,
    fields    text             NOT NULL,
    prev      text             NOT NULL,
    hash      text             NOT NULL,
    keyed     boolean          NOT NULL,
    at        double precision NOT NULL,
    node      text             NOT NULL,
    digests   bytea            NOT NULL
);
CREATE TRIGGER seals_no_change BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION journal_append_only();
CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION journal_append_only();

-- Sealed ranges moved to archive segments (actorq/journal/archive.py), one row per seal.
-- Recording a range here, in the transaction that deletes its rows, is the one way rows
-- leave the journal: the delete trigger lets through only rows of an archived sealed range.
CREATE TABLE archived (
    last_seq  bigint           PRIMARY KEY REFERENCES seals (last_seq),
    first_seq bigint           NOT NULL,
    segment   text             NOT NULL,
    at        double precision NOT NULL
);
CREATE TRIGGER archived_no_change BEFORE UPDATE OR DELETE ON archived
    FOR EACH ROW EXECUTE FUNCTION journal_append_only();
CREATE TRIGGER archived_no_truncate BEFORE TRUNCATE ON archived
    FOR EACH STATEMENT EXECUTE FUNCTION journal_append_only();

CREATE FUNCTION journal_archive_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM archived WHERE last_seq >= OLD.seq AND first_seq <= OLD.seq
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the journal is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
DROP TRIGGER journal_no_change ON journal;
CREATE TRIGGER journal_no_change BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_archive_only();

-- The outcome of each `actorq journal verify`, newest last: what the dashboard shows.
CREATE TABLE verifications (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      double precision NOT NULL,
    ok      boolean NOT NULL,
    head    bigint NOT NULL,
    report  text NOT NULL
);
