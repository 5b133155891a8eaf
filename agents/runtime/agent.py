"""The agent base class: a name, a ``Config`` dataclass, ``run_once()`` and queue handlers.

A minimal agent::

    from dataclasses import dataclass
    from agents.runtime.agent import Agent

    class Greeter(Agent):
        name = "greeter"

        @dataclass
        class Config(Agent.Config):
            greeting: str = "hello"

        async def run_once(self) -> None:          # every config.interval seconds
            await self.publish("greetings", {"text": self.config.greeting})

        async def handle_greet(self, task):        # a handler for queue "greet"
            return {"greeted": task.payload["who"]}

        queues = {"greet": "handle_greet"}

Run it with ``bgagents run mypackage.greeter:Greeter``. The runtime registers
each instance in ``bg.agents``, heartbeats, obeys pause/resume/stop/restart
commands, and stops gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from bus.client import Bus
from bus.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_MONITORING_FILE = Path(__file__).parent.parent / "monitoring.yml"


class Agent:
    """Subclass it, set ``name``, and implement ``run_once`` and/or ``queues``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "custom"
    version: ClassVar[str] = "0.1.0"
    queues: ClassVar[dict[str, str]] = {}
    """Queue name → name of the method that handles its tasks."""

    @dataclass
    class Config:
        """Settings every agent has; subclasses add their own fields."""

        interval: float = 5.0
        """Seconds between ``run_once`` calls."""
        heartbeat_interval: float = 2.0
        """Seconds between heartbeats."""
        concurrency: int = 4
        """Tasks this instance runs at once, per queue."""

    def __init__(self, bus: Bus, config: Any = None) -> None:
        self.bus = bus
        self.instance_id = ""  # set by the runner when the instance registers
        self.config: Any = config if config is not None else self.Config()
        self.log = logging.getLogger(f"agents.{self.name}")

    async def setup(self) -> None:
        """Called once before the first ``run_once``."""

    async def run_once(self) -> None:
        """Called every ``config.interval`` seconds while running (not while paused)."""

    async def teardown(self) -> None:
        """Called once when the agent stops."""

    def status_note(self) -> str | None:
        """A short note for ``bgagents status`` (e.g. why the agent idles)."""
        return None

    async def publish(self, channel: str, payload: Any = None) -> int:
        """Publish an event from this agent."""
        return await self.bus.publish(channel, payload, source=self.name)


def load_config(agent_cls: type[Agent], path: Path | None = None) -> Any:
    """The agent's Config with overrides from its section of ``monitoring.yml``."""
    source = path or DEFAULT_MONITORING_FILE
    if path is not None and not path.is_file():
        raise ConfigError(
            f"BGAGENTS_MONITORING_FILE: {path} does not exist",
            hint="point it at your copy of agents/monitoring.yml, or unset it",
        )
    section: dict[str, Any] = {}
    if source.exists():
        try:
            document = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"BGAGENTS_MONITORING_FILE: {source} is not valid YAML: {exc}") from exc
        if not isinstance(document, dict):
            raise ConfigError(f"BGAGENTS_MONITORING_FILE: {source} must map agent names to settings")
        section = document.get(agent_cls.name) or {}
        if not isinstance(section, dict):
            raise ConfigError(
                f"BGAGENTS_MONITORING_FILE: the {agent_cls.name!r} section of {source} must map "
                "settings to values"
            )
    known = {f.name for f in dataclasses.fields(agent_cls.Config)}
    unknown = set(section) - known
    if unknown:
        raise ConfigError(
            f"BGAGENTS_MONITORING_FILE: unknown setting(s) {', '.join(sorted(unknown))} "
            f"for agent {agent_cls.name!r} in {source}",
            hint=f"known: {', '.join(sorted(known))}",
        )
    try:
        return agent_cls.Config(**section)
    except TypeError as exc:
        raise ConfigError(f"BGAGENTS_MONITORING_FILE: {agent_cls.name}: {exc}") from exc
