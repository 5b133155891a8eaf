-- 0012: queue speed. A claim walks the ready index once: `ready` locks one row
-- more than the batch, and that row's existence is the `more` flag (the row is
-- not claimed, and its lock ends with the claim's transaction a moment later).
-- Until now a second probe walked the same index again, past every dead entry
-- that tasks claimed since the last vacuum leave at its front. A row another
-- claim holds no longer counts as "more" (that claim takes it), so a worker no
-- longer wakes a neighbour for tasks it cannot get.
--
-- Everything else is as 0010 left it: expired leases first, limited queues
-- under their claim lock, asynchronous commit.

CREATE OR REPLACE FUNCTION bg.claim_tasks(queue text, batch integer, worker text, lease_s double precision)
RETURNS SETOF bg.claimed_task
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cap integer;
    slots integer := claim_tasks.batch;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT q.concurrency_limit INTO cap FROM bg.queues q WHERE q.queue = claim_tasks.queue;
    IF cap IS NOT NULL THEN
        -- Serialise claims on limited queues only, so the count below stays true.
        PERFORM bg._claim_lock(claim_tasks.queue);
        SELECT greatest(0, cap - count(*))::int INTO slots FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'running' AND t.lease_until >= now();
        slots := least(slots, claim_tasks.batch);
        IF slots = 0 THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    WITH expired AS (
        SELECT t.id FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'running' AND t.lease_until < now()
          AND t.attempts < t.max_attempts
        ORDER BY t.lease_until
        LIMIT slots
        FOR UPDATE SKIP LOCKED
    ), ready AS (
        -- One row more than fits: whether it exists is the `more` flag, so the
        -- index is walked once (past the dead entries of tasks claimed since
        -- the last vacuum) instead of a second time by a separate probe.
        SELECT t.id FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'queued' AND t.run_at <= now()
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT slots + 1
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT p.id FROM (SELECT e.id, 0 AS o FROM expired e
                          UNION ALL SELECT r.id, 1 FROM ready r) p
        ORDER BY p.o
        LIMIT slots
    ), updated AS (
        UPDATE bg.tasks t
        SET status = 'running', attempts = t.attempts + 1, locked_by = claim_tasks.worker,
            lease_until = now() + make_interval(secs => claim_tasks.lease_s), started_at = now(),
            cancel_requested = false
        FROM picked
        WHERE t.id = picked.id
        RETURNING t.id, t.queue, t.payload, t.priority, t.attempts, t.max_attempts, t.timeout_s,
                  t.created_at, t.run_at
    )
    SELECT u.id, u.queue, u.payload, u.priority, u.attempts, u.max_attempts, u.timeout_s,
           u.created_at, u.run_at,
           (SELECT count(*) FROM expired) + (SELECT count(*) FROM ready) > slots
    FROM updated u
    ORDER BY u.priority DESC, u.run_at, u.id;
END
$$;
