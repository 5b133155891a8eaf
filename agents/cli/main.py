"""The console-script entry point: the root group with every command family added."""

from __future__ import annotations

from agents.bench import commands as bench_commands
from agents.cli import agents, ai, db, doctor, queue, webserver
from agents.cli.root import cli, fail
from bus.errors import BgError

for _family in (db, doctor, agents, queue, ai, webserver):
    for _command in _family.COMMANDS:
        cli.add_command(_command)
cli.add_command(bench_commands.bench)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except BgError as exc:  # raised while loading settings, before a command runs
        fail(str(exc))


if __name__ == "__main__":
    main()
