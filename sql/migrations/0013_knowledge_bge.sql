-- 0013: an HNSW index for bge-small-en-v1.5's vectors (384 floats, like MiniLM's, but
-- never comparable with them): partial on the model, as each model's index is.
-- requires-extension: vector

CREATE INDEX document_chunks_bge_small ON bg.document_chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE embedding_model = 'bge-small-en-v1.5';
