-- What a node says of itself at each heartbeat (version, concurrency, the tasks it holds),
-- and what operators ask of it: ``paused`` and ``drain`` are written by the API or CLI on any
-- node and read back by the target at its heartbeat (a heartbeat never overwrites them), or
-- at once on the NOTIFY sent with the change. ``gone_at``: when the node said goodbye; its
-- row stays a while so lists show it gone.
ALTER TABLE nodes ADD COLUMN version text NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN concurrency integer NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN running text NOT NULL DEFAULT '[]';  -- JSON array of task ids
ALTER TABLE nodes ADD COLUMN paused boolean NOT NULL DEFAULT false;
ALTER TABLE nodes ADD COLUMN drain boolean NOT NULL DEFAULT false;
ALTER TABLE nodes ADD COLUMN gone_at double precision;
-- The last progress a running handler reported (JSON: fraction, message, at), as the fold of
-- its task's ``progress`` events sets it; NULL: none this attempt.
ALTER TABLE tasks ADD COLUMN progress text;
