-- name: notifier_ping :exec
-- The notifier's self-ping: a NOTIFY on its private channel $1, which it LISTENs on.
SELECT pg_notify($1, 'ping');
