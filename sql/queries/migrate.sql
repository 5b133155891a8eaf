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

-- name: migrate_lock :exec
-- Serialise migrations on this database (session-level advisory lock).
SELECT pg_advisory_lock(hashtext('bgagents.migrate'));

-- name: migrate_unlock :exec
-- Release the migration lock.
SELECT pg_advisory_unlock(hashtext('bgagents.migrate'));

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
