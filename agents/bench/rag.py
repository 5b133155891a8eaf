"""``bgagents bench rag``: retrieval quality on our own docs, and latency at scale.

The evaluation set (``agents/bench/rag_eval.json``, 42 questions with the source and
heading that answers each) runs against README.md and docs/ ingested into the
scratch database, for each embedder that can be had. A hit counts when its
source and the last part of its heading path match. ``--synthetic N`` adds N
chunks with random vectors and words, then measures hybrid query latency.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from agents.ai import knowledge
from agents.ai.embedders import Embedder, HashingEmbedder, make_embedder
from agents.bench.common import bench, bench_database, percentile
from agents.cli.root import settings_of
from bus import ai
from bus import knowledge as store
from bus.client import Bus
from bus.errors import BgError

EVAL_FILE = Path(__file__).with_name("rag_eval.json")


def _matches(hit: knowledge.Hit, case: dict[str, str]) -> bool:
    return hit.source.endswith(case["source"]) and hit.heading.split(" > ")[-1] == case["heading"]


async def evaluate(bus: Bus, embedder: Embedder, files: list[Path]) -> dict[str, float]:
    await store.clear(bus.pool)
    await knowledge.ingest(bus.pool, embedder, files)
    cases = json.loads(EVAL_FILE.read_text())
    ranks: list[int | None] = []
    latencies: list[float] = []
    for case in cases:
        began = time.perf_counter()
        hits = await knowledge.search(bus.pool, embedder, case["q"], 10)
        latencies.append((time.perf_counter() - began) * 1000)
        ranks.append(next((n for n, h in enumerate(hits, 1) if _matches(h, case)), None))
    return {
        "questions": len(cases),
        "r_at_1": sum(1 for r in ranks if r == 1) / len(cases),
        "r_at_5": sum(1 for r in ranks if r is not None and r <= 5) / len(cases),
        "mrr_at_10": statistics.fmean(1 / r if r else 0.0 for r in ranks),
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
    }


def _vocabulary(size: int = 20000) -> list[str]:
    """Pronounceable made-up words, so full-text matches are as sparse as in real text."""
    rng = random.Random(11)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    return ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(size)]


async def synthetic(bus: Bus, n: int, queries: int = 200) -> dict[str, float]:
    """N random 384-dimension chunks; p50/p95/p99 of hybrid queries against them."""
    rng = np.random.default_rng(7)
    words = _vocabulary()
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(words))]  # Zipf, as in natural text
    pool = bus.pool
    await store.clear(pool)
    model = "all-MiniLM-L6-v2"
    # Loading is faster without the HNSW index; it is rebuilt once, as a bulk load would.
    await store.drop_minilm_index(pool)
    for start in range(0, n, 5000):
        size = min(5000, n - start)
        vectors = rng.standard_normal((size, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = [" ".join(random.choices(words, weights, k=60)) for _ in range(size)]
        await store.load_synthetic(pool, "synthetic", texts, list(vectors), model, start)
    await store.build_minilm_index(pool)

    class Fixed(HashingEmbedder):
        """Random query vectors under the MiniLM model name, so its HNSW index serves them."""

        model = "all-MiniLM-L6-v2"

        def embed(self, texts: list[str]) -> Any:
            q = rng.standard_normal((len(texts), 384)).astype(np.float32)
            return q / np.linalg.norm(q, axis=1, keepdims=True)

    embedder = Fixed()
    latencies = []
    for _ in range(queries):
        text = " ".join(random.choices(words[:2000], k=3))
        began = time.perf_counter()
        await knowledge.search(pool, embedder, text, 10)
        latencies.append((time.perf_counter() - began) * 1000)
    await store.clear(pool)
    return {
        "chunks": n,
        "queries": queries,
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
    }


@bench.command("rag")
@click.option(
    "--synthetic",
    "synthetic_n",
    default=None,
    type=click.IntRange(1000, 10_000_000),
    help="Measure latency at this many random chunks instead.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_rag(ctx: click.Context, synthetic_n: int | None, as_json: bool) -> None:
    """Retrieval quality (R@1, R@5, MRR@10) and latency per embedder, or at scale."""
    settings = settings_of(ctx)
    root = Path.cwd()
    files = [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]

    async def go() -> dict[str, Any]:
        url = await bench_database(settings)
        async with Bus.connect(replace(settings, database_url=url), listen=False) as bus:
            if not await ai.knowledge_ready(bus.pool):
                raise BgError("the knowledge base needs pgvector", hint="see `bgagents doctor`")
            if synthetic_n:
                return {"synthetic": await synthetic(bus, synthetic_n)}
            if not files:
                raise BgError("run it from the project folder (README.md and docs/ are the corpus)")
            results: dict[str, Any] = {}
            kinds = ["local", "hashing"] + (["openai"] if settings.openai_api_key else [])
            for kind in kinds:
                embedder = make_embedder(
                    kind,
                    settings.data_dir,
                    openai_api_key=settings.openai_api_key,
                    openai_base_url=settings.openai_base_url,
                )
                results[embedder.model] = await evaluate(bus, embedder, files)
            return results

    results = asyncio.run(go())
    if "synthetic" in results:
        s = results["synthetic"]
        click.echo(
            f"{s['chunks']:,} chunks, {s['queries']} hybrid queries: p50 {s['p50_ms']:.1f} ms, "
            f"p95 {s['p95_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms"
        )
    else:
        click.echo(
            f"{'embedder':<22} {'R@1':>6} {'R@5':>6} {'MRR@10':>7} {'p50 ms':>7} {'p95':>6} {'p99':>6}"
        )
        for model, r in results.items():
            click.echo(
                f"{model:<22} {r['r_at_1']:>6.2f} {r['r_at_5']:>6.2f} {r['mrr_at_10']:>7.2f} "
                f"{r['p50_ms']:>7.1f} {r['p95_ms']:>6.1f} {r['p99_ms']:>6.1f}"
            )
    if as_json:
        click.echo(json.dumps(results))
