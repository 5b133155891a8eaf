-- Backups and restores (bus/backup.py): what they check on the server before and after pg_dump/pg_restore.

-- name: backup_server_version_num :val
-- The server's version as a number (180001 for 18.1), to pick a pg_dump/pg_restore for it.
SELECT current_setting('server_version_num')::int;

-- name: backup_schema_state :one
-- Whether schema bg exists here, and how many tables, views, sequences and functions it holds.
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'bg') AS present,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'bg')
       + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'bg') AS objects;

-- name: backup_drop_schema :exec
-- Drop schema bg and everything in it (restore --force, or an empty schema before a restore).
DROP SCHEMA IF EXISTS bg CASCADE;

-- name: backup_prepare_roles :exec
-- The cluster-wide roles a restored bg schema refers to (owner, grants), as the migrations make
-- them: bg_reader in bg_writer in bg_runtime, and bg_owner, which this user must be able to use.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['bg_reader', 'bg_writer', 'bg_runtime', 'bg_owner'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END IF;
    END LOOP;
    IF NOT pg_has_role('bg_writer', 'bg_reader', 'MEMBER') THEN
        GRANT bg_reader TO bg_writer;
    END IF;
    IF NOT pg_has_role('bg_runtime', 'bg_writer', 'MEMBER') THEN
        GRANT bg_writer TO bg_runtime;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'bg_owner', 'MEMBER') THEN
        EXECUTE format('GRANT bg_owner TO %I', current_user);
    END IF;
END
$$;

-- name: backup_rebase_events :val
-- After a restore into another cluster whose transaction ids have not reached the restored
-- events' yet: move every event (and the retention horizon) to xid 3, the first normal one,
-- keeping their id order, so that events published from now on sort after them. Returns the
-- number of events moved (0 when the cluster is ahead of them, as it is on the same cluster).
WITH ahead AS (
    SELECT EXISTS (SELECT 1 FROM bg.events e WHERE e.xid >= pg_snapshot_xmin(pg_current_snapshot()))
        OR EXISTS (SELECT 1 FROM bg.event_horizon h WHERE h.pruned_xid >= pg_snapshot_xmin(pg_current_snapshot()))
        AS needed
), horizon AS (
    UPDATE bg.event_horizon h SET pruned_xid = '3'
    FROM ahead WHERE ahead.needed AND h.pruned_xid <> '0'
    RETURNING 1
), moved AS (
    UPDATE bg.events e SET xid = '3'
    FROM ahead WHERE ahead.needed
    RETURNING 1
)
SELECT count(*) FROM moved;

-- name: backup_create_vector :exec
-- pgvector, for a backup that holds the knowledge tables (it lives outside bg, so the dump lacks it).
CREATE EXTENSION IF NOT EXISTS vector;
