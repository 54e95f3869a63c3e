-- Seals and archives (actorq/journal/seals.py, archive.py): the named blocks of this dialect.

-- name: seal_head
SELECT {seal_columns} FROM seals ORDER BY last_seq DESC LIMIT 1

-- name: seals_after
SELECT {seal_columns} FROM seals WHERE last_seq > ? ORDER BY last_seq LIMIT ?

-- name: insert_seal
INSERT INTO seals ({seal_columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: rows_after
-- Journal rows with seq in (after, upto], in the columns EVENT_COLUMNS names.
SELECT {event_columns} FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?

-- name: journal_top
SELECT coalesce(max(seq), 0) FROM journal

-- name: archived_through
SELECT coalesce(max(last_seq), 0) FROM archived

-- name: record_archived
INSERT INTO archived (last_seq, first_seq, segment, at) VALUES (?, ?, ?, ?)

-- name: delete_archived
DELETE FROM journal WHERE seq >= ? AND seq <= ?

-- name: record_verification
INSERT INTO verifications (at, ok, head, report) VALUES (?, ?, ?, ?)

-- name: last_verification
SELECT at, ok, head, report FROM verifications ORDER BY id DESC LIMIT 1
