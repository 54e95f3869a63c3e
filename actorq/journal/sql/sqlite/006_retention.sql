-- Retention: finished tasks leave the projection once they are older than the retention
-- period (an 'expired' event). The sweeper walks them oldest first; this index holds only the
-- finished rows, so finding the next batch never reads live work.
CREATE INDEX tasks_finished ON tasks (finished_at)
    WHERE state IN ('succeeded', 'dead', 'cancelled');
