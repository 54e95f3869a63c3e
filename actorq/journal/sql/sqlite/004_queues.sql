-- Queues an operator configured: a projection of their queue_configured events (subject
-- 'queue:NAME' in the journal), like tasks of theirs. tokens/tokens_at are the rate limit's
-- token bucket, soft state spent by claims and not journaled (a replay leaves it full).
CREATE TABLE queues (
    name        TEXT    PRIMARY KEY,
    paused      INTEGER NOT NULL,
    concurrency INTEGER,
    rate_limit  INTEGER,  -- tasks started per rate_period seconds, or NULL for no limit
    rate_period REAL,
    max_depth   INTEGER,
    retention   REAL,
    updated_at  REAL    NOT NULL,
    seq         INTEGER NOT NULL,
    tokens      REAL,     -- NULL: a full bucket
    tokens_at   REAL
);
