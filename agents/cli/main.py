"""The console-script entry point: the root group with every command family added.

When uvloop is installed (the ``fast`` extra) every command and benchmark runs
on it: it is chosen once here, before any command creates its event loop.
"""

from __future__ import annotations

import asyncio

from agents.bench import commands as bench_commands
from agents.cli import agents, ai, db, doctor, queue, webserver
from agents.cli.root import cli, fail
from bus.errors import BgError

for _family in (db, doctor, agents, queue, ai, webserver):
    for _command in _family.COMMANDS:
        cli.add_command(_command)
cli.add_command(bench_commands.bench)


def use_uvloop() -> bool:
    """Make uvloop the event loop of every ``asyncio.run`` from now on, if it is installed."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> None:
    """Console-script entry point."""
    use_uvloop()
    try:
        cli(standalone_mode=True)
    except BgError as exc:  # raised while loading settings, before a command runs
        fail(str(exc))


if __name__ == "__main__":
    main()
