-- name: rag_document :one
-- A document by source path.
SELECT id, content_sha256 FROM bg.documents WHERE source = $1;

-- name: rag_upsert_document :val
-- Create or update a document; returns its id.
INSERT INTO bg.documents (source, title, content_sha256, chunks) VALUES ($1, $2, $3, $4)
ON CONFLICT (source) DO UPDATE
SET title = EXCLUDED.title, content_sha256 = EXCLUDED.content_sha256, chunks = EXCLUDED.chunks,
    updated_at = now()
RETURNING id;

-- name: rag_chunks_of :many
-- A document's chunks: what is already embedded, and with which model.
SELECT seq, content_sha256, embedding_model FROM bg.document_chunks WHERE document = $1;

-- name: rag_upsert_chunk :exec
-- Store one chunk; keeps its embedding when neither the text nor the model changed.
INSERT INTO bg.document_chunks (document, seq, heading, content, content_sha256, embedding, embedding_model)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (document, seq) DO UPDATE
SET heading = EXCLUDED.heading, content = EXCLUDED.content, content_sha256 = EXCLUDED.content_sha256,
    embedding = EXCLUDED.embedding, embedding_model = EXCLUDED.embedding_model;

-- name: rag_trim_chunks :exec
-- Drop chunks past a document's new end.
DELETE FROM bg.document_chunks WHERE document = $1 AND seq >= $2;

-- name: rag_stale_chunks :many
-- Chunks embedded with another model than $1 (re-embedded in the background), with their document's title.
SELECT c.id, c.heading, c.content, d.title FROM bg.document_chunks c JOIN bg.documents d ON d.id = c.document
WHERE c.embedding_model IS DISTINCT FROM $1 ORDER BY c.id LIMIT $2;

-- name: rag_models :many
-- Which models the stored chunks were embedded with, the most used first.
SELECT embedding_model AS model, count(*) AS chunks FROM bg.document_chunks
WHERE embedding_model IS NOT NULL GROUP BY embedding_model ORDER BY count(*) DESC, embedding_model;

-- name: rag_set_embedding :exec
-- Store one chunk's new embedding.
UPDATE bg.document_chunks SET embedding = $2, embedding_model = $3 WHERE id = $1;

-- name: rag_count :one
-- How many chunks there are, and how many use model $1.
SELECT count(*) AS total, count(*) FILTER (WHERE embedding_model = $1) AS current FROM bg.document_chunks;

-- name: rag_ef_search :exec
-- Let HNSW consider at least $1 candidates in this transaction (above the LIMIT we fetch).
SELECT set_config('hnsw.ef_search', $1::int::text, true);

-- name: rag_search_384 :many
-- Hybrid search for 384-dimension models: cosine (HNSW) and full-text ranks
-- fused by weighted reciprocal rank fusion. $1 vector, $2 model, $3 candidates,
-- $4 query text, $5 k, $6 weight of the cosine ranks, $7 weight of the full-text ranks,
-- $8 whether any query word may match (else all must).
WITH terms AS (
    -- $8: any of the query's words may match (OR), else all of them must (websearch syntax).
    SELECT CASE WHEN $8::bool
                THEN replace(plainto_tsquery('english', $4)::text, ' & ', ' | ')::tsquery
                ELSE websearch_to_tsquery('english', $4) END AS q
), semantic AS (
    SELECT c.id, row_number() OVER (ORDER BY c.distance, c.id) AS rank
    FROM (SELECT id, embedding::vector(384) <=> $1::vector(384) AS distance
          FROM bg.document_chunks
          WHERE embedding_model = $2
          ORDER BY distance
          LIMIT $3) c
), matched AS (
    -- At most 2,000 full-text matches are ranked, so a very common word can't make
    -- a query scan the whole table.
    SELECT c.id, ts_rank_cd(c.tsv, t.q) AS score
    FROM (SELECT id, tsv FROM bg.document_chunks, terms t0
          WHERE tsv @@ t0.q LIMIT 2000) c, terms t
), lexical AS (
    SELECT m.id, row_number() OVER (ORDER BY m.score DESC, m.id) AS rank
    FROM matched m ORDER BY m.score DESC, m.id LIMIT $3
), fused AS (
    SELECT coalesce(s.id, l.id) AS id,
           coalesce($6::float8 / (60 + s.rank), 0) + coalesce($7::float8 / (60 + l.rank), 0) AS score
    FROM semantic s FULL OUTER JOIN lexical l ON s.id = l.id
)
SELECT d.source, c.heading, c.content, f.score::float8 AS score
FROM fused f JOIN bg.document_chunks c ON c.id = f.id JOIN bg.documents d ON d.id = c.document
ORDER BY f.score DESC, c.id
LIMIT $5;

