"""The knowledge base against a real server with pgvector: ingest and hybrid search."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.ai import knowledge
from agents.ai.embedders import HashingEmbedder, LocalMiniLM
from bus import ai
from bus.client import Bus
from bus.errors import FeatureUnavailable, SchemaNotReady

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def bus(db_url: str, settings_for) -> AsyncIterator[Bus]:
    async with Bus.connect(settings_for(db_url), listen=False) as b:
        if not await ai.knowledge_ready(b.pool):
            pytest.skip("pgvector is not installed on this server, so the knowledge base is off")
        yield b


class CountingEmbedder(HashingEmbedder):
    """Counts what it embeds, so tests see what re-ingesting costs."""

    embedded = 0

    def embed(self, texts: list[str]):  # type: ignore[no-untyped-def]
        CountingEmbedder.embedded += len(texts)
        return super().embed(texts)


async def test_readme_sql_section_ranks_first(bus: Bus, minilm_dir: Path) -> None:
    embedder = LocalMiniLM(minilm_dir)
    await knowledge.ingest(bus.pool, embedder, [ROOT / "README.md"])
    hits = await knowledge.search(bus.pool, embedder, "how do I enqueue a task from SQL", k=5)
    assert hits[0].source.endswith("README.md")
    assert hits[0].heading.startswith("Use it from SQL") or "Use it from SQL" in hits[0].heading
    assert hits[0].score >= hits[-1].score


async def test_reingesting_is_incremental(bus: Bus, tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n\n## One\n\nFirst part.\n\n## Two\n\nSecond part.\n")
    embedder = CountingEmbedder()
    CountingEmbedder.embedded = 0
    first = await knowledge.ingest(bus.pool, embedder, [doc])
    assert (first.chunks_embedded, CountingEmbedder.embedded) == (2, 2)
    again = await knowledge.ingest(bus.pool, embedder, [doc])
    assert (again.unchanged, CountingEmbedder.embedded) == (1, 2)  # unchanged: nothing embedded
    doc.write_text("# Guide\n\n## One\n\nFirst part.\n\n## Two\n\nSecond part, revised.\n")
    changed = await knowledge.ingest(bus.pool, embedder, [doc])
    assert (changed.chunks_embedded, changed.chunks_kept) == (1, 1)  # only the changed chunk


async def test_a_new_model_reembeds_everything(bus: Bus, tmp_path: Path) -> None:
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nAlpha.\n\n## More\n\nBeta.\n")
    await knowledge.ingest(bus.pool, HashingEmbedder(), [doc])
    bigger = HashingEmbedder(dim=1536)
    done = await knowledge.reembed_stale(bus.pool, bigger)
    assert done == 2
    models = await bus.pool.fetch("select distinct embedding_model from bg.document_chunks")
    assert [r["embedding_model"] for r in models] == [bigger.model]


async def test_missing_tables_say_which_fix_applies(bus: Bus, tmp_path: Path) -> None:
    """pgvector is on this server, so a missing table means a migration to run, not pgvector to install."""
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nAlpha.\n")
    await bus.pool.execute("drop table bg.document_chunks, bg.documents")
    with pytest.raises(SchemaNotReady, match="knowledge base tables are missing") as err:
        await knowledge.ingest(bus.pool, HashingEmbedder(), [doc])
    assert not isinstance(err.value, FeatureUnavailable)
    assert err.value.hint and "bgagents migrate" in err.value.hint
    with pytest.raises(SchemaNotReady):
        await knowledge.search(bus.pool, HashingEmbedder(), "alpha")
