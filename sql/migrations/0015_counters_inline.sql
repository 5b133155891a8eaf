-- 0015: the queue's functions keep bg.counters themselves, in the statement that
-- changes the tasks, instead of the AFTER UPDATE trigger of 0011. That trigger
-- made every UPDATE of bg.tasks (claims, completions, lease renewals) capture
-- each row's old and new versions in transition tables, then ran a second
-- plpgsql function that joined them and upserted: about 15 % of the queue's
-- throughput. The counters mean what they meant (see 0011): a task counts once
-- when it reaches done, failed or cancelled, and a claim observes how long the
-- task waited. Every change of a task's status goes through these functions
-- (the API roles have no table rights on bg.tasks), so none is missed; an
-- UPDATE written by hand as the owner is not counted.
--
-- The claim's `more` flag also counts expired leases beyond the batch, so a worker
-- whose claim came back full without `more` knows the queue holds nothing else it
-- could take, and waits for a NOTIFY instead of claiming again at once (that second
-- claim came back empty: three claims in ten in PGQueuer's shape).
--
-- Bodies are those of 0012 (claim), 0014 (complete) and 0003 (fail, rescue,
-- cancel) with the counting added; attributes, owners and grants are unchanged.

DROP TRIGGER tasks_count ON bg.tasks;
DROP FUNCTION bg._count_tasks();

-- Add n tasks of one queue that reached a final status to the counters.
CREATE FUNCTION bg._count_finished(queue text, status text, n bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO bg.counters AS k (metric, scope, label, shard, value)
    SELECT 'tasks_finished', queue, status, pg_backend_pid() % 16, n
    WHERE status IN ('done', 'failed', 'cancelled') AND n > 0
    ON CONFLICT (metric, scope, label, shard) DO UPDATE SET value = k.value + excluded.value
$$;

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

CREATE OR REPLACE FUNCTION bg.complete_tasks(ids bigint[], results text[], worker text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    -- Asynchronous commit: a crash can forget a completion, and the task runs again.
    -- Not under synchronous replication, where an acknowledged completion must survive
    -- a failover to the standby.
    IF current_setting('synchronous_standby_names') = '' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    WITH finished AS (
        UPDATE bg.tasks t
        SET status = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'done' END,
            result = r.result::jsonb, finished_at = now(), locked_by = NULL, lease_until = NULL
        FROM unnest(ids, results) AS r(id, result)
        WHERE t.id = r.id AND t.locked_by = worker AND t.status = 'running'
        RETURNING t.queue, t.status
    ), counted AS (
        -- one upsert for the whole batch, its rows in key order (see 0011)
        INSERT INTO bg.counters AS k (metric, scope, label, shard, value)
        SELECT 'tasks_finished', f.queue, f.status, pg_backend_pid() % 16, count(*)
        FROM finished f
        GROUP BY f.queue, f.status
        ORDER BY 2, 3
        ON CONFLICT (metric, scope, label, shard) DO UPDATE SET value = k.value + excluded.value
    )
    SELECT count(*), bg._slots_freed(array_agg(DISTINCT f.queue)) INTO n FROM finished f;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION bg.fail_task(
    task_id bigint, worker text, error text, traceback text, retry_in_s double precision,
    cancelled boolean DEFAULT false
) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_status text;
    q text;
BEGIN
    UPDATE bg.tasks t
    SET status = CASE WHEN cancelled OR t.cancel_requested THEN 'cancelled'
                      WHEN t.attempts >= t.max_attempts THEN 'failed'
                      ELSE 'queued' END,
        run_at = CASE WHEN t.attempts >= t.max_attempts OR cancelled OR t.cancel_requested
                      THEN t.run_at ELSE now() + make_interval(secs => retry_in_s) END,
        finished_at = CASE WHEN t.attempts >= t.max_attempts OR cancelled OR t.cancel_requested
                           THEN now() END,
        last_error = error, last_traceback = traceback, locked_by = NULL, lease_until = NULL
    WHERE t.id = task_id AND t.locked_by = worker AND t.status = 'running'
    RETURNING t.status, t.queue INTO new_status, q;
    IF q IS NOT NULL THEN
        PERFORM bg._count_finished(q, new_status, 1);
        PERFORM bg._slots_freed(ARRAY[q]);
    END IF;
    RETURN new_status;
END
$$;

CREATE OR REPLACE FUNCTION bg.rescue_expired() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    queues text[];
BEGIN
    WITH failed AS (
        UPDATE bg.tasks t
        SET status = 'failed', finished_at = now(), locked_by = NULL, lease_until = NULL,
            last_error = coalesce(t.last_error || E'\n', '') ||
                         format('lease expired on attempt %s of %s (worker %s died?)',
                                t.attempts, t.max_attempts, t.locked_by)
        WHERE t.status = 'running' AND t.lease_until < now() AND t.attempts >= t.max_attempts
        RETURNING t.queue
    )
    SELECT array_agg(f.queue) INTO queues FROM failed f;
    PERFORM bg._count_finished(g.queue, 'failed', g.n)
    FROM (SELECT q AS queue, count(*) AS n FROM unnest(queues) AS q GROUP BY q ORDER BY q) g;
    RETURN coalesce(cardinality(queues), 0);
END
$$;

CREATE OR REPLACE FUNCTION bg.cancel_task(task_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
    q text;
BEGIN
    UPDATE bg.tasks t
    SET status = CASE WHEN t.status = 'queued' THEN 'cancelled' ELSE t.status END,
        finished_at = CASE WHEN t.status = 'queued' THEN now() ELSE t.finished_at END,
        cancel_requested = (t.status = 'running')
    WHERE t.id = task_id AND t.status IN ('queued', 'running')
    RETURNING t.status, t.queue INTO st, q;
    IF st = 'running' THEN
        PERFORM pg_notify('bg_task_cancel', task_id::text);
        RETURN 'cancelling';
    END IF;
    IF st = 'cancelled' THEN
        PERFORM bg._count_finished(q, 'cancelled', 1);
    END IF;
    IF st IS NULL THEN
        SELECT t.status INTO st FROM bg.tasks t WHERE t.id = task_id;
    END IF;
    RETURN st;  -- 'cancelled', a finished status, or NULL for no such task
END
$$;
