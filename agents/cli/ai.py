"""AI commands: ``ingest``, ``search``, ``ask`` and ``report``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn

from agents.ai import knowledge
from agents.ai.embedders import Embedder, make_embedder
from agents.ai.rerank import make_reranker
from agents.cli.root import settings_of
from bus import ai
from bus.client import Bus
from bus.config import Settings
from bus.errors import InvalidArgument

TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")


def embedder_for(settings: Settings) -> Embedder:
    return make_embedder(
        settings.embedder,
        settings.data_dir,
        openai_api_key=settings.openai_api_key,
        openai_base_url=settings.openai_base_url,
    )


def default_paths() -> list[Path]:
    """The README and docs/ of the current folder."""
    found = [p for p in (Path("README.md"),) if p.is_file()]
    if Path("docs").is_dir():
        found += sorted(p for p in Path("docs").rglob("*") if p.suffix in TEXT_SUFFIXES)
    return found


def expand(paths: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidArgument(f"{raw}: no such file or folder")
    return files


@click.command()
@click.argument("paths", nargs=-1)
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...]) -> None:
    """Ingest Markdown and text files (default: README.md and docs/) into the knowledge base."""
    settings = settings_of(ctx)
    files = expand(paths) if paths else default_paths()
    if not files:
        raise InvalidArgument(
            "nothing to ingest here",
            hint="give files or folders, or run it from a folder with README.md or docs/",
        )
    embedder = embedder_for(settings)

    async def go() -> knowledge.IngestReport:
        async with Bus.connect(settings, listen=False) as bus:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                transient=True,
            ) as bar:
                job = bar.add_task("ingesting", total=len(files))

                def step(source: str, done: int, total: int) -> None:
                    bar.update(job, completed=done, description=f"ingesting {source}")

                report = await knowledge.ingest(bus.pool, embedder, files, step)
                restale = bar.add_task("re-embedding other models' chunks", total=None)
                await knowledge.reembed_stale(
                    bus.pool, embedder, progress=lambda d, t: bar.update(restale, completed=d, total=t)
                )
                return report

    r = asyncio.run(go())
    click.echo(
        f"{r.files} file(s) with {embedder.model}: {r.unchanged} unchanged, "
        f"{r.chunks_embedded} chunk(s) embedded, {r.chunks_kept} kept"
    )


@click.command()
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--json", "as_json", is_flag=True, help="The last line is a JSON list of hits.")
@click.pass_context
def search(ctx: click.Context, query: str, k: int, as_json: bool) -> None:
    """Hybrid search (vector + full text) over the knowledge base."""
    settings = settings_of(ctx)
    embedder = embedder_for(settings)
    reranker, _ = make_reranker(settings.reranker, settings.data_dir)  # unavailable: it says why and goes on

    async def go() -> list[knowledge.Hit]:
        async with Bus.connect(settings, listen=False) as bus:
            return await knowledge.search(bus.pool, embedder, query, k, reranker=reranker)

    hits = asyncio.run(go())
    for n, hit in enumerate(hits, 1):
        snippet = " ".join(hit.content.split())[:160]
        click.echo(f"{n}. {hit.source} — {hit.heading}  ({hit.score:.4f})\n   {snippet}")
    if as_json:
        data: list[dict[str, Any]] = [h.as_json() for h in hits]
        click.echo(json.dumps(data))


@click.command()
@click.argument("question")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(1))
@click.pass_context
def ask(ctx: click.Context, question: str, timeout: float) -> None:
    """Ask the ai-help agent about the running system; the answer streams in, with citations."""
    settings = settings_of(ctx)

    async def go() -> dict[str, Any]:
        async with Bus.connect(settings) as bus:
            await ai.require_ai_help(bus.pool)
            cursor = await bus.events.current_cursor()
            task_id = await bus.queue.enqueue(
                ai.ASK_QUEUE, ai.AskRequest(question).to_dict(), max_attempts=2, timeout=timeout
            )

            async def follow() -> None:
                async for event in bus.subscribe([ai.HELP_CHANNEL], after=cursor):
                    help_event = ai.HelpEvent.from_dict(event.payload)
                    if help_event.task != task_id:
                        continue
                    if help_event.done:
                        return
                    click.echo(help_event.delta, nl=False)

            follower = asyncio.create_task(follow())
            try:
                result: dict[str, Any] = await bus.queue.result(task_id, timeout=timeout)
                await asyncio.wait_for(follower, 10)
            finally:
                follower.cancel()
            return result

    result = asyncio.run(go())
    click.echo()
    if result["citations"]:
        click.echo()
        for c in result["citations"]:
            click.echo(f"[{c['n']}] {c['source']} — {c['heading']}")


@click.command()
@click.option("--hours", default=1.0, show_default=True, type=click.FloatRange(0.01, 24 * 30))
@click.pass_context
def report(ctx: click.Context, hours: float) -> None:
    """Have the ai-help agent write a system report now, and print it."""
    settings = settings_of(ctx)

    async def go() -> str:
        async with Bus.connect(settings, listen=False) as bus:
            await ai.require_ai_help(bus.pool)
            task_id = await bus.queue.enqueue(
                ai.REPORT_QUEUE, ai.ReportRequest(int(hours * 3600)).to_dict(), max_attempts=1
            )
            result: dict[str, Any] = await bus.queue.result(task_id, timeout=60)
            return str(result["body"])

    click.echo(asyncio.run(go()))


COMMANDS = (ingest, search, ask, report)