-- name: rag_search_1536 :many
-- The same hybrid search for 1536-dimension models (OpenAI's text-embedding-3-small);
-- the same parameters.
WITH terms AS (
    -- $8: any of the query's words may match (OR), else all of them must (websearch syntax).
    SELECT CASE WHEN $8::bool
                THEN replace(plainto_tsquery('english', $4)::text, ' & ', ' | ')::tsquery
                ELSE websearch_to_tsquery('english', $4) END AS q
), semantic AS (
    SELECT c.id, row_number() OVER (ORDER BY c.distance, c.id) AS rank
    FROM (SELECT id, embedding::vector(1536) <=> $1::vector(1536) AS distance
          FROM bg.document_chunks
          WHERE embedding_model = $2
          ORDER BY distance
          LIMIT $3) c
), matched AS (
    -- At most 2,000 full-text matches are ranked, so a very common word can't make
    -- a query scan the whole table.
    SELECT c.id, ts_rank_cd(c.tsv, t.q) AS score
    FROM (SELECT id, tsv FROM bg.document_chunks, terms t0
          WHERE tsv @@ t0.q LIMIT 2000) c, terms t
), lexical AS (
    SELECT m.id, row_number() OVER (ORDER BY m.score DESC, m.id) AS rank
    FROM matched m ORDER BY m.score DESC, m.id LIMIT $3
), fused AS (
    SELECT coalesce(s.id, l.id) AS id,
           coalesce($6::float8 / (60 + s.rank), 0) + coalesce($7::float8 / (60 + l.rank), 0) AS score
    FROM semantic s FULL OUTER JOIN lexical l ON s.id = l.id
)
SELECT d.source, c.heading, c.content, f.score::float8 AS score
FROM fused f JOIN bg.document_chunks c ON c.id = f.id JOIN bg.documents d ON d.id = c.document
ORDER BY f.score DESC, c.id
LIMIT $5;

-- name: help_context :one
-- Live facts for an answer: agents not up, firing alerts, failed tasks of the last day.
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'host', host, 'status', status,
                                                'health', health, 'beat_age_s', round(beat_age_s::numeric, 1))), '[]')
     FROM bg.agent_status WHERE health <> 'up' AND status <> 'stopped') AS unhealthy,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('summary', summary, 'severity', severity,
                                                'since', fired_at)), '[]')
     FROM bg.alerts WHERE state = 'firing') AS alerts,
  (SELECT count(*) FROM bg.tasks WHERE status = 'failed' AND finished_at > now() - interval '1 day') AS failed_tasks,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('metric', m.metric, 'avg', m.a, 'max', m.mx)), '[]')
     FROM (SELECT metric, round(avg(value)::numeric, 1) AS a, round(max(value)::numeric, 1) AS mx
           FROM bg.performance_metrics
           WHERE source = 'host' AND ts > now() - interval '5 minutes'
             AND metric IN ('host.cpu_percent', 'host.memory_percent', 'host.load1', 'queue.depth')
           GROUP BY metric) m) AS metrics;

-- name: rag_documents_count :val
-- How many documents the knowledge base has.
SELECT count(*) FROM bg.documents;

-- name: help_log :val
-- Log one exchange (the LangSmith bridge forwards it); returns its id.
INSERT INTO bg.llm_conversations (question, context_ids, answer, model, mode, prompt_tokens,
                                  completion_tokens, latency_ms, started_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id;

-- name: help_answered :exec
-- Store a SQL caller's answer.
UPDATE bg.help_requests SET status = 'answered', answer = $2, citations = $3, answered_at = now()
WHERE id = $1;

-- name: rag_source_chunks :many
-- Every chunk of one ingested source, in order (the dashboard's source view).
SELECT c.seq, c.heading, c.content FROM bg.document_chunks c JOIN bg.documents d ON d.id = c.document
WHERE d.source = $1 ORDER BY c.seq;

-- name: knowledge_ready :val
-- Whether the knowledge base tables exist (the pgvector migration ran).
SELECT to_regclass('bg.document_chunks') IS NOT NULL;

-- name: rag_clear :exec
-- Remove every document, and with them their chunks (the benchmarks' scratch database).
DELETE FROM bg.documents;

-- name: rag_drop_minilm_index :exec
-- Drop the MiniLM HNSW index before a bulk load (rag_create_minilm_index builds it again).
DROP INDEX IF EXISTS bg.document_chunks_minilm;

-- name: rag_maintenance_work_mem :exec
-- Give index builds $1 of memory for the rest of this transaction.
SELECT set_config('maintenance_work_mem', $1, true);

-- name: rag_create_minilm_index :exec
-- The MiniLM HNSW index, as migration 0006 defines it.
CREATE INDEX document_chunks_minilm ON bg.document_chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE embedding_model = 'all-MiniLM-L6-v2';

-- name: rag_analyze :exec
-- Refresh the planner's statistics of the chunks table after a bulk load.
ANALYZE bg.document_chunks;
