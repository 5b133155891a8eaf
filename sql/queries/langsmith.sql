-- The LangSmith outbox: exchanges in bg.llm_conversations that the langsmith-bridge
-- forwards. A row is due while forwarded_at IS NULL and next_attempt_at <= now()
-- (the partial index llm_conversations_outbox). A claim moves next_attempt_at
-- forward as a lease, so several bridges never work on the same row at once and
-- a crashed bridge's rows come back by themselves when the lease runs out.

-- name: langsmith_claim :many
-- Claim up to $1 due exchanges, oldest due first, leased for $2 seconds.
WITH due AS (
    SELECT id FROM bg.llm_conversations
    WHERE forwarded_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE bg.llm_conversations c
SET next_attempt_at = now() + make_interval(secs => $2::float8)
FROM due
WHERE c.id = due.id
RETURNING c.id, c.question, c.context_ids, c.answer, c.model, c.mode, c.prompt_tokens,
          c.completion_tokens, c.latency_ms, c.started_at, c.finished_at, c.forward_attempts;

-- name: langsmith_forwarded :exec
-- LangSmith accepted exchange $1 (both of its runs): it leaves the outbox.
UPDATE bg.llm_conversations
SET forwarded_at = now(), forward_attempts = forward_attempts + 1
WHERE id = $1 AND forwarded_at IS NULL;

-- name: langsmith_failed :val
-- Forwarding exchange $1 failed with error $2: count the attempt and retry after
-- least(3600, $3 * 2^attempts) seconds, jittered down to half; returns the new next_attempt_at.
UPDATE bg.llm_conversations
SET forward_attempts = forward_attempts + 1,
    last_forward_error = left($2::text, 2000),
    next_attempt_at = now() + make_interval(
        secs => least(3600, $3::float8 * power(2, least(forward_attempts, 30))) * (0.5 + random() * 0.5))
WHERE id = $1 AND forwarded_at IS NULL
RETURNING next_attempt_at;

-- name: langsmith_release :exec
-- Hand claimed exchanges $1 back, due now, without counting an attempt (a batch cut short).
UPDATE bg.llm_conversations SET next_attempt_at = now()
WHERE id = ANY($1::bigint[]) AND forwarded_at IS NULL;

