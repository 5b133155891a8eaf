-- The queue benchmark's own statements (bus/queue_bench.py), run only in the scratch database.

-- name: queue_bench_preload_finished :val
-- Add $1 finished tasks (done, with a result) to queue $2, as a long-running system retains them.
WITH added AS (
    INSERT INTO bg.tasks (queue, payload, status, attempts, started_at, finished_at, result)
    SELECT $2, jsonb_build_object('n', g), 'done', 1, now(), now(), 'null'::jsonb
    FROM generate_series(1, $1::int) AS g
    RETURNING 1
)
SELECT count(*) FROM added;

-- name: queue_bench_vacuum :exec
-- Vacuum and analyze the queue, as autovacuum would have done by the time a table is this large.
VACUUM (ANALYZE) bg.tasks;

-- name: queue_bench_counts :one
-- Tasks of queue $1 by status: what the ceiling run finished and left.
SELECT count(*) FILTER (WHERE status = 'done') AS done,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'running') AS running
FROM bg.tasks WHERE queue = $1;

-- name: queue_bench_index_sizes :many
-- Each index of bg.tasks with its size in bytes.
SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'bg.tasks'::regclass
ORDER BY c.relname;

-- name: queue_bench_forget_queue :exec
-- Delete every task of queue $1 (between rounds, when other queues' finished tasks stay).
DELETE FROM bg.tasks WHERE queue = $1;

-- name: queue_bench_claim_ids :one
-- The ceiling's claim (pgbench): bg.claim_tasks as the worker calls it (queue_claim), its ids
-- gathered into one row, since pgbench's \gset keeps one row for the next statement.
SELECT coalesce(array_agg(c.id), '{}') AS ids, count(*) AS n
FROM bg.claim_tasks($1, $2, $3, $4) AS c;

-- name: queue_bench_complete_ids :val
-- The ceiling's completion (pgbench): bg.complete_tasks as the worker calls it (queue_complete)
-- for the $2 claimed ids $1, each with a null result.
SELECT bg.complete_tasks($1, array_fill('null'::text, ARRAY[$2::int]), $3);

-- name: queue_bench_statements_loaded :val
-- Whether pg_stat_statements is preloaded, so that `bench queue --profile` can use it.
SELECT 'pg_stat_statements' = ANY (
    SELECT btrim(l) FROM unnest(string_to_array(current_setting('shared_preload_libraries'), ',')) AS l);

-- name: queue_bench_statements_install :exec
-- pg_stat_statements in the scratch database (it is preloaded).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- name: queue_bench_statements_reset :exec
-- Forget what pg_stat_statements gathered before the profiled rounds.
SELECT pg_stat_statements_reset();

-- name: queue_bench_statements_top :many
-- The $1 statements of this database that took the most server time since the reset.
SELECT s.query AS name, s.calls, s.total_exec_time AS total_ms
FROM pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY s.total_exec_time DESC
LIMIT $1;

-- name: queue_bench_is_superuser :val
-- track_functions can only be set by a superuser.
SELECT rolsuper FROM pg_roles WHERE rolname = current_user;

-- name: queue_bench_functions_reset :exec
-- Forget the function statistics gathered before the profiled rounds.
SELECT pg_stat_reset();

-- name: queue_bench_functions_top :many
-- The $1 functions that took the most time (their own time, without what they called) since the reset.
SELECT f.schemaname || '.' || f.funcname AS name, f.calls, f.self_time AS total_ms
FROM pg_stat_user_functions f
WHERE f.calls > 0
ORDER BY f.self_time DESC
LIMIT $1;

-- name: queue_bench_functions_track :exec
-- Time every function call in the scratch database, from the next connection on.
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET track_functions = ''all''', current_database()); END $$;

-- name: queue_bench_functions_untrack :exec
-- Back to the server's track_functions setting.
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET track_functions', current_database()); END $$;
