-- name: agent_register :exec
-- Register (or re-register) one agent instance as starting.
INSERT INTO bg.agents (instance_id, name, kind, host, pid, version, beat_interval_s, status, health)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'starting', 'up')
ON CONFLICT (instance_id) DO UPDATE
SET status = 'starting', health = 'up', desired = 'running', pid = EXCLUDED.pid,
    started_at = now(), updated_at = now(), note = NULL;

-- name: agent_set_status :exec
-- The instance's own lifecycle status, with an optional note.
UPDATE bg.agents SET status = $2, note = $3, updated_at = now() WHERE instance_id = $1;

-- name: agent_beat :val
-- Record a heartbeat; returns the desired state (NULL: not registered, or marked dead while it
-- was away, e.g. cut off from the network: either way the instance registers again).
SELECT CASE WHEN g.status = 'dead' THEN NULL ELSE b.desired END
FROM (SELECT bg.agent_beat($1, $2, $3, $4) AS desired) b
LEFT JOIN bg.agents g ON g.instance_id = $1;

-- name: agent_desired :val
-- What the instance should be doing: running, paused or stopped.
SELECT desired FROM bg.agents WHERE instance_id = $1;

-- name: agent_command :val
-- Send a command to every running instance of an agent.
SELECT bg.agent_command($1, $2);

-- name: agent_status_all :many
-- Every agent instance, for status pages and `bgagents status`.
SELECT name, instance_id, kind, host, pid, version, status, health, desired, last_beat_at,
       beat_age_s, started_at, note
FROM bg.agent_status ORDER BY name, host, started_at DESC;

-- name: agent_health_inputs :many
-- What the heartbeat agent needs to judge each live instance.
SELECT instance_id, name, host, status, health, beat_interval_s,
       extract(epoch FROM now() - coalesce(last_beat_at, started_at)) AS beat_age_s
FROM bg.agents WHERE status NOT IN ('stopped');

-- name: agent_set_health :exec
-- The heartbeat agent's verdict on one instance.
UPDATE bg.agents SET health = $2, updated_at = now() WHERE instance_id = $1 AND health <> $2;

-- name: agent_mark_dead :many
-- Instances whose beats stopped $1 seconds ago while they claimed to be alive.
UPDATE bg.agents SET status = 'dead', updated_at = now()
WHERE status IN ('starting', 'running', 'paused', 'stopping')
  AND coalesce(last_beat_at, started_at) < now() - make_interval(secs => $1)
RETURNING name, instance_id, host;

-- name: agent_deregister_dead :val
-- Forget dead and stopped instances after $1 seconds.
WITH gone AS (
    DELETE FROM bg.agents
    WHERE status IN ('dead', 'stopped') AND updated_at < now() - make_interval(secs => $1)
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: lease_take :val
-- Take or keep a leadership lease; returns the holder.
SELECT bg.take_lease($1, $2, $3);

-- name: lease_release :exec
-- Give up a lease this holder has.
DELETE FROM bg.leases WHERE role = $1 AND holder = $2;

-- name: retention_heartbeats :val
-- Delete heartbeats older than $1.
WITH gone AS (DELETE FROM bg.agent_heartbeats WHERE ts < now() - $1::interval RETURNING 1)
SELECT count(*) FROM gone;

-- name: retention_metrics :val
-- Delete performance metrics older than $1.
WITH gone AS (DELETE FROM bg.performance_metrics WHERE ts < now() - $1::interval RETURNING 1)
SELECT count(*) FROM gone;

-- name: retention_alerts :val
-- Delete resolved alerts older than $1.
WITH gone AS (
    DELETE FROM bg.alerts WHERE state = 'resolved' AND resolved_at < now() - $1::interval RETURNING 1
)
SELECT count(*) FROM gone;

-- name: metrics_insert :exec
-- Store a batch of samples.
INSERT INTO bg.performance_metrics (ts, host, source, instance_id, metric, value)
SELECT now(), $1, s, i, m, v FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[]) AS u(s, i, m, v);

-- name: agents_on_host :many
-- Live instances on host $1, for per-process sampling.
SELECT instance_id, name, pid FROM bg.agents
WHERE host = $1 AND status IN ('starting', 'running', 'paused', 'stopping');

-- name: alerts_open :many
-- Open alerts of rules $1 (pending or firing).
SELECT * FROM bg.alerts WHERE state <> 'resolved' AND rule = ANY ($1);

-- name: alert_open :one
-- Open a pending alert unless one with this fingerprint is open; returns it.
INSERT INTO bg.alerts (fingerprint, rule, labels, severity, summary, value)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (fingerprint) WHERE state <> 'resolved' DO UPDATE
SET summary = EXCLUDED.summary, value = EXCLUDED.value, updated_at = now()
RETURNING *;

-- name: alert_fire :one
-- Move a pending alert to firing.
UPDATE bg.alerts SET state = 'firing', fired_at = now(), updated_at = now()
WHERE id = $1 AND state = 'pending' RETURNING *;

-- name: alert_resolve :one
-- Resolve an open alert; the acknowledgement ends with it.
UPDATE bg.alerts SET state = 'resolved', resolved_at = now(), updated_at = now(),
       ack_expires_at = CASE WHEN acked_at IS NOT NULL THEN now() END
