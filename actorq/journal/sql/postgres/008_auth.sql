-- Who did it: each journal event names its actor (a token's name for API calls,
-- cli:USER@HOST for the command line, the node for what the runtime decides itself).
-- NULL: an event written before actors were recorded. Adding a nullable column without a
-- default rewrites no row, so the append-only trigger is not involved.
ALTER TABLE journal ADD COLUMN actor text;
-- GET /api/v1/tasks?by=NAME: the tasks a given actor submitted.
CREATE INDEX journal_submitted_by ON journal (actor, task_id) WHERE kind = 'submitted';

-- API tokens: a secret is shown once when it is created and stored only as its SHA-256
-- (secrets are 256 random bits, so a slow hash would add nothing). A revoked token keeps
-- its row, so its name stays reserved and the journal's actors keep meaning one token.
CREATE TABLE tokens (
    name       text COLLATE "C" PRIMARY KEY,
    scope      text             NOT NULL,
    hash       text             NOT NULL UNIQUE,
    created_at double precision NOT NULL,
    created_by text             NOT NULL,
    revoked_at double precision
);
