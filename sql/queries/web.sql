-- name: prom_agents :many
-- Agent instances with status, health and beat age, for /metrics.
SELECT name, instance_id, host, status, health,
       extract(epoch FROM now() - coalesce(last_beat_at, started_at))::float8 AS beat_age_s
FROM bg.agents;

-- name: prom_alerts :many
-- Alerts by state and severity, for /metrics.
SELECT state, severity, count(*) AS n FROM bg.alerts GROUP BY state, severity;

-- name: prom_queue :many
-- Tasks by queue and status, with the oldest ready task's age, for /metrics.
SELECT queue, status, tasks, coalesce(extract(epoch FROM oldest_ready_age), 0)::float8 AS oldest_ready_s
FROM bg.queue_stats;

-- name: prom_events_total :val
-- The newest event id: a counter of events ever published.
SELECT coalesce(max(id), 0) FROM bg.events;

-- name: page_events_recent :many
-- The newest events, optionally of channel $1, with at most $3 characters of each payload's JSON;
-- with $4 (xid) and $5 (id) only those before that cursor: keyset pagination, newest first.
SELECT xid::text || ':' || id AS cursor, id, channel, source, created_at,
       left(payload::text, $3) AS payload_preview, length(payload::text) > $3 AS payload_truncated
FROM bg.events WHERE ($1::text IS NULL OR channel = $1)
  AND ($4::bigint IS NULL OR (xid, id) < ($4::text::xid8, $5::bigint))
ORDER BY xid DESC, id DESC LIMIT $2;

-- name: page_event :one
-- One event, whole, by id.
SELECT xid::text || ':' || id AS cursor, id, channel, payload, source, created_at
FROM bg.events WHERE id = $1;

-- name: page_tasks_recent :many
-- Tasks of queue $1 and status $2 (NULL: any), newest first, with at most $4 characters of each
-- payload's JSON and of the last error; with $5 only those with a smaller id (keyset pagination).
SELECT id, queue, status, priority, attempts, max_attempts, run_at, created_at,
       left(payload::text, $4) AS payload_preview, length(payload::text) > $4 AS payload_truncated,
       left(last_error, $4) AS last_error
FROM bg.tasks
WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR status = $2)
  AND ($5::bigint IS NULL OR id < $5)
ORDER BY id DESC
LIMIT $3;

-- name: page_heartbeats :many
-- An agent's recent heartbeats across its instances, newest first.
SELECT h.instance_id, h.seq, h.status, h.cpu_percent, h.rss_bytes, h.ts
FROM bg.agent_heartbeats h WHERE h.name = $1 AND h.ts > now() - interval '15 minutes'
ORDER BY h.ts DESC LIMIT $2;


-- name: page_series_by_host :many
-- One metric's samples of source $3 over the last $2 seconds, per host, for one sparkline each.
SELECT host, extract(epoch FROM ts)::float8 AS t, value FROM bg.performance_metrics
WHERE metric = $1 AND source = $3 AND ts > now() - make_interval(secs => $2) ORDER BY host, ts;

-- name: page_tasks_per_minute :many
-- Tasks that finished done or failed in the last $1 minutes (of queue $2, NULL: any), per queue,
-- status and minute (epoch seconds of its start), and the current minute.
SELECT queue, status, extract(epoch FROM date_trunc('minute', finished_at))::float8 AS minute,
       count(*)::int AS tasks,
       extract(epoch FROM date_trunc('minute', now()))::float8 AS now_minute
FROM bg.tasks
WHERE finished_at > date_trunc('minute', now()) - make_interval(mins => $1 - 1)
  AND status IN ('done', 'failed') AND ($2::text IS NULL OR queue = $2)
GROUP BY queue, status, date_trunc('minute', finished_at)
ORDER BY queue, minute;

-- name: page_now_minute :val
-- The start of the current minute in epoch seconds (the right edge of the per-minute charts).
SELECT extract(epoch FROM date_trunc('minute', now()))::float8;
