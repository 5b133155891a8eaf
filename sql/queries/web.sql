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
