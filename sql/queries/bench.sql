-- The benchmarks' scratch database (bus/scratch.py): creating it, emptying the tables a
-- benchmark fills, and the figures it reports. Every statement here runs only in that
-- scratch database, never in the user's own.

-- name: bench_database_exists :val
-- Whether database $1 exists on this server.
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1);

-- name: bench_create_database :exec
-- Create the scratch database. CREATE DATABASE takes no bind parameters, so bus/scratch.py
-- replaces the quoted placeholder below, token and quotes together, with the quoted name
-- of the database we configure (scratch.BENCH_DB, a constant, never user input). Left as
-- it is, the placeholder is itself a valid quoted identifier, so the text still parses.
CREATE DATABASE "{database}";

-- name: bench_empty_tasks :exec
-- Empty the queue before and after a queue benchmark.
TRUNCATE bg.tasks;

-- name: bench_may_checkpoint :val
-- Whether this user may run CHECKPOINT (a superuser, or pg_checkpoint from PostgreSQL 15 on).
SELECT r.rolsuper OR CASE WHEN to_regrole('pg_checkpoint') IS NULL THEN false
                         ELSE pg_has_role(current_user, 'pg_checkpoint', 'MEMBER') END
FROM pg_roles r WHERE r.rolname = current_user;

-- name: bench_checkpoint :exec
-- Write every dirty buffer now, so that no checkpoint started by the last round's WAL lands
-- in the next one.
CHECKPOINT;

-- name: bench_analyze_tasks :exec
-- Refresh the planner's statistics after pre-filling the queue.
ANALYZE bg.tasks;

-- name: bench_analyze_pgqueuer :exec
-- The same for PGQueuer's queue table after its pre-fill (`--compare pgqueuer`), so that both
-- contestants drain a table the planner knows.
ANALYZE pgqueuer;

-- name: bench_empty_events :exec
-- Empty the event log after an events benchmark.
TRUNCATE bg.events;

-- name: bench_forget_host_agents :exec
-- Remove the agents registered from host $1 (the simulated ones).
DELETE FROM bg.agents WHERE host = $1;

-- name: bench_clear_alerts :exec
-- Remove every alert, so a run counts only the alerts it raised.
DELETE FROM bg.alerts;

-- name: bench_agent_down_alerts :val
-- How many agent_down alerts were raised for agents on host $1.
SELECT count(*) FROM bg.alerts WHERE rule = 'agent_down' AND labels->>'host' = $1;

-- name: bench_relation_sizes :many
-- Each table in schema bg with its own size and its indexes' size in bytes, largest first.
SELECT c.relname AS name,
       pg_table_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'bg' AND c.relkind IN ('r', 'p')
ORDER BY pg_total_relation_size(c.oid) DESC, c.relname;
