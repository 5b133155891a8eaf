-- name: migrate_bootstrap :exec
-- Create the schema and the migrations ledger; run under the migration lock.
CREATE SCHEMA IF NOT EXISTS bg;
CREATE TABLE IF NOT EXISTS bg.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user
);

-- name: migrate_applied :many
-- Migrations recorded in the ledger, if it exists.
SELECT version, name, checksum, applied_at
FROM bg.schema_migrations
ORDER BY version;

-- name: migrate_ledger_exists :val
-- Whether the ledger table exists yet.
SELECT to_regclass('bg.schema_migrations') IS NOT NULL;

-- name: migrate_record :exec
-- Record one applied migration.
INSERT INTO bg.schema_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- name: migrate_try_lock :val
-- Try to take the migration lock (a session-level advisory lock, class 'bgAg' key 1).
SELECT pg_try_advisory_lock(1650934119, 1);

-- name: migrate_lock_holders :val
-- Who holds the migration lock, for the message when it is not free in time.
SELECT string_agg(format('pid %s (user %s, application %s, %s since %s)',
                         l.pid, a.usename, quote_literal(coalesce(a.application_name, '')),
                         coalesce(a.state, 'state hidden'), coalesce(a.backend_start::text, 'unknown')), '; ')
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
  AND l.classid = 1650934119::bigint::oid AND l.objid = 1::oid;

-- name: migrate_unlock :exec
-- Release the migration lock.
SELECT pg_advisory_unlock(1650934119, 1);

-- name: migrate_lock_timeout :exec
-- How long one migration's statements wait for a table lock ($1, e.g. '30s'), in this transaction.
SELECT set_config('lock_timeout', $1, true);

-- name: migrate_table_lock_holders :val
-- Other sessions holding locks on relations of schema bg, for the message when a migration waits too long.
SELECT string_agg(DISTINCT format('pid %s (user %s, application %s, %s)',
                                  l.pid, a.usename, quote_literal(coalesce(a.application_name, '')),
                                  coalesce(a.state, 'state hidden')), '; ')
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'bg'
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid();

-- name: migrate_revoke_public :exec
-- After each migration: no bg function is executable by PUBLIC (roles get EXECUTE explicitly).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA bg FROM PUBLIC;

-- name: limits_get :one
-- The limits the bg functions enforce (NULL row before migration 0010).
SELECT max_payload_bytes, max_question_chars FROM bg.limits;

-- name: limits_set :exec
-- Keep the enforced limits in step with the settings: payload bytes $1, question characters $2.
UPDATE bg.limits SET max_payload_bytes = $1, max_question_chars = $2, updated_at = now();

-- name: extension_installed :val
-- Whether extension $1 is created in this database.
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1);

-- name: extension_available :val
-- Whether extension $1 is installed on the server (so it could be created).
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1);

-- name: server_version_num :val
-- The server's version as a number, e.g. 150018.
SELECT current_setting('server_version_num')::int;

-- name: extension_create_statement :val
-- The statement that creates extension $1 if it is missing, with the name quoted by the server.
SELECT format('CREATE EXTENSION IF NOT EXISTS %I', $1::text);
