"""The knowledge base: idempotent ingest, re-embedding after a change of model, hybrid search.

Ingesting an unchanged file does nothing; a changed file re-embeds only its
changed chunks (``agents.ai.chunking``); chunks of another model are
re-embedded by :func:`reembed_stale`. This module embeds; storage and the
search itself (pgvector cosine ranks fused with full-text ranks by reciprocal
rank fusion) are :mod:`bus.knowledge`'s.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.ai.chunking import Chunk, chunk_text
from bus import knowledge as store
from bus.errors import InvalidArgument
from bus.knowledge import Hit, Pool

if TYPE_CHECKING:
    from agents.ai.embedders import Embedder

__all__ = ["Chunk", "Hit", "IngestReport", "chunk_text", "ingest", "reembed_stale", "search"]


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
        title = path.stem
        chunks = chunk_text(text, title, embedder.count_tokens, embedder.max_tokens)
        todo = [c for c in chunks if known.get(c.seq) != (c.sha256, embedder.model)]
        vectors: Any = (await _embed(embedder, [f"{c.heading}\n{c.content}" for c in todo])) if todo else []
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
        vectors = await _embed(embedder, [f"{c.heading}\n{c.content}" for c in stale])
        await store.set_embeddings(
            pool, [(c.id, vector) for c, vector in zip(stale, vectors, strict=True)], embedder.model
        )
        done += len(stale)
        if progress:
            counts = await store.counts(pool, embedder.model)
            progress(counts.current, counts.total)


async def search(pool: Pool, embedder: Embedder, query: str, k: int = 5) -> list[Hit]:
    """The ``k`` best chunks for ``query`` by hybrid retrieval."""
    if not query.strip():
        raise InvalidArgument("the search query is empty", hint='e.g. bgagents search "how do I enqueue"')
    if not 1 <= k <= 100:
        raise InvalidArgument(f"k must be between 1 and 100, got {k}")
    if embedder.dim not in store.SEARCH_DIMS:
        raise InvalidArgument(f"no search index for {embedder.dim}-dimension embeddings")
    vector = (await _embed(embedder, [query]))[0]
    return await store.search(pool, vector, query, model=embedder.model, k=k)
