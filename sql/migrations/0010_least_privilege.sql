-- 0010: least privilege for other database users, limits that hold in SQL, and
-- claims that never hang on someone else's advisory lock.
--
-- Roles (all NOLOGIN; give them to your own LOGIN roles, or use `bgagents db url --role`):
--   bg_owner    owns the public API functions, which run as SECURITY DEFINER with a fixed
--               search_path (pg_catalog, pg_temp last); it has the table rights they need.
--   bg_reader   reads every table and view, and the read functions (events_after, ...).
--   bg_writer   bg_reader plus EXECUTE on the write API (enqueue, publish, retry, cancel,
--               ask, schedules, agent commands); no INSERT/UPDATE/DELETE on any table.
--   bg_runtime  bg_writer plus what agents, workers and the web need: table DML and every
--               internal function (claims, completions, leases, heartbeats, ...).
-- Internal functions are not executable by PUBLIC any more; `bgagents migrate` revokes
-- PUBLIC's EXECUTE on every bg function after each migration, so new ones stay closed too.
--
-- bg.limits holds the limits the API functions enforce for every caller (payload size,
-- question length, how long a claim waits for a queue's limit lock); `bgagents migrate`
-- and Bus.open keep it in step with BGAGENTS_MAX_PAYLOAD_BYTES and BGAGENTS_MAX_QUESTION_CHARS.
--
-- Advisory locks move to the two-key form with class 1650934119 ('bgAg'): key 1 is the
-- migration lock, hashtext('claim:' || queue) a limited queue's claim lock.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['bg_owner', 'bg_runtime'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'skipping role %: this user may not create roles (ask a superuser to run CREATE ROLE % NOLOGIN, then run bgagents migrate again)', role_name, role_name;
        END;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_runtime')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_writer') THEN
        BEGIN
            GRANT bg_writer TO bg_runtime;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'could not grant bg_writer to bg_runtime: %', SQLERRM;
        END;
    END IF;
END
$$;

