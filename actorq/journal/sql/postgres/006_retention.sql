-- Retention: finished tasks leave the projection once they are older than the retention
-- period (an 'expired' event). The sweepers of every node walk them oldest first (SKIP
-- LOCKED); this index holds only the finished rows, so finding the next batch never reads
-- live work.
CREATE INDEX tasks_finished ON tasks (finished_at)
    WHERE state IN ('succeeded', 'dead', 'cancelled');
