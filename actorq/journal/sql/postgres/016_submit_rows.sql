-- submit_rows: submit_tasks (migration 013) with the batch as one array of rows instead of an
-- array per column (the reason is migration 015's: the client's driver checks each array
-- element it sends, and a row is one element). Same gate, same writes, same answer: the seqs
-- given to the rows in their order, or NULL when the general path must decide. submit_tasks
-- stays, for nodes of the previous version that share the database during an upgrade, as a
-- wrapper of submit_rows (at the end): one body decides for both.
CREATE TYPE submission_in AS (
    id text, type text, queue text, payload text, priority bigint, state text,
    max_attempts int, timeout float8, run_at float8, at float8, metadata text, key text,
    retry text, node text, data text, actor text
);

CREATE FUNCTION submit_rows(batch submission_in[], channel text, notices text[])
RETURNS bigint[] LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    seqs bigint[];
BEGIN
    IF EXISTS (
        SELECT 1 FROM queues AS q WHERE q.max_depth IS NOT NULL
        AND q.name = ANY(ARRAY(SELECT DISTINCT b.queue FROM unnest(batch) AS b))
    ) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1 FROM tasks AS t
        WHERE t.idempotency_key = ANY(
            ARRAY(SELECT b.key FROM unnest(batch) AS b WHERE b.key IS NOT NULL)
        )
        AND t.state IN ('scheduled', 'queued', 'claimed', 'running')
    ) THEN
        RETURN NULL;
    END IF;
    -- The xid before the first seq: a sealer that waits for every xid it saw to end knows no
    -- seq it saw drawn is still in flight (PostgresJournal.seal_mark).
    PERFORM pg_current_xact_id();
    seqs := ARRAY(SELECT nextval('journal_seq') FROM generate_series(1, cardinality(batch)));
    INSERT INTO journal (seq, at, task_id, kind, node, worker, data, actor)
    SELECT r.seq, r.at, r.id, 'submitted', r.node, NULL, r.data, r.actor
    FROM unnest(seqs, batch)
         AS r (seq, id, type, queue, payload, priority, state, max_attempts, timeout, run_at,
               at, metadata, key, retry, node, data, actor);
    INSERT INTO tasks (id, type, queue, payload, priority, state, attempt, max_attempts,
                       timeout, run_at, created_at, updated_at, seq, metadata, idempotency_key,
                       result, error, started_at, finished_at, worker, lease_expires_at, retry,
                       progress)
    SELECT r.id, r.type, r.queue, r.payload, r.priority, r.state, 0, r.max_attempts, r.timeout,
           r.run_at, r.at, r.at, r.seq, r.metadata, r.key, 'null', NULL, NULL, NULL, NULL,
           NULL, r.retry, NULL
    FROM unnest(seqs, batch)
         AS r (seq, id, type, queue, payload, priority, state, max_attempts, timeout, run_at,
               at, metadata, key, retry, node, data, actor);
    PERFORM pg_notify(channel, m) FROM unnest(notices) AS m;
    RETURN seqs;
END
$$;

CREATE OR REPLACE FUNCTION submit_tasks(
    ids text[], types text[], queues text[], payloads text[], priorities bigint[],
    states text[], max_attempts int[], timeouts float8[], run_ats float8[], ats float8[],
    metadata text[], keys text[], retries text[], nodes text[], datas text[], actors text[],
    channel text, notices text[]
) RETURNS bigint[] LANGUAGE sql AS $$
    SELECT submit_rows(
        ARRAY(
            SELECT ROW(r.id, r.type, r.queue, r.payload, r.priority, r.state, r.max_attempts,
                       r.timeout, r.run_at, r.at, r.metadata, r.key, r.retry, r.node, r.data,
                       r.actor)::submission_in
            FROM unnest(ids, types, queues, payloads, priorities, states, max_attempts,
                        timeouts, run_ats, ats, metadata, keys, retries, nodes, datas, actors)
                 WITH ORDINALITY
                 AS r (id, type, queue, payload, priority, state, max_attempts, timeout,
                       run_at, at, metadata, key, retry, node, data, actor, k)
            ORDER BY r.k
        ),
        channel,
        notices
    )
$$;
