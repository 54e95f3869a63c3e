-- Queues an operator configured: a projection of their queue_configured events (subject
-- 'queue:NAME' in the journal), like tasks of theirs. tokens/tokens_at are the rate limit's
-- token bucket, soft state spent by claims and not journaled (a replay leaves it full).
-- A claim of a queue with a limit locks its row: that is what keeps nodes from overshooting
-- a concurrency limit together.
CREATE TABLE queues (
    name        text COLLATE "C" PRIMARY KEY,
    paused      boolean          NOT NULL,
    concurrency bigint,
    rate_limit  bigint,  -- tasks started per rate_period seconds, or NULL for no limit
    rate_period double precision,
    max_depth   bigint,
    retention   double precision,
    updated_at  double precision NOT NULL,
    seq         bigint           NOT NULL,
    tokens      double precision,  -- NULL: a full bucket
    tokens_at   double precision
);
