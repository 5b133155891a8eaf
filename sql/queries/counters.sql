-- name: counters_all :many
-- Every counter summed over its shards (bg.counters; see migration 0011).
SELECT metric, scope, label, sum(value)::double precision AS value
FROM bg.counters
GROUP BY metric, scope, label
ORDER BY metric, scope, label;

-- name: counters_latency_bounds :val
-- The claim-latency histogram's bucket bounds in seconds (+Inf implied).
SELECT bg.claim_latency_bounds();
