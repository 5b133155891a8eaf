-- 0004: cron-style periodic tasks. Each tick is enqueued exactly once however
-- many workers call bg.fire_schedules(): a worker claims a tick by advancing
-- next_run with a conditional UPDATE, in the same transaction as the enqueue.

-- The values one cron field allows, from lo to hi; raises on a malformed field.
CREATE FUNCTION bg._cron_field(field text, lo integer, hi integer, names text[] DEFAULT NULL)
RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part text;
    m text[];
    a integer;
    b integer;
    step integer;
    out integer[] := '{}';
    i integer;
BEGIN
    IF names IS NOT NULL THEN
        FOR i IN 1 .. cardinality(names) LOOP
            field := regexp_replace(lower(field), '\m' || names[i] || '\M', (lo + i - 1)::text, 'g');
        END LOOP;
    END IF;
    FOREACH part IN ARRAY string_to_array(field, ',') LOOP
        m := regexp_match(part, '^(\*|([0-9]+)(-([0-9]+))?)(/([0-9]+))?$');
        IF m IS NULL THEN
            RAISE EXCEPTION 'malformed cron field %', quote_literal(field)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'use *, a number, a-b, a list a,b,c, or a step like */5';
        END IF;
        IF m[1] = '*' THEN
            a := lo; b := hi;
        ELSE
            a := m[2]::int;
            b := coalesce(m[4]::int, CASE WHEN m[6] IS NOT NULL THEN hi ELSE a END);
        END IF;
        step := coalesce(m[6]::int, 1);
        IF a < lo OR b > hi OR a > b OR step < 1 THEN
            RAISE EXCEPTION 'cron field % is out of range %-%', quote_literal(field), lo, hi
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7 (0 and 7 are Sunday)';
        END IF;
        out := out || ARRAY(SELECT generate_series(a, b, step));
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT x FROM unnest(out) x ORDER BY x);
END
$$;

-- The first time strictly after `after` that matches `expr` (5 fields, UTC).
CREATE FUNCTION bg.cron_next(expr text, after timestamptz DEFAULT now()) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f text[];
    minutes integer[];
    hours integer[];
    doms integer[];
    months integer[];
    dows integer[];
    dom_any boolean;
    dow_any boolean;
    t timestamp := date_trunc('minute', after AT TIME ZONE 'UTC') + interval '1 minute';
    day date;
    h integer;
    mi integer;
    day_ok boolean;
BEGIN
    IF expr IS NULL THEN
        RAISE EXCEPTION 'malformed cron expression NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''*/5 * * * *'' or ''@hourly''';
    END IF;
    expr := CASE lower(trim(expr))
        WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
        WHEN '@monthly' THEN '0 0 1 * *' WHEN '@weekly' THEN '0 0 * * 0'
        WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
        WHEN '@hourly' THEN '0 * * * *' ELSE trim(expr) END;
    f := regexp_split_to_array(expr, '\s+');
    IF cardinality(f) <> 5 THEN
        RAISE EXCEPTION 'malformed cron expression %: expected 5 fields, got %', quote_literal(expr), cardinality(f)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'minute hour day-of-month month day-of-week, e.g. ''*/5 * * * *'', or @hourly/@daily/@weekly';
    END IF;
    minutes := bg._cron_field(f[1], 0, 59);
    hours := bg._cron_field(f[2], 0, 23);
    doms := bg._cron_field(f[3], 1, 31);
    months := bg._cron_field(f[4], 1, 12,
        ARRAY['jan','feb','mar','apr','may','jun','jul','aug','sep','oct','nov','dec']);
    dows := bg._cron_field(f[5], 0, 7, ARRAY['sun','mon','tue','wed','thu','fri','sat']);
    IF 7 = ANY (dows) THEN
        dows := array_append(dows, 0);
    END IF;
    dom_any := f[3] = '*';
    dow_any := f[5] = '*';
    day := t::date;
    FOR n IN 0 .. 366 * 5 LOOP
        IF extract(month FROM day)::int = ANY (months) THEN
            IF dom_any AND dow_any THEN
                day_ok := true;
            ELSIF dom_any THEN
                day_ok := extract(dow FROM day)::int = ANY (dows);
            ELSIF dow_any THEN
                day_ok := extract(day FROM day)::int = ANY (doms);
            ELSE  -- both restricted: cron matches either
                day_ok := extract(day FROM day)::int = ANY (doms) OR extract(dow FROM day)::int = ANY (dows);
            END IF;
            IF day_ok THEN
                FOREACH h IN ARRAY hours LOOP
                    FOREACH mi IN ARRAY minutes LOOP
                        IF day + make_time(h, mi, 0) >= t THEN
                            RETURN (day + make_time(h, mi, 0)) AT TIME ZONE 'UTC';
                        END IF;
                    END LOOP;
                END LOOP;
            END IF;
        END IF;
        day := day + 1;
    END LOOP;
    RAISE EXCEPTION 'cron expression % never matches', quote_literal(expr)
        USING ERRCODE = 'invalid_parameter_value', HINT = 'check the day-of-month and month fields';
