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
