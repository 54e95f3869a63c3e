-- What a node says of itself at each heartbeat (version, concurrency, the tasks it holds),
-- and what operators ask of it: ``paused`` and ``drain`` are written by the API or CLI on any
-- node and read back by the target at its heartbeat (a heartbeat never overwrites them).
-- ``gone_at``: when the node said goodbye; its row stays a while so lists show it gone.
ALTER TABLE nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN concurrency INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN running TEXT NOT NULL DEFAULT '[]';  -- JSON array of task ids
ALTER TABLE nodes ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN drain INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN gone_at REAL;
-- The last progress a running handler reported (JSON: fraction, message, at), as the fold of
-- its task's ``progress`` events sets it; NULL: none this attempt.
ALTER TABLE tasks ADD COLUMN progress TEXT;
