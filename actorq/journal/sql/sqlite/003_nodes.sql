-- The nodes sharing this database and the task types and queues each serves: soft state,
-- renewed at every heartbeat, not journaled (like lease heartbeats). A node is live while its
-- last heartbeat is recent enough (see actorq.nodes); a stopping node removes its own row.
CREATE TABLE nodes (
    node           TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    started_at     REAL    NOT NULL,
    last_heartbeat REAL    NOT NULL,  -- POSIX seconds
    types          TEXT    NOT NULL,  -- JSON: name -> {queue, priority, max_attempts, timeout}
    queues         TEXT               -- JSON array, or NULL for every queue
);
