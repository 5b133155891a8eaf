-- Queries of the soak benchmark's chaos loop and audit (bgagents bench soak), run in its scratch database.

-- name: chaos_terminate_listeners :many
-- End the LISTEN connections of our processes in this database (application_name bgagents, last
-- statement a LISTEN or the notifier's self-ping); returns each one's pid.
WITH listeners AS MATERIALIZED (  -- chosen first: the planner may not test a terminate before the filters
    SELECT a.pid
    FROM pg_stat_activity a
    WHERE a.datname = current_database()
      AND a.application_name = 'bgagents'
      AND a.pid <> pg_backend_pid()
      AND (a.query LIKE 'LISTEN %' OR a.query LIKE 'SELECT pg_notify($1, ''ping'')%')
)
SELECT pid FROM listeners WHERE pg_terminate_backend(pid);

-- name: chaos_open_alerts :val
-- How many alerts of agents on host $1 are still pending or firing.
SELECT count(*) FROM bg.alerts WHERE labels->>'host' = $1 AND state IN ('pending', 'firing');

-- name: chaos_alerts_raised :val
-- How many alerts were raised (in any state) for agents on host $1.
SELECT count(*) FROM bg.alerts WHERE labels->>'host' = $1;

-- name: chaos_tasks :many
-- Every task of queue $1 with its outcome and its times as epoch seconds.
SELECT id, status, attempts, max_attempts, payload->>'mode' AS mode,
       extract(epoch FROM created_at)::float8 AS created,
       extract(epoch FROM started_at)::float8 AS started,
       extract(epoch FROM finished_at)::float8 AS finished
FROM bg.tasks
WHERE queue = $1
ORDER BY id;

-- name: chaos_unsettled :val
-- How many tasks of queue $1 are not yet done, failed or cancelled.
SELECT count(*) FROM bg.tasks WHERE queue = $1 AND status IN ('queued', 'running');