END
$$;

CREATE TABLE bg.schedules (
    name       text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    cron       text NOT NULL,
    queue      text NOT NULL CHECK (queue ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    payload    jsonb NOT NULL DEFAULT '{}',
    priority   integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 32767),
    enabled    boolean NOT NULL DEFAULT true,
    next_run   timestamptz NOT NULL,
    last_run   timestamptz,
    last_task  bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON bg.schedules (next_run) WHERE enabled;

CREATE FUNCTION bg.add_schedule(
    name text, cron text, queue text, payload jsonb DEFAULT '{}', priority integer DEFAULT 0
) RETURNS timestamptz
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    first_run timestamptz;
BEGIN
    IF name IS NULL OR length(name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'bg.add_schedule: a schedule needs a name of 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''nightly-report''';
    END IF;
    PERFORM bg._check_queue('bg.add_schedule', queue);
    IF priority IS NULL OR priority < 0 OR priority > 32767 THEN
        RAISE EXCEPTION 'bg.add_schedule: priority must be between 0 and 32767, got %', priority
            USING ERRCODE = 'invalid_parameter_value', HINT = 'higher priorities run first';
    END IF;
    first_run := bg.cron_next(cron, now());
    INSERT INTO bg.schedules AS s (name, cron, queue, payload, priority, next_run)
    VALUES (name, trim(cron), queue, coalesce(payload, '{}'), priority, first_run)
    ON CONFLICT ON CONSTRAINT schedules_pkey DO UPDATE
    SET cron = EXCLUDED.cron, queue = EXCLUDED.queue, payload = EXCLUDED.payload,
        priority = EXCLUDED.priority, next_run = EXCLUDED.next_run, enabled = true;
    RETURN first_run;
END
$$;
COMMENT ON FUNCTION bg.add_schedule(text, text, text, jsonb, integer) IS
    'API 1: add or replace a cron schedule (UTC); returns its first run time';

CREATE FUNCTION bg.remove_schedule(name text) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (DELETE FROM bg.schedules s WHERE s.name = remove_schedule.name RETURNING 1)
    SELECT count(*) > 0 FROM gone
$$;

-- Enqueue every due tick once. A schedule that fell behind (nothing ran for a
-- while) fires once for its latest missed tick, then continues from now.
CREATE FUNCTION bg.fire_schedules() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    claimed timestamptz;
    task_id bigint;
    fired integer := 0;
BEGIN
    FOR s IN
        SELECT sc.name, sc.cron, sc.queue, sc.payload, sc.priority, sc.next_run
        FROM bg.schedules sc
        WHERE sc.enabled AND sc.next_run <= now()
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE bg.schedules sc
        SET next_run = bg.cron_next(sc.cron, now()), last_run = s.next_run
        WHERE sc.name = s.name AND sc.next_run = s.next_run
        RETURNING s.next_run INTO claimed;
        IF claimed IS NOT NULL THEN
            task_id := bg.enqueue(s.queue,
                                  s.payload || jsonb_build_object('schedule', s.name, 'tick', claimed),
                                  s.priority);
            UPDATE bg.schedules sc SET last_task = task_id WHERE sc.name = s.name;
            fired := fired + 1;
        END IF;
    END LOOP;
    RETURN fired;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_reader') THEN
        GRANT SELECT ON bg.schedules TO bg_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bg_writer') THEN
        GRANT INSERT, UPDATE, DELETE ON bg.schedules TO bg_writer;
    END IF;
END
$$;
