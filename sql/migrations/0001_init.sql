-- 0001: the schema, the roles bg_reader / bg_writer, and shared state.

CREATE SCHEMA IF NOT EXISTS bg;
COMMENT ON SCHEMA bg IS 'Background Agents: queue, events, agents and shared state';

-- Roles are cluster-wide while the migration lock is per database, so two
-- databases migrating at once can race here: tolerate both errors that race raises.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['bg_reader', 'bg_writer'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'skipping role %: this user may not create roles (ask a superuser to run CREATE ROLE % NOLOGIN)', role_name, role_name;
        END;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_reader')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_writer') THEN
        BEGIN
            GRANT bg_reader TO bg_writer;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'could not grant bg_reader to bg_writer: %', SQLERRM;
        END;
    END IF;
END
$$;

CREATE TABLE bg.shared_state (
    key        text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 400),
    value      jsonb NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT current_user
);
COMMENT ON TABLE bg.shared_state IS 'JSON values by key, with a version for compare-and-set';

-- Grants for the two roles, here and on whatever later migrations create.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_reader') THEN
        GRANT USAGE ON SCHEMA bg TO bg_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA bg TO bg_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA bg GRANT SELECT ON TABLES TO bg_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_writer') THEN
        GRANT USAGE ON SCHEMA bg TO bg_writer;
        GRANT SELECT, INSERT, UPDATE, DELETE ON bg.shared_state TO bg_writer;
    END IF;
END
$$;
