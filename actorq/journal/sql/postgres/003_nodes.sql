-- The nodes sharing this database and the task types and queues each serves: soft state,
-- renewed at every heartbeat, not journaled (like lease heartbeats). A node is live while its
-- last heartbeat is recent enough (see actorq.nodes); a stopping node removes its own row.
-- A handful of rows, each rewritten every few seconds: no index beyond the key.
CREATE TABLE nodes (
    node           text             PRIMARY KEY,
    host           text             NOT NULL,
    pid            integer          NOT NULL,
    started_at     double precision NOT NULL,
    last_heartbeat double precision NOT NULL,  -- POSIX seconds
    types          text             NOT NULL,  -- JSON: name -> {queue, priority, max_attempts, timeout}
    queues         text                        -- JSON array, or NULL for every queue
);
