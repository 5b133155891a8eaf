-- name: queue_enqueue :val
-- Add one task; returns its id (or the id of the active task holding its dedupe key).
SELECT bg.enqueue($1, $2, $3, $4, $5, $6, $7);

-- name: queue_enqueue_many :many
-- Add many tasks of one queue in one statement; dedupe conflicts are skipped.
-- The NOTIFY is sent once, and only when a row went in (the `woken` scan is skipped
-- for an empty `added`).
WITH added AS (
    INSERT INTO bg.tasks (queue, payload, priority, run_at, dedupe_key, max_attempts, timeout_s)
    SELECT $1, p, $3, coalesce($4, now()), d, $5, $6
    FROM unnest($2::jsonb[], $7::text[]) AS u(p, d)
    ON CONFLICT (queue, dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
    DO NOTHING
    RETURNING id
), woken AS MATERIALIZED (
    SELECT bg._tasks_added($1, $4) WHERE EXISTS (SELECT 1 FROM added)
)
SELECT a.id FROM added a LEFT JOIN woken ON true;

-- name: queue_enqueue_many_plain :many
-- Add many tasks of one queue without dedupe keys: no conflict check, so cheaper.
WITH added AS (
    INSERT INTO bg.tasks (queue, payload, priority, run_at, max_attempts, timeout_s)
    SELECT $1, p, $3, coalesce($4, now()), $5, $6
    FROM unnest($2::jsonb[]) AS u(p)
    RETURNING id
), woken AS MATERIALIZED (
    SELECT bg._tasks_added($1, $4) WHERE EXISTS (SELECT 1 FROM added)
)
SELECT a.id FROM added a LEFT JOIN woken ON true;

-- name: queue_claim :many
-- Claim up to $2 tasks of queue $1 for worker $3 with a lease of $4 seconds.
SELECT id, queue, payload, priority, attempts, max_attempts, timeout_s, created_at, run_at, more
FROM bg.claim_tasks($1, $2, $3, $4);

-- name: queue_complete :val
-- Mark a worker's finished tasks done, storing each result.
SELECT bg.complete_tasks($1, $2, $3);

-- name: queue_fail :val
-- Record a failed attempt; returns the new status (queued to retry, failed, cancelled).
SELECT bg.fail_task($1, $2, $3, $4, $5, $6);

-- name: queue_renew :many
-- Extend the leases of a worker's running tasks; returns their cancel flags.
SELECT id, cancel_requested FROM bg.renew_leases($1, $2, $3);

-- name: queue_release :val
-- Give running tasks back to the queue without counting the attempt.
SELECT bg.release_tasks($1, $2);

-- name: queue_rescue :val
-- Fail tasks whose lease expired on their last attempt.
SELECT bg.rescue_expired();

-- name: queue_next_run_at :val
-- When the next delayed task of queue $1 becomes runnable (NULL: none).
SELECT min(run_at) FROM bg.tasks WHERE queue = $1 AND status = 'queued' AND run_at > now();

-- name: queue_get :one
-- One task with everything about it.
SELECT * FROM bg.tasks WHERE id = $1;

-- name: queue_list :many
-- Tasks filtered by queue $1 and status $2 (NULL: any), newest first.
SELECT id, queue, status, priority, attempts, max_attempts, run_at, created_at, started_at,
       finished_at, last_error, dedupe_key
FROM bg.tasks
WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY id DESC
LIMIT $3;

-- name: queue_result :one
-- A task's status and outcome, for callers awaiting its result.
SELECT status, result, last_error, attempts FROM bg.tasks WHERE id = $1;

-- name: queue_retry :val
-- Re-queue one failed or cancelled task.
SELECT bg.retry_task($1);

-- name: queue_retry_many :val
-- Re-queue every task of queue $1 (NULL: any) with status $2.
SELECT bg.retry_tasks($1, $2);

-- name: queue_cancel :val
-- Cancel one task; returns cancelled, cancelling, another status, or NULL.
SELECT bg.cancel_task($1);

-- name: queue_cancel_many :val
-- Cancel every task of queue $1 (NULL: any) with status $2.
SELECT bg.cancel_tasks($1, $2);

-- name: queue_set_limit :exec
-- Set (or with NULL remove) a queue's global concurrency limit.
SELECT bg.set_queue_limit($1, $2);

-- name: queue_stats :many
-- Tasks per queue and status, with the age of the oldest ready task.
SELECT queue, status, tasks, oldest_created,
       extract(epoch FROM oldest_ready_age) AS oldest_ready_age_s, next_delayed
FROM bg.queue_stats ORDER BY queue, status;

-- name: queue_prune :val
-- Delete finished tasks older than $1.
SELECT bg.prune_tasks($1);

-- name: schedules_fire :val
-- Enqueue every due schedule tick exactly once.
SELECT bg.fire_schedules();

-- name: schedules_add :val
-- Add or replace a schedule; returns its first run.
SELECT bg.add_schedule($1, $2, $3, $4, $5);

-- name: schedules_remove :val
-- Remove a schedule; returns whether it existed.
SELECT bg.remove_schedule($1);

-- name: schedules_list :many
-- Every schedule, in name order.
SELECT name, cron, queue, payload, priority, enabled, next_run, last_run, last_task
FROM bg.schedules ORDER BY name;

-- name: queue_cancel_requested :val
-- Whether running task $1, held by worker $2, was asked to cancel (the row decides, not a NOTIFY).
SELECT cancel_requested FROM bg.tasks WHERE id = $1 AND locked_by = $2 AND status = 'running';
