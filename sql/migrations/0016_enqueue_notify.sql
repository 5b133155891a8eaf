-- 0016: the enqueue paths send their NOTIFY themselves instead of the AFTER INSERT
-- statement trigger of 0003. An enqueue adds tasks of one queue with one run_at,
-- so the payload is known without looking at the rows: the trigger's transition
-- table and its two scans of it were a tenth of an enqueue's time, on the path
-- every producer waits for. Tasks reach bg.tasks only through bg.enqueue, bg.ask,
-- schedules (all through bg.enqueue) and the bus's bulk insert, which calls
-- bg._tasks_added in its statement (sql/queries/queue.sql). A row inserted by hand
-- as the owner sends no NOTIFY: workers find it at their next poll.
--
-- bg.enqueue's body is 0010's with the NOTIFY added; SECURITY DEFINER as before.

DROP TRIGGER tasks_notify ON bg.tasks;
DROP FUNCTION bg._notify_tasks();

-- Tell the queue's workers that tasks were added: the queue's name when they can
-- run now, or "queue@epoch" when they run later, so idle workers wake then.
CREATE FUNCTION bg._tasks_added(queue text, run_at timestamptz) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_notify('bg_tasks', CASE WHEN run_at IS NULL OR run_at <= now() THEN queue
                                      ELSE queue || '@' || extract(epoch FROM run_at)::text END)
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
    ELSE
        PERFORM bg._tasks_added(enqueue.queue, enqueue.run_at);
    END IF;
    RETURN new_id;
END
$$;
