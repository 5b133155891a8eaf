-- name: events_publish :val
-- Append one event; returns its id.
SELECT bg.publish($1, $2, $3);

-- name: events_publish_many :many
-- Append several events in one statement (one NOTIFY); returns their ids in order.
INSERT INTO bg.events (channel, payload, source)
SELECT c, p, $3 FROM unnest($1::text[], $2::jsonb[]) AS u(c, p)
RETURNING id;

-- name: events_after :many
-- Events after cursor $1 on channels $2 (NULL: all), at most $3, in delivery order.
SELECT cursor, id, channel, payload, source, created_at FROM bg.events_after($1, $2, $3);

-- name: events_pending :val
-- Whether committed events wait beyond the read horizon (look again soon).
SELECT bg.events_pending();

-- name: events_current_cursor :val
-- The cursor of the newest deliverable event.
SELECT bg.current_cursor();

-- name: events_prune :val
-- Delete events older than $1; returns how many.
SELECT bg.prune_events($1);
