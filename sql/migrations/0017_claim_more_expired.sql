-- 0017: a claim's `more` flag also counts expired leases beyond the batch, so a
-- worker whose claim came back full without `more` knows the queue holds nothing
-- else it could take, and waits for a NOTIFY instead of claiming again at once
-- (that second claim came back empty: three claims in ten in PGQueuer's shape).
-- The rest is 0015's claim.

CREATE OR REPLACE FUNCTION bg.claim_tasks(queue text, batch integer, worker text, lease_s double precision)
RETURNS SETOF bg.claimed_task
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cap integer;
    slots integer := claim_tasks.batch;
    bounds constant double precision[] := bg.claim_latency_bounds();
    nbounds constant integer := cardinality(bounds);
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
        -- A re-claim after an expired lease waited since the lease ran out. One row
        -- more than fits, like `ready`: a backlog of expired leases is "more" too.
        SELECT t.id, t.lease_until AS since FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'running' AND t.lease_until < now()
          AND t.attempts < t.max_attempts
        ORDER BY t.lease_until
        LIMIT slots + 1
        FOR UPDATE SKIP LOCKED
    ), ready AS (
        -- One row more than fits: whether it exists is the `more` flag, so the
        -- index is walked once.
        SELECT t.id, greatest(t.run_at, t.created_at) AS since FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'queued' AND t.run_at <= now()
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT slots + 1
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT p.id, p.since FROM (SELECT e.id, e.since, 0 AS o FROM expired e
                                   UNION ALL SELECT r.id, r.since, 1 FROM ready r) p
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
                  t.created_at, t.run_at, greatest(0, date_part('epoch', now() - picked.since)) AS waited
    ), bucketed AS (
        -- width_bucket counts the bounds <= waited; the bucket is the first bound >= waited
        SELECT u.queue, u.waited, width_bucket(u.waited, bounds) AS i FROM updated u
    ), counted AS (
        INSERT INTO bg.counters AS k (metric, scope, label, shard, value)
        SELECT d.metric, d.scope, d.label, pg_backend_pid() % 16, d.d
        FROM (SELECT 'claim_latency' AS metric, b.queue AS scope,
                     CASE WHEN b.i > 0 AND bounds[b.i] = b.waited THEN bounds[b.i]::text
                          WHEN b.i < nbounds THEN bounds[b.i + 1]::text
                          ELSE '+Inf' END AS label,
                     count(*)::double precision AS d
              FROM bucketed b GROUP BY 2, 3
              UNION ALL
              SELECT 'claim_latency_sum', b.queue, '', sum(b.waited) FROM bucketed b GROUP BY 2) d
        ORDER BY 1, 2, 3
        ON CONFLICT (metric, scope, label, shard) DO UPDATE SET value = k.value + excluded.value
    )
    SELECT u.id, u.queue, u.payload, u.priority, u.attempts, u.max_attempts, u.timeout_s,
           u.created_at, u.run_at,
           (SELECT count(*) FROM expired) + (SELECT count(*) FROM ready) > slots
    FROM updated u
    ORDER BY u.priority DESC, u.run_at, u.id;
END
$$;
