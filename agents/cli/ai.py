"""AI commands: ``ingest``, ``search``, ``ask`` and ``report``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn

from agents.ai import knowledge
from agents.ai.embedders import Embedder, make_embedder
from agents.ai.rerank import make_reranker
from agents.cli.root import FiniteFloat, clean, settings_of
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


def _note(message: str) -> None:
    click.echo(f"note: {clean(message, one_line=True)}", err=True)


def expand(paths: tuple[str, ...], note: Callable[[str], None] = _note) -> list[Path]:
    """The text files in ``paths``: files as given, folders searched recursively.

    Inside a folder, a symlink whose target lies outside that folder is not
    followed, and a file that cannot be read is skipped; ``note`` gets one line
    for each. A file given by name must be readable.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += _folder(path, note)
        elif path.is_file():
            if not os.access(path, os.R_OK):
                raise InvalidArgument(f"{raw}: cannot read it (permission denied)")
            files.append(path)
        else:
            raise InvalidArgument(f"{raw}: no such file or folder")
    return files


def _folder(folder: Path, note: Callable[[str], None]) -> list[Path]:
    """The readable text files under ``folder`` that really lie inside it."""
    root = folder.resolve()
    found: list[Path] = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in TEXT_SUFFIXES):
        target = path.resolve()
        if not target.is_relative_to(root):
            note(f"skipped {path}: a symlink to {target}, outside {folder}")
        elif not target.is_file():
            continue
        elif not os.access(target, os.R_OK):
            note(f"skipped {path}: cannot read it (permission denied)")
        else:
            found.append(path)
    return found


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
    query = ai.check_query(query)
    embedder = embedder_for(settings)
    reranker, _ = make_reranker(settings.reranker, settings.data_dir)  # unavailable: it says why and goes on

    async def go() -> list[knowledge.Hit]:
        async with Bus.connect(settings, listen=False) as bus:
            return await knowledge.search(bus.pool, embedder, query, k, reranker=reranker)

    hits = asyncio.run(go())
    for n, hit in enumerate(hits, 1):
        snippet = clean(hit.content, one_line=True)[:160]
        where = f"{clean(hit.source, one_line=True)} — {clean(hit.heading, one_line=True)}"
        click.echo(f"{n}. {where}  ({hit.score:.4f})\n   {snippet}")
    if as_json:
        data: list[dict[str, Any]] = [h.as_json() for h in hits]
        click.echo(json.dumps(data))


@click.command()
@click.argument("question")
@click.option("--timeout", default=120.0, show_default=True, type=FiniteFloat(1, 86400))
@click.pass_context
def ask(ctx: click.Context, question: str, timeout: float) -> None:
    """Ask the ai-help agent about the running system; the answer streams in, with citations."""
    settings = settings_of(ctx)
    request = ai.AskRequest.checked(question, settings.max_question_chars)

    async def go() -> dict[str, Any]:
        async with Bus.connect(settings) as bus:
            await ai.require_ai_help(bus.pool)
            cursor = await bus.events.current_cursor()
            task_id = await bus.queue.enqueue(
                ai.ASK_QUEUE, request.to_dict(), max_attempts=2, timeout=timeout
            )

            async def follow() -> None:
                async for event in bus.subscribe([ai.HELP_CHANNEL], after=cursor):
                    help_event = ai.HelpEvent.from_dict(event.payload)
                    if help_event.task != task_id:
                        continue
                    if help_event.done:
                        return
                    click.echo(clean(help_event.delta), nl=False)

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
            source, heading = clean(c["source"], one_line=True), clean(c["heading"], one_line=True)
            click.echo(f"[{clean(c['n'])}] {source} — {heading}")


@click.command()
@click.option("--hours", default=1.0, show_default=True, type=FiniteFloat(0.01, 24 * 30))
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

    click.echo(clean(asyncio.run(go())))


COMMANDS = (ingest, search, ask, report)
