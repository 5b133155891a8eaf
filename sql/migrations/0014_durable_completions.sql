-- 0014: completions commit asynchronously only without synchronous replication.
-- With synchronous_standby_names set, an operator has asked that nothing acknowledged
-- be lost in a failover, completions included, so bg.complete_tasks keeps the
-- session's synchronous_commit. Its owner, grants and attributes stay as 0010 left them.

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
        RETURNING t.queue
    ), counted AS (
        SELECT count(*) AS n, array_agg(DISTINCT f.queue) AS queues FROM finished f
    )
    SELECT c.n, bg._slots_freed(c.queues) INTO n FROM counted c;
    RETURN n;
END
$$;
