"""The knowledge base's storage: documents, their chunks and embeddings, and hybrid search.

Vectors in, hits out: callers embed (``agents.ai``) and pass the vectors; this
module stores them and runs the searches (``sql/queries/rag.sql``), which fuse
pgvector cosine ranks with full-text ranks by reciprocal rank fusion. The
tables exist only where the pgvector migration ran: a missing table becomes
:class:`~bus.errors.FeatureUnavailable` when the server has no pgvector, and
:class:`~bus.errors.SchemaNotReady` when it has and the migration is pending.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

from bus import db
from bus.errors import FeatureUnavailable, InvalidArgument, SchemaNotReady

Pool: TypeAlias = db.Pool
"""The pool callers outside ``bus`` pass in (their ``Bus.pool``)."""
Vector: TypeAlias = Any
"""One embedding: a float32 numpy array or a sequence of floats (pgvector's codec takes both)."""

SEARCH_DIMS = (384, 1536)
"""Vector lengths that have a search index (MiniLM and hashing; OpenAI's text-embedding-3-small)."""
CANDIDATES = 100
"""How many candidates each ranking (vector, full text) contributes to the fusion."""


@dataclass(frozen=True)
class Fusion:
    """Weights of the two rankings in reciprocal rank fusion (``w / (60 + rank)`` each), and whether
    the full-text ranking matches chunks with any of the query's words (else with all of them)."""

    semantic: float = 1.0
    lexical: float = 1.0
    any_terms: bool = False


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk, where it comes from, and its fused score."""

    source: str
    heading: str
    content: str
    score: float

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "heading": self.heading,
            "content": self.content,
            "score": round(self.score, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hit:
        """The hit that :meth:`as_json` gave."""
        return cls(str(data["source"]), str(data["heading"]), str(data["content"]), float(data["score"]))


@dataclass(frozen=True)
class Document:
    """An ingested document: its id and the SHA-256 of the text it was ingested from."""

    id: int
    content_sha256: str


@dataclass(frozen=True)
class StoredChunk:
    """What is stored of one chunk: its place, its text's hash and the model of its embedding."""

    seq: int
    content_sha256: str
    embedding_model: str | None


@dataclass(frozen=True)
class NewChunk:
    """One chunk to store with its embedding."""

    seq: int
    heading: str
    content: str
    content_sha256: str
    embedding: Vector
    model: str


@dataclass(frozen=True)
class StaleChunk:
    """A chunk embedded with another model, to embed again."""

    id: int
    heading: str
    content: str
    title: str = ""


@dataclass(frozen=True)
class ChunkCounts:
    """How many chunks there are, and how many have the current model's embedding."""

    total: int
    current: int


async def _missing(pool: db.Pool | db.Connection, exc: SchemaNotReady) -> FeatureUnavailable | SchemaNotReady:
    """Why the knowledge base tables are missing: no pgvector on the server, or a pending migration."""
    if not await db.call(pool, "extension_available", "vector"):
        return FeatureUnavailable(
            "the knowledge base needs pgvector, and its migration was skipped on this server",
            hint="install pgvector (bgagents doctor says how), then run `bgagents migrate`",
        )
    return SchemaNotReady(f"the knowledge base tables are missing ({exc.message})")


@asynccontextmanager
async def _tables(pool: db.Pool | db.Connection) -> AsyncIterator[None]:
    """Raise a missing table as :class:`FeatureUnavailable` or :class:`SchemaNotReady`, saying which."""
    try:
        yield
    except SchemaNotReady as exc:
        if isinstance(pool, db.Connection) and pool.is_in_transaction():
            raise  # the transaction is aborted: no further query can ask why
        raise await _missing(pool, exc) from exc


@asynccontextmanager
async def _transaction(pool: db.Pool | db.Connection) -> AsyncIterator[db.Connection]:
    """One connection in a transaction: the pool's, or ``pool`` itself when it is a connection."""
    if isinstance(pool, db.Connection):
        async with pool.transaction():
            yield pool
        return
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def document(pool: db.Pool | db.Connection, source: str) -> Document | None:
    """The document ingested from ``source``, or None."""
    async with _tables(pool):
        row = await db.call(pool, "rag_document", source)
    return Document(int(row["id"]), str(row["content_sha256"])) if row else None


async def chunks_of(pool: db.Pool | db.Connection, document_id: int) -> list[StoredChunk]:
    """What is stored of a document's chunks: hashes and embedding models."""
    async with _tables(pool):
        rows = await db.call(pool, "rag_chunks_of", document_id)
    return [StoredChunk(r["seq"], r["content_sha256"], r["embedding_model"]) for r in rows]


async def upsert_document(
    pool: db.Pool | db.Connection, source: str, title: str, content_sha256: str, chunks: int
) -> int:
    """Create or update the document of ``source``; returns its id."""
    async with _tables(pool):
        return int(await db.call(pool, "rag_upsert_document", source, title, content_sha256, chunks))


async def upsert_chunk(pool: db.Pool | db.Connection, document_id: int, chunk: NewChunk) -> None:
    """Store one chunk of a document with its embedding."""
    async with _tables(pool):
        await db.call(
            pool,
            "rag_upsert_chunk",
            document_id,
            chunk.seq,
            chunk.heading,
            chunk.content,
            chunk.content_sha256,
            chunk.embedding,
            chunk.model,
        )


async def trim_chunks(pool: db.Pool | db.Connection, document_id: int, keep: int) -> None:
    """Drop a document's chunks from position ``keep`` on."""
    async with _tables(pool):
        await db.call(pool, "rag_trim_chunks", document_id, keep)


async def save_document(
    pool: db.Pool | db.Connection,
    source: str,
    title: str,
    content_sha256: str,
    total_chunks: int,
    changed: Sequence[NewChunk],
) -> int:
    """In one transaction: upsert the document, store its ``changed`` chunks, drop those past the end."""
    async with _tables(pool), _transaction(pool) as conn:
        doc_id = await upsert_document(conn, source, title, content_sha256, total_chunks)
        for chunk in changed:
            await upsert_chunk(conn, doc_id, chunk)
        await trim_chunks(conn, doc_id, total_chunks)
    return doc_id


async def stale_chunks(pool: db.Pool | db.Connection, model: str, limit: int) -> list[StaleChunk]:
    """Up to ``limit`` chunks whose embedding is not ``model``'s."""
    async with _tables(pool):
        rows = await db.call(pool, "rag_stale_chunks", model, limit)
    return [StaleChunk(r["id"], r["heading"], r["content"], r["title"]) for r in rows]


async def models_in_use(pool: db.Pool | db.Connection) -> list[tuple[str, int]]:
    """(model, chunks) for each model the stored chunks were embedded with, the most used first."""
    async with _tables(pool):
        rows = await db.call(pool, "rag_models")
    return [(str(r["model"]), int(r["chunks"])) for r in rows]


async def set_embedding(pool: db.Pool | db.Connection, chunk_id: int, vector: Vector, model: str) -> None:
    """Store one chunk's new embedding."""
    async with _tables(pool):
        await db.call(pool, "rag_set_embedding", chunk_id, vector, model)


async def set_embeddings(
    pool: db.Pool | db.Connection, updates: Sequence[tuple[int, Vector]], model: str
) -> None:
    """Store new embeddings of ``model`` for (chunk id, vector) pairs, in one transaction."""
    async with _tables(pool), _transaction(pool) as conn:
        for chunk_id, vector in updates:
            await set_embedding(conn, chunk_id, vector, model)


async def counts(pool: db.Pool | db.Connection, model: str) -> ChunkCounts:
    """How many chunks there are, and how many are embedded with ``model``."""
    async with _tables(pool):
        row = await db.call(pool, "rag_count", model)
    return ChunkCounts(int(row["total"]), int(row["current"]))


async def documents_count(pool: db.Pool | db.Connection) -> int:
    """How many documents the knowledge base has."""
    async with _tables(pool):
        return int(await db.call(pool, "rag_documents_count"))


async def source_chunks(pool: db.Pool | db.Connection, source: str) -> list[dict[str, Any]]:
    """Every chunk of one ingested source in order, as ``{seq, heading, content}`` (the /knowledge page)."""
    async with _tables(pool):
        rows = await db.call(pool, "rag_source_chunks", source)
    return [dict(r) for r in rows]


async def search(
    pool: db.Pool | db.Connection,
    vector: Vector,
    text: str,
    *,
    model: str,
    k: int = 5,
    candidates: int = CANDIDATES,
    fusion: Fusion = Fusion(),
) -> list[Hit]:
    """The ``k`` best chunks for query ``text`` embedded as ``vector`` by ``model`` (hybrid, fused by RRF)."""
    dim = len(vector)
    if dim not in SEARCH_DIMS:
        raise InvalidArgument(f"no search index for {dim}-dimension embeddings")
    async with _tables(pool), _transaction(pool) as conn:
        # Let HNSW consider more candidates than the LIMIT it feeds, in this transaction only.
        await db.call(conn, "rag_ef_search", max(candidates * 2, 200))
        rows = await db.call(
            conn,
            f"rag_search_{dim}",
            vector,
            model,
            candidates,
            text,
            k,
            fusion.semantic,
            fusion.lexical,
            fusion.any_terms,
        )
    return [Hit(r["source"], r["heading"], r["content"], r["score"]) for r in rows]


async def clear(pool: db.Pool | db.Connection) -> None:
    """Remove every document and its chunks (the benchmarks' scratch database)."""
    async with _tables(pool):
        await db.call(pool, "rag_clear")


async def load_synthetic(
    pool: db.Pool, source: str, texts: Sequence[str], vectors: Sequence[Vector], model: str, start: int = 0
) -> None:
    """Bulk-load chunks of ``source`` (created if need be) with COPY, numbered from ``start``."""
    async with _tables(pool):
        doc_id = await upsert_document(pool, source, source, "", start + len(texts))
        await pool.copy_records_to_table(
            "document_chunks",
            schema_name="bg",
            columns=[
                "document",
                "seq",
                "heading",
                "content",
                "content_sha256",
                "embedding",
                "embedding_model",
            ],
            records=[(doc_id, start + i, source, texts[i], "", vectors[i], model) for i in range(len(texts))],
        )


async def drop_minilm_index(pool: db.Pool | db.Connection) -> None:
    """Drop the MiniLM HNSW index (a bulk load is faster without it)."""
    await db.call(pool, "rag_drop_minilm_index")


async def build_minilm_index(pool: db.Pool | db.Connection, work_mem: str = "512MB") -> None:
    """Build the MiniLM HNSW index again, with ``work_mem`` of maintenance memory, then analyze."""
    async with _transaction(pool) as conn:
        await db.call(conn, "rag_maintenance_work_mem", work_mem)
        await db.call(conn, "rag_create_minilm_index")
    await db.call(pool, "rag_analyze")
