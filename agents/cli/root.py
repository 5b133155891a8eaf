"""The root ``bgagents`` group and the helpers every command module shares.

Every command loads the settings first (a bad value ends it with one line that
names the setting), and every expected failure prints ``error: ...`` with the
fix instead of a traceback; an unexpected one prints one line too.
``BGAGENTS_LOG_LEVEL=DEBUG`` shows tracebacks. Everything the CLI echoes from
the database goes through :func:`clean`, so a note or an error message cannot
drive the terminal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from agents.runtime import logs
from bus.client import Bus
from bus.config import Settings, load_settings
from bus.errors import BgError, from_driver

T = TypeVar("T")
logger = logging.getLogger("bgagents")


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (ESC, BEL, CSI, ...) but tab and newline, and the bidirectional overrides."""


def clean(value: object, *, one_line: bool = False) -> str:
    """``value`` as text that is safe to print: control characters become ``?``.

    Escape sequences (``\\x1b]0;title\\x07``, ``\\x1b[2J``) thus reach the terminal
    as harmless text. ``one_line`` also turns newlines and tabs into spaces.
    """
    text = "" if value is None else str(value)
    if one_line:
        text = " ".join(text.split())
    return _CONTROL.sub("?", text)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` (one line, cleaned) and exit with ``code``."""
    click.echo(f"error: {clean(message, one_line=True)}", err=True)
    sys.exit(code)


class FiniteFloat(click.ParamType[float, Any]):
    """A float option that must be finite and within ``[low, high]`` (click's FloatRange takes nan)."""

    name = "number"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not a finite number from {self.low:g} to {self.high:g}", param, ctx)
        return number + 0.0


BIGINT = click.IntRange(1, 2**63 - 1)
"""A task or alert id: PostgreSQL's bigint."""

INT4 = click.IntRange(-(2**31), 2**31 - 1)
"""An ``integer`` column (priorities, attempts)."""


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
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except RecursionError:
            logger.debug("command failed", exc_info=True)
            fail("the input nests too deeply")
        except Exception as exc:
            logger.debug("command failed", exc_info=True)
            translated = from_driver(exc)
            if translated is None:
                fail(f"unexpected {type(exc).__name__}: {exc} (BGAGENTS_LOG_LEVEL=DEBUG shows the traceback)")
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
    logs.configure(settings.log_level, settings.log_format, settings.log_dir, ctx.invoked_subcommand)
    ctx.obj = settings
