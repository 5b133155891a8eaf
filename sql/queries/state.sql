-- name: state_get :one
-- One key's value and version.
SELECT value, version, updated_at FROM bg.shared_state WHERE key = $1;

-- name: state_set :val
-- Set a key, bumping its version; returns the new version.
INSERT INTO bg.shared_state AS s (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE
SET value = EXCLUDED.value, version = s.version + 1, updated_at = now(), updated_by = current_user
RETURNING version;

-- name: state_insert_new :val
-- Create a key that must not exist yet; returns 1, or NULL when it exists.
INSERT INTO bg.shared_state (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO NOTHING
RETURNING version;

-- name: state_cas :val
-- Set a key only if its version is still $3; returns the new version or NULL.
UPDATE bg.shared_state
SET value = $2, version = version + 1, updated_at = now(), updated_by = current_user
WHERE key = $1 AND version = $3
RETURNING version;

-- name: state_delete :val
-- Delete a key; returns whether it existed.
WITH gone AS (DELETE FROM bg.shared_state WHERE key = $1 RETURNING 1)
SELECT count(*) > 0 FROM gone;

-- name: state_keys :many
-- Keys with a prefix, in order.
SELECT key, version, updated_at FROM bg.shared_state
WHERE starts_with(key, $1) ORDER BY key LIMIT $2;

-- name: stats_server :one
-- Server version, this database's size and connections, and its transactions per second
-- averaged since its statistics were reset (or since the server started, if never).
SELECT current_setting('server_version') AS server_version,
       pg_database_size(current_database()) AS database_size,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections,
       current_setting('max_connections')::int AS max_connections,
       (SELECT (coalesce(d.xact_commit, 0) + coalesce(d.xact_rollback, 0))::float8
               / greatest(extract(epoch FROM clock_timestamp()
                                  - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8, 0.001)
          FROM pg_stat_database d WHERE d.datname = current_database()) AS transactions_per_second;

-- name: stats_tables :many
-- The largest tables of schema bg, with their size and estimated rows.
SELECT c.relname AS table_name,
       pg_total_relation_size(c.oid) AS total_bytes,
       greatest(c.reltuples, 0)::bigint AS estimated_rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'bg' AND c.relkind IN ('r', 'p')
ORDER BY pg_total_relation_size(c.oid) DESC, c.relname
LIMIT $1;
