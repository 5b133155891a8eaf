"""``bgagents bench rag``: retrieval quality on our own docs and on an outside corpus, and latency at scale.

Two sets (:mod:`agents.bench.rag_cases`): ours, 42 questions about README.md and
docs/; and the outside one, questions about PostgreSQL's manual
(:mod:`agents.bench.pgdocs`), most of them paraphrases. Each set's corpus is
ingested into the scratch database once per embedder; then every configuration
(full text only, vectors only, fusion weights, reranking) answers every
question. R@1, R@5 and MRR@10 count the first hit of the answering section;
latency is the whole search (query embedding, SQL, reranking). Fusion weights
are chosen on one set and reported on the other, both ways, so that no one
tunes to one set. ``--synthetic N`` measures latency at N random chunks instead
(:mod:`agents.bench.rag_synthetic`).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from agents.ai import knowledge
from agents.ai.embedders import Embedder, choose_embedder
from agents.ai.rerank import Reranker, make_reranker
from agents.bench import pgdocs, rag_cases
from agents.bench.common import bench, bench_database, percentile
from agents.bench.rag_synthetic import synthetic
from agents.cli.root import settings_of
from bus import ai
from bus import knowledge as store
from bus.client import Bus
from bus.config import Settings
from bus.errors import BgError
from bus.knowledge import Fusion

WEIGHTS = tuple(
    Fusion(semantic, lexical, any_terms)
    for any_terms in (False, True)
    for semantic, lexical in ((1.0, 1.0), (1.0, 0.75), (1.0, 0.5), (1.0, 0.25), (0.75, 1.0), (0.5, 1.0))
)
"""The fusion weights tried when tuning (semantic, lexical; full text matching all or any words)."""
VECTORS_ONLY = Fusion(1.0, 0.0)
TEXT_ONLY = Fusion(0.0, 1.0)
TEXT_ANY_ONLY = Fusion(0.0, 1.0, any_terms=True)


@dataclass(frozen=True)
class Corpus:
    """One evaluation set and the files it is asked about."""

    name: str
    files: list[Path]
    cases: list[rag_cases.Case]


def _fmt(f: Fusion) -> str:
    return f"{f.semantic:g}:{f.lexical:g}{' any' if f.any_terms else ''}"


def score(ranks: list[int | None], latencies: list[float], paraphrase: list[bool]) -> dict[str, Any]:
    """R@1, R@5, MRR@10 (and R@5 of the paraphrases alone), p50/p95 latency."""
    n = len(ranks)
    para = [r for r, p in zip(ranks, paraphrase, strict=True) if p]
    return {
        "questions": n,
        "r_at_1": sum(1 for r in ranks if r == 1) / n,
        "r_at_5": sum(1 for r in ranks if r is not None and r <= 5) / n,
        "mrr_at_10": statistics.fmean(1 / r if r else 0.0 for r in ranks),
        "paraphrase_r_at_5": (sum(1 for r in para if r is not None and r <= 5) / len(para)) if para else None,
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
    }


async def run_cases(
    bus: Bus,
    embedder: Embedder,
    cases: list[rag_cases.Case],
    *,
    fusion: Fusion,
    reranker: Reranker | None = None,
) -> dict[str, Any]:
    """Ask every question once with this configuration; its scores and latencies."""
    ranks: list[int | None] = []
    latencies: list[float] = []
    for case in cases:
        began = time.perf_counter()
        hits = await knowledge.search(bus.pool, embedder, case.q, 10, reranker=reranker, fusion=fusion)
        latencies.append((time.perf_counter() - began) * 1000)
        ranks.append(next((n for n, h in enumerate(hits, 1) if case.matches(h.source, h.heading)), None))
    return score(ranks, latencies, [c.paraphrase for c in cases])


async def evaluate_embedder(
    bus: Bus, embedder: Embedder, corpora: list[Corpus], reranker: Reranker | None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per corpus: every configuration's scores with this embedder (``weights=`` rows try each fusion)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for corpus in corpora:
        began = time.perf_counter()
        await store.clear(bus.pool)
        report = await knowledge.ingest(bus.pool, embedder, corpus.files)
        click.echo(
            f"{embedder.model}: {corpus.name} set, {report.files} files, {report.chunks_embedded} chunks "
            f"embedded in {time.perf_counter() - began:.0f} s; asking {len(corpus.cases)} questions",
            err=True,
        )
        rows: dict[str, dict[str, Any]] = {
            "full text only": await run_cases(bus, embedder, corpus.cases, fusion=TEXT_ONLY),
            "full text any word": await run_cases(bus, embedder, corpus.cases, fusion=TEXT_ANY_ONLY),
            "vectors only": await run_cases(bus, embedder, corpus.cases, fusion=VECTORS_ONLY),
        }
        for fusion in WEIGHTS:
            rows[f"weights={_fmt(fusion)}"] = await run_cases(bus, embedder, corpus.cases, fusion=fusion)
        if reranker is not None:
            rows[f"rerank {_fmt(knowledge.FUSION)}"] = await run_cases(
                bus, embedder, corpus.cases, fusion=knowledge.FUSION, reranker=reranker
            )
        out[corpus.name] = rows
    return out


def cross_tuned(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per corpus: the fusion weights that gave the other corpus its best MRR@10, and their scores here."""
    names = list(results)
    tuned: dict[str, Any] = {}
    for name in names:
        others = [o for o in names if o != name]
        if not others:
            continue
        other = results[others[0]]
        best = max((k for k in other if k.startswith("weights=")), key=lambda k: other[k]["mrr_at_10"])
        tuned[name] = {
            "chosen_on": others[0],
            "weights": best.removeprefix("weights="),
            **results[name][best],
        }
    return tuned


