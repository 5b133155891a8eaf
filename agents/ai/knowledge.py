"""The knowledge base: Markdown-aware chunking, idempotent ingest, hybrid search.

Chunks follow Markdown headings and keep their heading path ("Quick start >
Then try"); long sections split at paragraph, then sentence, boundaries into
about 800 characters with some overlap, and no chunk exceeds the embedder's
input limit. Ingesting an unchanged file does nothing; a changed file
re-embeds only its changed chunks; chunks of another model are re-embedded by
:func:`reembed_stale`. Search fuses pgvector cosine ranks and full-text ranks
by reciprocal rank fusion, in SQL (``sql/queries/rag.sql``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from bus import db
from bus.errors import FeatureUnavailable, InvalidArgument

if TYPE_CHECKING:
    from agents.ai.embedders import Embedder

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
CANDIDATES = 100
TARGET_CHARS = 800
OVERLAP_CHARS = 120


@dataclass(frozen=True)
class Chunk:
    seq: int
    heading: str
    content: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.heading}\n{self.content}".encode()).hexdigest()


@dataclass(frozen=True)
class Hit:
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


def _sections(text: str, title: str) -> Iterable[tuple[str, str]]:
    """(heading path, body) for each Markdown section; code fences never hold headings."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fenced = False

    def flush() -> tuple[str, str]:
        heading = " > ".join(h for _, h in path) or title
        return heading, "\n".join(body).strip()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            heading, content = flush()
            if content:
                yield heading, content
            body = []
            level = len(match.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, match.group(2))]
        else:
            body.append(line)
    heading, content = flush()
    if content:
        yield heading, content


def _pieces(body: str, limit: int) -> list[str]:
    """Split a section body into pieces of at most ``limit`` characters, at paragraph,
    then sentence, then word boundaries."""
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= limit:
            units.append(paragraph)
            continue
        for sentence in SENTENCE_END.split(paragraph):
            while len(sentence) > limit:
                cut = sentence.rfind(" ", 0, limit)
                cut = cut if cut > limit // 2 else limit
                units.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                units.append(sentence)
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + 2 + len(unit) > limit:
            pieces.append(current)
            tail = current[-OVERLAP_CHARS:]
            tail = tail[tail.find(" ") + 1 :] if " " in tail else ""
            current = f"{tail} {unit}".strip() if len(tail) + len(unit) < limit else unit
        else:
            current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def chunk_text(
    text: str, title: str, count_tokens: Callable[[str], int], max_tokens: int, target: int = TARGET_CHARS
) -> list[Chunk]:
    """Chunks of a Markdown or plain-text document."""
    chunks: list[Chunk] = []
    for heading, body in _sections(text, title):
        stack = _pieces(body, target)
        while stack:
            piece = stack.pop(0)
            if count_tokens(f"{heading}\n{piece}") > max_tokens and len(piece) > 40:
                half = max(40, len(piece) // 2)
                stack[:0] = _pieces(piece, half)  # too many word pieces: split smaller
                continue
            chunks.append(Chunk(len(chunks), heading, piece))
    return chunks


@dataclass
class IngestReport:
    files: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_kept: int = 0


async def _embed(embedder: Embedder, texts: list[str]) -> Any:
    """Embed in a thread: a forward pass takes long enough to stall heartbeats otherwise."""
    return await asyncio.to_thread(embedder.embed, texts)


def _missing_pgvector(exc: Exception) -> FeatureUnavailable:
    return FeatureUnavailable(
        "the knowledge base needs pgvector, and its migration was skipped on this server",
        hint="install pgvector (bgagents doctor says how), then run `bgagents migrate`",
    )


async def ingest(
    pool: db.Pool,
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
        try:
            existing = await db.run(pool, "rag_document", source)
        except asyncpg.UndefinedTableError as exc:
            raise _missing_pgvector(exc) from exc
        known: dict[int, tuple[str, str | None]] = {}
        if existing is not None:
            known = {
                r["seq"]: (r["content_sha256"], r["embedding_model"])
                for r in await db.run(pool, "rag_chunks_of", existing["id"])
            }
            if (
                existing["content_sha256"] == digest
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
        async with pool.acquire() as conn, conn.transaction():
            doc_id = await db.run(conn, "rag_upsert_document", source, title, digest, len(chunks))
            for chunk, vector in zip(todo, vectors, strict=True):
                await db.run(
                    conn,
                    "rag_upsert_chunk",
                    doc_id,
                    chunk.seq,
                    chunk.heading,
                    chunk.content,
                    chunk.sha256,
                    vector,
                    embedder.model,
                )
            await db.run(conn, "rag_trim_chunks", doc_id, len(chunks))
        report.chunks_embedded += len(todo)
        report.chunks_kept += len(chunks) - len(todo)
        if progress:
            progress(source, index + 1, len(paths))
    return report


async def reembed_stale(
    pool: db.Pool, embedder: Embedder, batch: int = 64, progress: Callable[[int, int], None] | None = None
) -> int:
    """Re-embed every chunk whose model is not ``embedder``'s; returns how many."""
    done = 0
    while True:
        rows = await db.run(pool, "rag_stale_chunks", embedder.model, batch)
        if not rows:
            return done
        vectors = await _embed(embedder, [f"{r['heading']}\n{r['content']}" for r in rows])
        async with pool.acquire() as conn, conn.transaction():
            for row, vector in zip(rows, vectors, strict=True):
                await db.run(conn, "rag_set_embedding", row["id"], vector, embedder.model)
        done += len(rows)
        if progress:
            counts = await db.run(pool, "rag_count", embedder.model)
            progress(counts["current"], counts["total"])


async def search(pool: db.Pool, embedder: Embedder, query: str, k: int = 5) -> list[Hit]:
    """The ``k`` best chunks for ``query`` by hybrid retrieval."""
    if not query.strip():
        raise InvalidArgument("the search query is empty", hint='e.g. bgagents search "how do I enqueue"')
    if not 1 <= k <= 100:
        raise InvalidArgument(f"k must be between 1 and 100, got {k}")
    if embedder.dim not in (384, 1536):
        raise InvalidArgument(f"no search index for {embedder.dim}-dimension embeddings")
    vector = (await _embed(embedder, [query]))[0]
    try:
        async with pool.acquire() as conn, conn.transaction():
            await db.run(conn, "rag_ef_search", max(CANDIDATES * 2, 200))
            rows = await db.run(
                conn, f"rag_search_{embedder.dim}", vector, embedder.model, CANDIDATES, query, k
            )
    except asyncpg.UndefinedTableError as exc:
        raise _missing_pgvector(exc) from exc
    return [Hit(r["source"], r["heading"], r["content"], r["score"]) for r in rows]
