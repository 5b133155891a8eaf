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
-- The newest events, optionally of channel $1, with at most $3 characters of each payload's JSON.
SELECT xid::text || ':' || id AS cursor, id, channel, source, created_at,
       left(payload::text, $3) AS payload_preview, length(payload::text) > $3 AS payload_truncated
FROM bg.events WHERE ($1::text IS NULL OR channel = $1)
ORDER BY xid DESC, id DESC LIMIT $2;

-- name: page_event :one
-- One event, whole, by id.
SELECT xid::text || ':' || id AS cursor, id, channel, payload, source, created_at
FROM bg.events WHERE id = $1;

-- name: page_tasks_recent :many
-- Tasks of queue $1 and status $2 (NULL: any), newest first, with at most $4 characters of each
-- payload's JSON and of the last error.
SELECT id, queue, status, priority, attempts, max_attempts, run_at, created_at,
       left(payload::text, $4) AS payload_preview, length(payload::text) > $4 AS payload_truncated,
       left(last_error, $4) AS last_error
FROM bg.tasks
WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY id DESC
LIMIT $3;

-- name: page_heartbeats :many
-- An agent's recent heartbeats across its instances, newest first.
SELECT h.instance_id, h.seq, h.status, h.cpu_percent, h.rss_bytes, h.ts
FROM bg.agent_heartbeats h WHERE h.name = $1 AND h.ts > now() - interval '15 minutes'
ORDER BY h.ts DESC LIMIT $2;

-- name: page_series :many
-- One metric's samples over the last $2 seconds, for a sparkline.
SELECT extract(epoch FROM ts)::float8 AS t, value FROM bg.performance_metrics
WHERE metric = $1 AND source = $3 AND ts > now() - make_interval(secs => $2) ORDER BY ts;

