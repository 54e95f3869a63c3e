-- peek_ready: the best ready task of these queues and types (NULL: any), read without a lock,
-- in one round trip (actorq/journal/postgres.py, PostgresJournal.peek_ready). A worker asks it
-- before it starts a task it holds. A function for its SET clause: the walk must follow
-- tasks_ready's order and stop at the first row (see _NO_BITMAP in postgres.py), which a bare
-- statement could only ask for inside a transaction of its own (three more round trips).
CREATE FUNCTION peek_ready(queues text[], types text[]) RETURNS SETOF tasks
LANGUAGE sql STABLE SET enable_bitmapscan = off AS $$
    SELECT * FROM tasks AS t WHERE t.state = 'queued'
    AND (peek_ready.queues IS NULL OR t.queue = ANY(peek_ready.queues))
    AND (peek_ready.types IS NULL OR t.type = ANY(peek_ready.types))
    ORDER BY t.priority DESC, t.run_at, t.seq LIMIT 1
$$;
