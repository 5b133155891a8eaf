-- 0011: monotonic counters for Prometheus rates, kept in the database so they
-- survive retention pruning (the rows they count may be gone) and restarts of
-- every process (no process holds them).
--
-- bg.counters holds one row per metric, scope (queue or channel), label (a
-- task's final status, or a latency bucket's upper bound) and shard. Statement
-- triggers with transition tables maintain it: one upsert statement per
-- triggering statement, aggregated per group, so a claim of 100 tasks adds one
-- row version per bucket it touches, not 100. The queue's functions are not
-- edited.
--
-- Contention: every worker finishing tasks of one queue would update the same
-- row, and each holds that row's lock until it commits. So each backend writes
-- to its own shard (pg_backend_pid() % 16), and readers sum the shards.
-- Deadlocks: a statement locks its rows in key order.
--
-- Metrics:
--   tasks_finished        scope = queue, label = done | failed | cancelled
--   events_published      scope = channel, label = ''
--   claim_latency         scope = queue, label = a bucket's upper bound ('0.005' .. '+Inf'),
--                         counted per bucket (not cumulative: readers accumulate)
--   claim_latency_sum     scope = queue, label = '', the sum of latencies in seconds
-- The claim latency is how long a task waited between being ready and being
-- claimed: started_at (set by the claim) minus greatest(run_at, created_at) for
-- a queued task, minus lease_until for a re-claim after an expired lease.

CREATE TABLE bg.counters (
    metric text NOT NULL,
    scope  text NOT NULL,
    label  text NOT NULL DEFAULT '',
    shard  smallint NOT NULL,
    value  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (metric, scope, label, shard)
) WITH (
    -- Few rows, updated all the time: room for HOT updates, and vacuumed early.
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);
COMMENT ON TABLE bg.counters IS
    'Monotonic counters behind /metrics (tasks finished, events published, claim latency); sum over shard';

-- The claim-latency histogram's bucket bounds in seconds (+Inf is implied).
CREATE FUNCTION bg.claim_latency_bounds() RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800]::double precision[]
$$;

CREATE FUNCTION bg._count_tasks() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bounds constant double precision[] := bg.claim_latency_bounds();
    nbounds constant integer := cardinality(bounds);
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.queue, n.status, o.status AS old_status,
               n.status = 'running' AND n.attempts > o.attempts AS claimed,
               greatest(0, date_part('epoch', n.started_at - CASE WHEN o.status = 'queued'
                                                              THEN greatest(o.run_at, o.created_at)
                                                              ELSE o.lease_until END)) AS waited
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status OR n.attempts > o.attempts
    ), claims AS (
        -- width_bucket counts the bounds <= waited; the bucket is the first bound >= waited
        SELECT c.queue, c.waited, width_bucket(c.waited, bounds) AS i
        FROM changed c WHERE c.claimed AND c.waited IS NOT NULL
    ), deltas AS (
        SELECT 'tasks_finished' AS metric, c.queue AS scope, c.status AS label, count(*)::double precision AS d
        FROM changed c
        WHERE c.status IN ('done', 'failed', 'cancelled')
          AND c.old_status NOT IN ('done', 'failed', 'cancelled')
        GROUP BY c.queue, c.status
        UNION ALL
        SELECT 'claim_latency', cl.queue,
               CASE WHEN cl.i > 0 AND bounds[cl.i] = cl.waited THEN bounds[cl.i]::text
                    WHEN cl.i < nbounds THEN bounds[cl.i + 1]::text
                    ELSE '+Inf' END,
               count(*)
        FROM claims cl
        GROUP BY 2, 3
        UNION ALL
        SELECT 'claim_latency_sum', cl.queue, '', sum(cl.waited)
        FROM claims cl
        GROUP BY cl.queue
    )
    INSERT INTO bg.counters AS k (metric, scope, label, shard, value)
    SELECT d.metric, d.scope, d.label, pg_backend_pid() % 16, d.d FROM deltas d
    ORDER BY 1, 2, 3
    ON CONFLICT (metric, scope, label, shard) DO UPDATE SET value = k.value + excluded.value;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_count AFTER UPDATE ON bg.tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bg._count_tasks();

CREATE FUNCTION bg._count_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO bg.counters AS k (metric, scope, label, shard, value)
    SELECT 'events_published', n.channel, '', pg_backend_pid() % 16, count(*)
    FROM new_rows n GROUP BY n.channel ORDER BY n.channel
    ON CONFLICT (metric, scope, label, shard) DO UPDATE SET value = k.value + excluded.value;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_count AFTER INSERT ON bg.events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bg._count_events();

-- Count what already happened, so the counters start from the rows still kept.
INSERT INTO bg.counters (metric, scope, label, shard, value)
SELECT 'tasks_finished', t.queue, t.status, 0, count(*) FROM bg.tasks t
WHERE t.status IN ('done', 'failed', 'cancelled') GROUP BY t.queue, t.status;
INSERT INTO bg.counters (metric, scope, label, shard, value)
SELECT 'events_published', e.channel, '', 0, count(*) FROM bg.events e GROUP BY e.channel;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_reader') THEN
        GRANT SELECT ON bg.counters TO bg_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_runtime') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON bg.counters TO bg_runtime;
    END IF;
END
$$;