CREATE TABLE bg.limits (
    singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_payload_bytes     integer NOT NULL DEFAULT 1048576 CHECK (max_payload_bytes >= 1024),
    max_question_chars    integer NOT NULL DEFAULT 4000 CHECK (max_question_chars BETWEEN 1 AND 100000),
    claim_lock_timeout_ms integer NOT NULL DEFAULT 5000 CHECK (claim_lock_timeout_ms BETWEEN 1 AND 600000),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE bg.limits IS
    'Limits the bg functions enforce for every caller; bgagents migrate keeps them in step with the settings';
INSERT INTO bg.limits DEFAULT VALUES;

-- The question length is bounded by bg.limits now (checked in bg.ask); keep a hard ceiling.
ALTER TABLE bg.help_requests DROP CONSTRAINT help_requests_question_check;
ALTER TABLE bg.help_requests ADD CONSTRAINT help_requests_question_check
    CHECK (length(question) BETWEEN 1 AND 100000);

CREATE FUNCTION bg._check_payload(fn text, payload jsonb) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cap integer := coalesce((SELECT l.max_payload_bytes FROM bg.limits l), 1048576);
    size bigint;
BEGIN
    IF payload IS NULL THEN
        RETURN;
    END IF;
    size := octet_length(payload::text);
    IF size > cap THEN
        RAISE EXCEPTION '%: the payload is % bytes of JSON, over the limit of % bytes', fn, size, cap
            USING ERRCODE = 'BG413',
                  HINT = 'keep large data elsewhere (a table, a file, object storage) and pass a reference; '
                         'the limit is BGAGENTS_MAX_PAYLOAD_BYTES (bg.limits.max_payload_bytes)';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION bg.publish(channel text, payload jsonb DEFAULT '{}', source text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    new_id bigint;
BEGIN
    PERFORM bg._check_channel('bg.publish', channel);
    PERFORM bg._check_payload('bg.publish', payload);
    INSERT INTO bg.events (channel, payload, source)
    VALUES (channel, coalesce(payload, '{}'),
            coalesce(source, nullif(current_setting('application_name', true), '')))
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION bg.enqueue(
    queue text,
    payload jsonb DEFAULT '{}',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    dedupe_key text DEFAULT NULL,
    max_attempts integer DEFAULT 5,
    timeout_s double precision DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    PERFORM bg._check_queue('bg.enqueue', enqueue.queue);
    PERFORM bg._check_payload('bg.enqueue', enqueue.payload);
    IF enqueue.priority IS NULL OR enqueue.priority NOT BETWEEN 0 AND 32767 THEN
        RAISE EXCEPTION 'bg.enqueue: priority must be between 0 and 32767, got %', enqueue.priority
            USING ERRCODE = 'invalid_parameter_value', HINT = 'higher priorities run first; 0 is the default';
    END IF;
    IF enqueue.max_attempts IS NULL OR enqueue.max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'bg.enqueue: max_attempts must be between 1 and 1000, got %', enqueue.max_attempts
            USING ERRCODE = 'invalid_parameter_value', HINT = 'max_attempts counts the first run too';
    END IF;
    IF enqueue.timeout_s IS NOT NULL AND enqueue.timeout_s <= 0 THEN
        RAISE EXCEPTION 'bg.enqueue: timeout_s must be positive, got %', enqueue.timeout_s
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass NULL for no timeout';
    END IF;
    INSERT INTO bg.tasks (queue, payload, priority, run_at, dedupe_key, max_attempts, timeout_s)
    VALUES (enqueue.queue, coalesce(enqueue.payload, '{}'), enqueue.priority,
            coalesce(enqueue.run_at, now()), enqueue.dedupe_key, enqueue.max_attempts,
            enqueue.timeout_s)
    ON CONFLICT (queue, dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
    DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN  -- an active task has this dedupe key: return it
        SELECT t.id INTO new_id FROM bg.tasks t
        WHERE t.queue = enqueue.queue AND t.dedupe_key = enqueue.dedupe_key
          AND t.status IN ('queued', 'running');
    END IF;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION bg.ask(question text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    request_id bigint;
    task bigint;
    cap integer := coalesce((SELECT l.max_question_chars FROM bg.limits l), 4000);
BEGIN
    IF question IS NULL OR length(trim(question)) = 0 THEN
        RAISE EXCEPTION 'bg.ask: the question is empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. select bg.ask(''which agent is down?'')';
    END IF;
    IF length(question) > cap THEN
        RAISE EXCEPTION 'bg.ask: the question is % characters, over the limit of %', length(question), cap
            USING ERRCODE = 'BG413',
                  HINT = 'ask a shorter question; the limit is BGAGENTS_MAX_QUESTION_CHARS (bg.limits.max_question_chars)';
    END IF;
    INSERT INTO bg.help_requests (question) VALUES (question) RETURNING id INTO request_id;
    task := bg.enqueue('ai.ask', jsonb_build_object('question', question, 'request_id', request_id),
                       0, NULL, NULL, 2, 120);
    UPDATE bg.help_requests SET task_id = task WHERE id = request_id;
    RETURN request_id;
END
$$;

-- Why an advisory lock is not granted: the sessions holding it, for the error message.
CREATE FUNCTION bg._advisory_lock_holders(key1 integer, key2 integer) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(string_agg(format('pid %s (user %s, application %s, %s since %s)',
                                      l.pid, a.usename, quote_literal(coalesce(a.application_name, '')),
                                      coalesce(a.state, 'state hidden'),
                                      coalesce(a.xact_start::text, 'unknown')), '; '),
                    'a session that has since ended')
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
      AND l.classid = (key1::bigint & 4294967295)::oid
      AND l.objid = (key2::bigint & 4294967295)::oid
$$;

-- Take a limited queue's claim lock, waiting at most bg.limits.claim_lock_timeout_ms.
CREATE FUNCTION bg._claim_lock(queue text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key2 integer := hashtext('claim:' || queue);
    wait_ms integer := coalesce((SELECT l.claim_lock_timeout_ms FROM bg.limits l), 5000);
    deadline timestamptz := clock_timestamp() + make_interval(secs => wait_ms / 1000.0);
    pause double precision := 0.001;
BEGIN
    LOOP
        IF pg_try_advisory_xact_lock(1650934119, key2) THEN
            RETURN;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'bg.claim_tasks: the claim lock of limited queue % (advisory lock %, %) was not free within % ms; held by %',
                    quote_literal(queue), 1650934119, key2, wait_ms, bg._advisory_lock_holders(1650934119, key2)
                USING ERRCODE = 'lock_not_available',
                      HINT = 'claims of a queue with a concurrency limit take this lock for milliseconds; '
                             'a session holding it longer is not a worker: end it (pg_terminate_backend) '
                             'or bound it with idle_in_transaction_session_timeout';
        END IF;
        PERFORM pg_sleep(pause);
        pause := least(pause * 2, 0.05);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION bg.claim_tasks(queue text, batch integer, worker text, lease_s double precision)
RETURNS SETOF bg.claimed_task
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cap integer;
    slots integer := claim_tasks.batch;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT q.concurrency_limit INTO cap FROM bg.queues q WHERE q.queue = claim_tasks.queue;
    IF cap IS NOT NULL THEN
        -- Serialise claims on limited queues only, so the count below stays true.
        PERFORM bg._claim_lock(claim_tasks.queue);
        SELECT greatest(0, cap - count(*))::int INTO slots FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'running' AND t.lease_until >= now();
        slots := least(slots, claim_tasks.batch);
        IF slots = 0 THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    WITH expired AS (
        SELECT t.id FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'running' AND t.lease_until < now()
          AND t.attempts < t.max_attempts
        ORDER BY t.lease_until
        LIMIT slots
        FOR UPDATE SKIP LOCKED
    ), ready AS (
        SELECT t.id FROM bg.tasks t
        WHERE t.queue = claim_tasks.queue AND t.status = 'queued' AND t.run_at <= now()
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT slots
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT p.id FROM (SELECT e.id, 0 AS o FROM expired e
                          UNION ALL SELECT r.id, 1 FROM ready r) p
        ORDER BY p.o
        LIMIT slots
    ), updated AS (
        UPDATE bg.tasks t
        SET status = 'running', attempts = t.attempts + 1, locked_by = claim_tasks.worker,
            lease_until = now() + make_interval(secs => claim_tasks.lease_s), started_at = now(),
            cancel_requested = false
        FROM picked
        WHERE t.id = picked.id
        RETURNING t.id, t.queue, t.payload, t.priority, t.attempts, t.max_attempts, t.timeout_s,
                  t.created_at, t.run_at
    )
    SELECT u.id, u.queue, u.payload, u.priority, u.attempts, u.max_attempts, u.timeout_s,
           u.created_at, u.run_at,
           (SELECT count(*) FROM picked) = slots AND EXISTS (
               -- the same index order as `ready`, so this is one index probe
               SELECT 1 FROM bg.tasks t
               WHERE t.queue = claim_tasks.queue AND t.status = 'queued' AND t.run_at <= now()
                 AND t.id NOT IN (SELECT p.id FROM picked p)
               ORDER BY t.priority DESC, t.run_at, t.id
               LIMIT 1)
    FROM updated u
    ORDER BY u.priority DESC, u.run_at, u.id;
END
$$;

-- The public API runs as its owner, so callers need EXECUTE on it and no table rights.
ALTER FUNCTION bg.retry_task(bigint) SECURITY DEFINER;
ALTER FUNCTION bg.retry_tasks(text, text) SECURITY DEFINER;
ALTER FUNCTION bg.cancel_task(bigint) SECURITY DEFINER;
ALTER FUNCTION bg.cancel_tasks(text, text) SECURITY DEFINER;
ALTER FUNCTION bg.events_after(text, text[], integer) SECURITY DEFINER;
ALTER FUNCTION bg.current_cursor() SECURITY DEFINER;
ALTER FUNCTION bg.events_pending() SECURITY DEFINER;
ALTER FUNCTION bg.agent_command(text, text) SECURITY DEFINER;
ALTER FUNCTION bg.add_schedule(text, text, text, jsonb, integer) SECURITY DEFINER;
ALTER FUNCTION bg.remove_schedule(text) SECURITY DEFINER;
ALTER FUNCTION bg.set_queue_limit(text, integer) SECURITY DEFINER;

-- Nothing in bg is executable by PUBLIC; each role gets what it needs.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA bg FROM PUBLIC;

DO $$
DECLARE
    api_read constant text[] := ARRAY[
        'bg.api_version()', 'bg.cron_next(text, timestamptz)', 'bg.current_cursor()',
        'bg.events_after(text, text[], integer)', 'bg.events_pending()'];
    api_write constant text[] := ARRAY[
        'bg.enqueue(text, jsonb, integer, timestamptz, text, integer, double precision)',
        'bg.publish(text, jsonb, text)', 'bg.retry_task(bigint)', 'bg.retry_tasks(text, text)',
        'bg.cancel_task(bigint)', 'bg.cancel_tasks(text, text)', 'bg.ask(text)',
        'bg.add_schedule(text, text, text, jsonb, integer)', 'bg.remove_schedule(text)',
        'bg.agent_command(text, text)'];
    api_definer constant text[] := api_write || ARRAY[
        'bg.current_cursor()', 'bg.events_after(text, text[], integer)', 'bg.events_pending()',
        'bg.set_queue_limit(text, integer)'];
    fn text;
    owner_ok boolean := false;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_reader') THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA bg TO bg_reader;
        FOREACH fn IN ARRAY api_read LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO bg_reader', fn);
        END LOOP;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_writer') THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA bg FROM bg_writer;
        FOREACH fn IN ARRAY api_write LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO bg_writer', fn);
        END LOOP;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_runtime') THEN
        GRANT USAGE ON SCHEMA bg TO bg_runtime;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA bg TO bg_runtime;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA bg TO bg_runtime;
        ALTER DEFAULT PRIVILEGES IN SCHEMA bg GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bg_runtime;
        ALTER DEFAULT PRIVILEGES IN SCHEMA bg GRANT EXECUTE ON FUNCTIONS TO bg_runtime;
    END IF;

    -- The owner of the SECURITY DEFINER functions: bg_owner where this user can hand
    -- functions to it (a superuser can; a schema owner that may create roles grants
    -- itself bg_owner first), else they stay with this user (never a superuser: one
    -- can always create bg_owner).
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_owner') THEN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
           OR pg_has_role(current_user, 'bg_owner', 'MEMBER') THEN
            owner_ok := true;
        ELSE
            BEGIN
                EXECUTE format('GRANT bg_owner TO %I', current_user);
                owner_ok := true;
            EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
                RAISE NOTICE 'the bg API functions stay owned by %: this user may not use role bg_owner (ask a superuser to GRANT bg_owner TO %)', current_user, current_user;
            END;
        END IF;
    ELSE
        RAISE NOTICE 'role bg_owner does not exist: the bg API functions run as their owner %', current_user;
    END IF;
    IF owner_ok THEN
        GRANT USAGE, CREATE ON SCHEMA bg TO bg_owner;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA bg TO bg_owner;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA bg TO bg_owner;
        ALTER DEFAULT PRIVILEGES IN SCHEMA bg GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bg_owner;
        ALTER DEFAULT PRIVILEGES IN SCHEMA bg GRANT EXECUTE ON FUNCTIONS TO bg_owner;
        FOREACH fn IN ARRAY api_definer LOOP
            EXECUTE format('ALTER FUNCTION %s OWNER TO bg_owner', fn);
        END LOOP;
    END IF;
END
$$;
