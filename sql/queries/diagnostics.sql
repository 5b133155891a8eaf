-- Questions `bgagents doctor` asks the server (bus/diagnostics.py). The schema's state
-- comes from the migration runner's own queries (migrate.sql).

-- name: diagnostics_server_version :one
-- The server's version as text (e.g. 15.8 (Debian 15.8-0+deb12u1)) and as a number (150008).
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num;

-- name: diagnostics_extension :one
-- Extension $1: the version created in this database (NULL: not created) and the
-- server's default version of it (NULL: the server doesn't have it).
SELECT (SELECT extversion FROM pg_extension WHERE extname = $1) AS installed_version,
       (SELECT default_version FROM pg_available_extensions WHERE name = $1) AS default_version;

-- name: diagnostics_backend_pid :val
-- The server process serving this statement; two open connections that see the same one
-- share a server session, i.e. a pooler in transaction (or statement) mode sits between.
SELECT pg_backend_pid();

-- name: diagnostics_prepared_probe :val
-- A parameterised statement that asyncpg prepares under a name when its statement cache is
-- on; a pooler that does not track prepared statements refuses it on a shared session.
SELECT $1::int + 1;
