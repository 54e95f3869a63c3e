-- Seals and archives (actorq/journal/seals.py, archive.py): the named blocks of this dialect.

-- name: seal_head
SELECT {seal_columns} FROM seals ORDER BY last_seq DESC LIMIT 1

-- name: seals_after
SELECT {seal_columns} FROM seals WHERE last_seq > $1 ORDER BY last_seq LIMIT $2

-- name: insert_seal
INSERT INTO seals ({seal_columns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)

-- name: rows_after
-- Journal rows with seq in (after, upto], in the columns EVENT_COLUMNS names.
SELECT {event_columns} FROM journal WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3

-- name: seal_lock
-- One sealer at a time per schema; the others find it taken and let that one seal.
SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))

-- name: seq_drawn
-- The last journal number handed out (0: none yet). With CACHE 1, across every session.
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM journal_seq

-- name: next_xid
-- Every transaction that holds an xid now has one below this: this statement's own, taken
-- now. (A snapshot's xmax will not do: it is the last *completed* xid + 1, and a transaction
-- still running may hold an xid at or past it.)
SELECT pg_current_xact_id()::text::bigint

-- name: oldest_xid
-- Every transaction with an xid below this has ended.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint

-- name: archived_through
SELECT coalesce(max(last_seq), 0) FROM archived

-- name: record_archived
INSERT INTO archived (last_seq, first_seq, segment, at) VALUES ($1, $2, $3, $4)

-- name: delete_archived
DELETE FROM journal WHERE seq >= $1 AND seq <= $2

-- name: record_verification
INSERT INTO verifications (at, ok, head, report) VALUES ($1, $2, $3, $4)

-- name: last_verification
SELECT at, ok, head, report FROM verifications ORDER BY id DESC LIMIT 1
