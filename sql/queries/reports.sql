-- name: report_facts :one
-- What happened in the last $1 seconds: the facts a report is built from.
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'host', host, 'status', status, 'health', health)), '[]')
     FROM bg.agents WHERE status <> 'stopped' AND health <> 'up') AS unhealthy_agents,
  (SELECT count(*) FROM bg.agents WHERE status NOT IN ('stopped', 'dead')) AS live_agents,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('rule', rule, 'summary', summary, 'severity', severity,
                                                'state', state)), '[]')
     FROM bg.alerts WHERE started_at > now() - make_interval(secs => $1) OR state = 'firing') AS alerts,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('metric', metric, 'avg', round(avg_v::numeric, 1),
                                                'max', round(max_v::numeric, 1), 'samples', n)), '[]')
     FROM (SELECT metric, avg(value) AS avg_v, max(value) AS max_v, count(*) AS n
           FROM bg.performance_metrics
           WHERE source = 'host' AND ts > now() - make_interval(secs => $1)
             AND metric IN ('host.cpu_percent', 'host.memory_percent', 'host.disk_percent',
                            'host.swap_percent', 'queue.depth')
           GROUP BY metric) m) AS metrics,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('queue', queue, 'queued', queued,
                                                'oldest_s', round(oldest_s::numeric), 'failed', failed)), '[]')
     FROM (SELECT queue,
                  count(*) FILTER (WHERE status = 'queued') AS queued,
                  extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now())) AS oldest_s,
                  count(*) FILTER (WHERE status = 'failed' AND finished_at > now() - make_interval(secs => $1)) AS failed
           FROM bg.tasks GROUP BY queue) q
     WHERE queued > 0 OR failed > 0) AS queues;

-- name: report_store :val
-- Store a report; returns its id.
INSERT INTO bg.reports (period_s, body, facts) VALUES ($1, $2, $3) RETURNING id;

-- name: report_latest :one
-- The newest report.
SELECT id, created_at, period_s, body, facts FROM bg.reports ORDER BY created_at DESC LIMIT 1;
