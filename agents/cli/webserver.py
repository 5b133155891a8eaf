"""The ``web`` command, and the one place that starts the web server (``up`` uses it too)."""

from __future__ import annotations

import click
from aiohttp import web as aioweb

from agents.cli.root import run_coroutine, settings_of
from agents.runtime.signals import wait_for_stop_signal
from bus.config import Settings
from bus.errors import BgError
from web.app import create_app, server_options


async def start_web(settings: Settings) -> aioweb.AppRunner:
    """Serve the web app on the configured address; the caller cleans the runner up.

    The runner's cleanup is bounded (:func:`web.app.server_options`): open SSE
    streams are stopped and handlers still running are cancelled, so stopping
    never waits on a client; connections that don't send their headers within
    ``settings.header_timeout`` are closed.
    """
    runner = aioweb.AppRunner(create_app(settings), **server_options(settings))
    await runner.setup()
    try:
        await aioweb.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise BgError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            hint="stop what uses it, or set BGAGENTS_PORT",
        ) from exc
    return runner


@click.command("web")
@click.pass_context
def web_cmd(ctx: click.Context) -> None:
    """Serve the dashboard, JSON API, SSE feed and /metrics."""
    settings = settings_of(ctx)

    async def go() -> None:
        runner = await start_web(settings)
        click.echo(f"serving http://{settings.host}:{settings.port}/ ; Ctrl-C stops it", err=True)
        try:
            await wait_for_stop_signal()
        finally:
            await runner.cleanup()

    run_coroutine(go())


COMMANDS = (web_cmd,)
