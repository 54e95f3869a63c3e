-- Who did it: each journal event names its actor (a token's name for API calls,
-- cli:USER@HOST for the command line, the node for what the runtime decides itself).
-- NULL: an event written before actors were recorded. Adding a nullable column rewrites no
-- row, so the append-only triggers are not involved.
ALTER TABLE journal ADD COLUMN actor TEXT;
-- GET /api/v1/tasks?by=NAME: the tasks a given actor submitted.
CREATE INDEX journal_submitted_by ON journal (actor, task_id) WHERE kind = 'submitted';

-- API tokens: a secret is shown once when it is created and stored only as its SHA-256
-- (secrets are 256 random bits, so a slow hash would add nothing). A revoked token keeps
-- its row, so its name stays reserved and the journal's actors keep meaning one token.
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at REAL
);
