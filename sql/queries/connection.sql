-- name: connection_has_vector :val
-- Whether the pgvector type exists in this database (then its codec is registered).
SELECT to_regtype('vector') IS NOT NULL;