WHERE id = $1 AND state <> 'resolved' RETURNING *;

-- name: alert_notified :exec
-- Remember when an alert was last notified (for repeat_interval).
UPDATE bg.alerts SET last_notified_at = now() WHERE id = $1;

-- name: alert_ack :one
-- Acknowledge an open alert: who, comment and expiry.
UPDATE bg.alerts SET acked_by = $2, acked_at = now(), ack_comment = $3,
       ack_expires_at = now() + make_interval(secs => $4), updated_at = now()
WHERE id = $1 AND state <> 'resolved' RETURNING *;

-- name: alerts_list :many
-- Alerts filtered by state $1 (NULL: any), newest first.
SELECT * FROM bg.alerts WHERE ($1::text IS NULL OR state = $1) ORDER BY started_at DESC LIMIT $2;

-- name: alerts_firing :many
-- Firing alerts, most severe first.
SELECT id, rule, labels, severity, summary, fired_at, acked_by, ack_expires_at FROM bg.alerts
WHERE state = 'firing'
ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, fired_at;

-- name: silences_active :many
-- Silences in force now.
SELECT id, matchers, ends_at FROM bg.silences WHERE starts_at <= now() AND ends_at > now();

-- name: silence_add :val
-- Add a silence; returns its id.
INSERT INTO bg.silences (matchers, created_by, comment, ends_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id;

-- name: silence_expire :val
-- End a silence now; returns whether it existed.
WITH ended AS (UPDATE bg.silences SET ends_at = now() WHERE id = $1 AND ends_at > now() RETURNING 1)
SELECT count(*) > 0 FROM ended;

-- name: queue_health :many
-- Per queue: the oldest ready task's age and tasks failed in the last $1 seconds.
SELECT queue,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now())) AS oldest_s,
       count(*) FILTER (WHERE status = 'failed' AND finished_at > now() - make_interval(secs => $1)) AS failed_recent
FROM bg.tasks WHERE status IN ('queued', 'failed') GROUP BY queue;

-- name: analyze_hot_tables :exec
-- Refresh planner statistics of the hot tables.
ANALYZE bg.tasks, bg.events, bg.agents, bg.agent_heartbeats, bg.alerts;

-- name: health_summary :one
-- Counts behind the system health summary. A dead instance counts as down only
-- while no live instance of the same agent runs on its host (nothing replaced it).
WITH live AS (
    SELECT * FROM bg.agents WHERE status NOT IN ('stopped', 'dead')
), unreplaced_dead AS (
    SELECT d.* FROM bg.agents d
    WHERE d.status = 'dead'
      AND NOT EXISTS (SELECT 1 FROM live l WHERE l.name = d.name AND l.host = d.host
                      AND l.health IN ('up', 'late', 'paused'))
)
SELECT count(*) AS live,
       count(*) FILTER (WHERE health = 'up') AS up,
       count(*) FILTER (WHERE health = 'late') AS late,
       count(*) FILTER (WHERE health = 'down')
           + (SELECT count(*) FROM unreplaced_dead) AS down,
       count(*) FILTER (WHERE status = 'paused') AS paused,
       (SELECT count(*) FROM bg.alerts WHERE state = 'firing') AS firing
FROM live;

-- name: alert_get :one
-- One alert.
SELECT * FROM bg.alerts WHERE id = $1;

-- name: alerts_filtered :many
-- Alerts by state ($1), acknowledged ($3) and silenced ($4, against active silences), newest
-- first; NULL: any. The filters apply before the limit ($2).
SELECT * FROM (
    SELECT a.*, EXISTS (
               SELECT 1 FROM bg.silences s
               WHERE s.starts_at <= now() AND s.ends_at > now()
                 AND (a.labels || jsonb_build_object('alertname', a.rule)) @> s.matchers
           ) AS silenced,
           (a.acked_at IS NOT NULL AND (a.ack_expires_at IS NULL OR a.ack_expires_at > now())) AS acked
    FROM bg.alerts a
    WHERE ($1::text IS NULL OR a.state = $1)
) f
WHERE ($3::boolean IS NULL OR f.acked = $3)
  AND ($4::boolean IS NULL OR f.silenced = $4)
ORDER BY f.started_at DESC
LIMIT $2;

-- name: silences_list :many
-- Silences, active first, then the most recently ended.
SELECT id, matchers, created_by, comment, starts_at, ends_at, ends_at > now() AS active
FROM bg.silences ORDER BY (ends_at > now()) DESC, ends_at DESC LIMIT 200;

-- name: metrics_series :many
-- Samples of metric $1 since $2, oldest first (at most $3).
SELECT ts, source, instance_id, value FROM bg.performance_metrics
WHERE metric = $1 AND ts >= $2 ORDER BY ts LIMIT $3;

-- name: metrics_names :many
-- Metric names seen in the last hour.
SELECT DISTINCT metric FROM bg.performance_metrics WHERE ts > now() - interval '1 hour' ORDER BY metric;

-- name: queue_depth_total :val
-- Queued tasks across every queue (the monitor samples it as queue.depth).
SELECT count(*)::float8 FROM bg.tasks WHERE status = 'queued';