def corpora(root: Path, scratch: Path) -> tuple[list[Corpus], str | None]:
    """Our docs and, when PostgreSQL's manual is installed, the outside corpus (else why not)."""
    ours = [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]
    found = [Corpus("ours", ours, rag_cases.ours())] if ours else []
    if not pgdocs.available():
        return found, f"outside set skipped: PostgreSQL's manual is missing ({pgdocs.INSTALL_HINT})"
    found.append(Corpus("outside", pgdocs.write_corpus(scratch / "pgdocs"), rag_cases.outside()))
    return found, None


def embedders(settings: Settings) -> list[tuple[str, Embedder | None, str | None]]:
    """(name, embedder or None, why not) for every embedder the bench compares."""
    out: list[tuple[str, Embedder | None, str | None]] = []
    kinds = ["hashing", "local", "bge-small"] + (["openai"] if settings.openai_api_key else [])
    for kind in kinds:
        choice = choose_embedder(
            kind,
            settings.data_dir,
            openai_api_key=settings.openai_api_key,
            openai_base_url=settings.openai_base_url,
        )
        if choice.reason:  # it fell back to another model: that one is measured under its own name
            out.append((kind, None, choice.reason))
        else:
            out.append((choice.embedder.model, choice.embedder, None))
    return out


def print_table(results: dict[str, Any]) -> None:
    header = (
        f"{'set':<8} {'embedder':<20} {'configuration':<22} {'R@1':>5} {'R@5':>5} {'MRR@10':>6} "
        f"{'para R@5':>8} {'p50 ms':>7} {'p95':>6}"
    )
    click.echo(header)
    for model, sets in results["embedders"].items():
        if "unavailable" in sets:
            click.echo(f"{'-':<8} {model:<20} unavailable: {sets['unavailable']}")
            continue
        for set_name, rows in sets.items():
            for config, r in rows.items():
                para = "" if r["paraphrase_r_at_5"] is None else f"{r['paraphrase_r_at_5']:.2f}"
                label = config if config != "tuned" else f"tuned on {r['chosen_on']} ({r['weights']})"
                click.echo(
                    f"{set_name:<8} {model:<20} {label:<22} {r['r_at_1']:>5.2f} {r['r_at_5']:>5.2f} "
                    f"{r['mrr_at_10']:>6.2f} {para:>8} {r['p50_ms']:>7.1f} {r['p95_ms']:>6.1f}"
                )
    for note in results["notes"]:
        click.echo(note)


@bench.command("rag")
@click.option(
    "--synthetic",
    "synthetic_n",
    default=None,
    type=click.IntRange(1000, 10_000_000),
    help="Measure latency at this many random chunks instead.",
)
@click.option("--rerank", is_flag=True, help="With --synthetic: rerank each query's top 30 as well.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_rag(ctx: click.Context, synthetic_n: int | None, rerank: bool, as_json: bool) -> None:
    """Retrieval quality (R@1, R@5, MRR@10) and latency per configuration on both sets, or at scale."""
    settings = settings_of(ctx)

    async def go() -> dict[str, Any]:
        url = await bench_database(settings)
        async with Bus.connect(replace(settings, database_url=url), listen=False) as bus:
            if not await ai.knowledge_ready(bus.pool):
                raise BgError("the knowledge base needs pgvector", hint="see `bgagents doctor`")
            if synthetic_n:
                return {
                    "synthetic": await synthetic(bus, synthetic_n, data_dir=settings.data_dir, rerank=rerank)
                }
            with tempfile.TemporaryDirectory(prefix="bench-rag-") as scratch:
                sets, note = corpora(Path.cwd(), Path(scratch))
                if not sets:
                    raise BgError("run it from the project folder (README.md and docs/ are our corpus)")
                reranker, why_not = make_reranker("local", settings.data_dir)
                notes = [n for n in (note, why_not) if n]
                results: dict[str, Any] = {"embedders": {}, "notes": notes}
                for name, embedder, reason in embedders(settings):
                    if embedder is None:
                        results["embedders"][name] = {"unavailable": reason}
                        continue
                    measured = await evaluate_embedder(bus, embedder, sets, reranker)
                    for set_name, tuned in cross_tuned(measured).items():
                        measured[set_name]["tuned"] = tuned
                    results["embedders"][name] = measured
                return results

    results = asyncio.run(go())
    if "synthetic" in results:
        s = results["synthetic"]
        reranked = f", each reranked at depth {s['rerank_depth']}" if s["rerank_depth"] else ""
        click.echo(
            f"{s['chunks']:,} chunks, {s['queries']} hybrid queries (query embedding: {s['query_embedding']})"
            f"{reranked}: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms"
        )
    else:
        print_table(results)
    if as_json:
        click.echo(json.dumps(results))
