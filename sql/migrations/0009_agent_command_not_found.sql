-- bg.agent_command: "no running agent NAME" is SQLSTATE no_data_found (P0002), so callers
-- tell it from a bad argument (an unknown command stays invalid_parameter_value) by its
-- code rather than by its message. The message and the HINT listing running agents stay.

CREATE OR REPLACE FUNCTION bg.agent_command(name text, command text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    n integer;
    known text;
BEGIN
    IF command IS NULL OR command NOT IN ('pause', 'resume', 'stop', 'restart') THEN
        RAISE EXCEPTION 'bg.agent_command: unknown command %', coalesce(quote_literal(command), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'one of pause, resume, stop, restart';
    END IF;
    UPDATE bg.agents g
    SET desired = CASE command WHEN 'pause' THEN 'paused' WHEN 'stop' THEN 'stopped'
                               ELSE 'running' END,
        updated_at = now()
    WHERE g.name = name AND g.status NOT IN ('stopped', 'dead');
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        SELECT string_agg(DISTINCT g.name, ', ' ORDER BY g.name) INTO known FROM bg.agents g
        WHERE g.status NOT IN ('stopped', 'dead');
        RAISE EXCEPTION 'bg.agent_command: no running agent named %', quote_literal(name)
            USING ERRCODE = 'no_data_found',
                  HINT = 'running agents: ' || coalesce(known, 'none');
    END IF;
    PERFORM bg.publish('commands', jsonb_build_object('name', name, 'command', command), 'bg.agent_command');
    RETURN n;
END
$$;
COMMENT ON FUNCTION bg.agent_command(text, text) IS
    'API 1: pause, resume, stop or restart every running instance of an agent; returns how many';
