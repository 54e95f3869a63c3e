-- submit_tasks: a batch of submissions alone, in one call (actorq/journal/pg_submit.py). A
-- function, not a statement sent each time, for its plan: a statement with array parameters
-- gets a custom plan at every execution (planning took as long as running it), while here the
-- plans are made once per session and kept (plan_cache_mode below).
--
-- It writes only when the general path (BatchRun) would decide the same without a lock: none
-- of the batch's queues has a max_depth, no live task holds one of its idempotency keys.
-- Otherwise it writes nothing and answers NULL, and the caller runs the general path. A key
-- taken between the check and the insert fails on tasks_live_key, which the caller retries.
-- Answers the seqs given to the rows, in their order.
CREATE FUNCTION submit_tasks(
    ids text[], types text[], queues text[], payloads text[], priorities bigint[],
    states text[], max_attempts int[], timeouts float8[], run_ats float8[], ats float8[],
    metadata text[], keys text[], retries text[], nodes text[], datas text[], actors text[],
    channel text, notices text[]
) RETURNS bigint[] LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    seqs bigint[];
BEGIN
    IF EXISTS (SELECT 1 FROM queues AS q WHERE q.max_depth IS NOT NULL
               AND q.name = ANY(submit_tasks.queues)) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1 FROM tasks AS t WHERE t.idempotency_key = ANY(keys)
        AND t.idempotency_key IS NOT NULL
        AND t.state IN ('scheduled', 'queued', 'claimed', 'running')
    ) THEN
        RETURN NULL;
    END IF;
    -- The xid before the first seq: a sealer that waits for every xid it saw to end knows no
    -- seq it saw drawn is still in flight (PostgresJournal.seal_mark).
    PERFORM pg_current_xact_id();
    seqs := ARRAY(SELECT nextval('journal_seq') FROM generate_series(1, cardinality(ids)));
    INSERT INTO journal (seq, at, task_id, kind, node, worker, data, actor)
    SELECT r.seq, r.at, r.id, 'submitted', r.node, NULL, r.data, r.actor
    FROM unnest(seqs, ids, ats, nodes, datas, actors) AS r (seq, id, at, node, data, actor);
    INSERT INTO tasks (id, type, queue, payload, priority, state, attempt, max_attempts,
                       timeout, run_at, created_at, updated_at, seq, metadata, idempotency_key,
                       result, error, started_at, finished_at, worker, lease_expires_at, retry,
                       progress)
    SELECT r.id, r.type, r.queue, r.payload, r.priority, r.state, 0, r.max_attempts, r.timeout,
           r.run_at, r.at, r.at, r.seq, r.metadata, r.key, 'null', NULL, NULL, NULL, NULL,
           NULL, r.retry, NULL
    FROM unnest(seqs, ids, types, submit_tasks.queues, payloads, priorities, states,
                submit_tasks.max_attempts, timeouts, run_ats, ats, submit_tasks.metadata, keys,
                retries)
         AS r (seq, id, type, queue, payload, priority, state, max_attempts, timeout, run_at,
               at, metadata, key, retry);
    PERFORM pg_notify(channel, m) FROM unnest(notices) AS m;
    RETURN seqs;
END
$$;
