"""The knowledge base: idempotent ingest, re-embedding after a change of model, hybrid search.

Ingesting an unchanged file does nothing; a changed file re-embeds only its
changed chunks (``agents.ai.chunking``); chunks of another model are
re-embedded by :func:`reembed_stale`. What is embedded of a chunk is its
document title, heading path and text (:func:`passage_text`). This module
embeds; storage and the search itself (pgvector cosine ranks fused with
full-text ranks by weighted reciprocal rank fusion, :data:`FUSION`) are
:mod:`bus.knowledge`'s. An optional cross-encoder (:mod:`agents.ai.rerank`)
reorders the fused top candidates.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.ai.chunking import Chunk, chunk_text
from agents.ai.rerank import DEPTH, Reranker
from bus import knowledge as store
from bus.errors import InvalidArgument
from bus.knowledge import Fusion, Hit, Pool

if TYPE_CHECKING:
    from agents.ai.embedders import Embedder

__all__ = [
    "FUSION",
    "Chunk",
    "Fusion",
    "Hit",
    "IngestReport",
    "chunk_text",
    "ingest",
    "passage_text",
    "reembed_stale",
    "search",
]

FUSION = Fusion(semantic=1.0, lexical=0.25)
"""The default fusion, chosen on the outside set (PostgreSQL's manual: MRR@10 0.62, R@5 0.77, the
best of the all-words weightings) and checked on ours (MRR@10 0.83 -> 0.84, R@5 1.00). Matching
any word (``any_terms``) adds 0.03 MRR@10 there but costs 17x in SQL at 100,000 chunks (p95 8 ->
93 ms), so it stays an option; ``bgagents bench rag`` measures every weighting on both sets."""


def passage_text(heading: str, content: str, title: str = "") -> str:
    """What is embedded of a chunk: the title (unless the heading path starts with it), path, text."""
    if title and not heading.startswith(title):
        heading = f"{title} > {heading}"
    return f"{heading}\n{content}"


def document_title(text: str, fallback: str) -> str:
    """The first level-one Markdown heading of ``text``, else ``fallback``."""
    for line in text.splitlines()[:50]:
        if line.startswith("# "):
            return line[2:].strip() or fallback
    return fallback


@dataclass
class IngestReport:
    """What an ingest did: files seen, files unchanged, chunks embedded and kept."""

    files: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_kept: int = 0


async def _embed(embedder: Embedder, texts: list[str]) -> Any:
    """Embed in a thread: a forward pass takes long enough to stall heartbeats otherwise."""
    return await asyncio.to_thread(embedder.embed, texts)


async def ingest(
    pool: Pool,
    embedder: Embedder,
    paths: list[Path],
    progress: Callable[[str, int, int], None] | None = None,
) -> IngestReport:
    """Ingest Markdown and text files; only new or changed chunks are embedded."""
    report = IngestReport()
    for index, path in enumerate(paths):
        report.files += 1
        text = path.read_text(encoding="utf-8", errors="replace")
        source = str(path)
        digest = hashlib.sha256(text.encode()).hexdigest()
        existing = await store.document(pool, source)
        known: dict[int, tuple[str, str | None]] = {}
        if existing is not None:
            known = {
                c.seq: (c.content_sha256, c.embedding_model) for c in await store.chunks_of(pool, existing.id)
            }
            if (
                existing.content_sha256 == digest
                and known
                and all(model == embedder.model for _, model in known.values())
            ):
                report.unchanged += 1
                if progress:
                    progress(source, index + 1, len(paths))
                continue
        title = document_title(text, path.stem)
        chunks = chunk_text(text, title, embedder.count_tokens, embedder.max_tokens)
        todo = [c for c in chunks if known.get(c.seq) != (c.sha256, embedder.model)]
        passages = [passage_text(c.heading, c.content, title) for c in todo]
        vectors: Any = (await _embed(embedder, passages)) if todo else []
        changed = [
            store.NewChunk(c.seq, c.heading, c.content, c.sha256, vector, embedder.model)
            for c, vector in zip(todo, vectors, strict=True)
        ]
        await store.save_document(pool, source, title, digest, len(chunks), changed)
        report.chunks_embedded += len(todo)
        report.chunks_kept += len(chunks) - len(todo)
        if progress:
            progress(source, index + 1, len(paths))
    return report


async def reembed_stale(
    pool: Pool, embedder: Embedder, batch: int = 64, progress: Callable[[int, int], None] | None = None
) -> int:
    """Re-embed every chunk whose model is not ``embedder``'s; returns how many."""
    done = 0
    while True:
        stale = await store.stale_chunks(pool, embedder.model, batch)
        if not stale:
            return done
        vectors = await _embed(embedder, [passage_text(c.heading, c.content, c.title) for c in stale])
        await store.set_embeddings(
            pool, [(c.id, vector) for c, vector in zip(stale, vectors, strict=True)], embedder.model
        )
        done += len(stale)
        if progress:
            counts = await store.counts(pool, embedder.model)
            progress(counts.current, counts.total)


async def embed_query(embedder: Embedder, query: str) -> Any:
    """The query's vector, with the model's query prefix where it has one (bge)."""
    queries = getattr(embedder, "embed_queries", None)
    if queries is not None:
        return (await asyncio.to_thread(queries, [query]))[0]
    return (await _embed(embedder, [query]))[0]


async def search(
    pool: Pool,
    embedder: Embedder,
    query: str,
    k: int = 5,
    *,
    reranker: Reranker | None = None,
    fusion: Fusion = FUSION,
) -> list[Hit]:
    """The ``k`` best chunks for ``query`` by hybrid retrieval, reranked when a reranker is given."""
    if not query.strip():
        raise InvalidArgument("the search query is empty", hint='e.g. bgagents search "how do I enqueue"')
    if not 1 <= k <= 100:
        raise InvalidArgument(f"k must be between 1 and 100, got {k}")
    if embedder.dim not in store.SEARCH_DIMS:
        raise InvalidArgument(f"no search index for {embedder.dim}-dimension embeddings")
    vector = await embed_query(embedder, query)
    if reranker is None:
        return await store.search(pool, vector, query, model=embedder.model, k=k, fusion=fusion)
    return await rerank(
        reranker,
        query,
        await store.search(pool, vector, query, model=embedder.model, k=max(k, DEPTH), fusion=fusion),
        k,
    )


async def rerank(reranker: Reranker, query: str, hits: list[Hit], k: int) -> list[Hit]:
    """The ``k`` of ``hits`` that ``reranker`` scores highest, scored by it."""
    scores = await asyncio.to_thread(reranker.score, query, [f"{h.heading}\n{h.content}" for h in hits])
    ranked = sorted(zip(hits, scores, strict=True), key=lambda pair: -float(pair[1]))[:k]
    return [Hit(h.source, h.heading, h.content, float(score)) for h, score in ranked]
