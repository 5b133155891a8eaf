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
